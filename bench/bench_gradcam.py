"""How long one CAM takes in the app: milliseconds per single-patch call, after warm-up.

    .venv/bin/python -m bench.bench_gradcam [--arch separable] [--calls 20] [--run runs/NAME]

Builds ``model.architectures.build_model(arch)`` (untrained: the cost does not depend on the
weights) or loads a trained run's model with --run, then times, in the same process:

* baseline: one plain forward pass ``model(x, training=False)`` of one patch;
* each method of ``model.explain.METHODS`` on one patch (what the app does on a click);
* Grad-CAM over a batch of 64 patches (per patch), to show what batching buys.

Prints median / mean / p90 in ms and the ratio to the baseline, and writes the figures to
bench/results/gradcam.json. The app's requirement: Grad-CAM under 500 ms per patch once warm (the
exit code is 1 when it is over: this is the check of that requirement, not the test suite).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from model.config import ARCHITECTURES, TrainConfig
from pipeline.names import PATCH_SIZE

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BUDGET_MS = 500.0


def _timed(fn, calls: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn(0)
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def _summary(ms: list[float]) -> dict:
    ms_sorted = sorted(ms)
    return {"median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms),
            "p90_ms": ms_sorted[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))], "calls": len(ms)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=TrainConfig.arch, choices=ARCHITECTURES)
    ap.add_argument("--run", type=Path, help="time a trained run's model and patches instead")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--score-cam-max-n", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gradcam.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    import keras
    import tensorflow as tf

    from model.explain import METHODS, Explainer
    import_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    if args.run:
        from pipeline import store

        run = store.load_run(args.run)
        model, layer = store.read_model(run.path, compile=False), run.meta["cam_layer"]
        rows = rng.choice(len(run.patches), size=min(64, len(run.patches)), replace=False)
        patches = np.asarray(run.patches[np.sort(rows)])
        source = f"run {run.path}"
    else:
        from model.architectures import build_model

        keras.utils.set_random_seed(0)
        model, layer = build_model(args.arch, patch_size=PATCH_SIZE)
        patches = rng.integers(0, 256, size=(64, PATCH_SIZE, PATCH_SIZE, 3), dtype=np.uint8)
        source = f"untrained build_model({args.arch!r})"
    n = len(patches)

    t0 = time.perf_counter()
    explainer = Explainer(model, layer, score_cam_max_n=args.score_cam_max_n)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    explainer.cam(patches[:1])
    first_s = time.perf_counter() - t0

    floats = patches.astype(np.float32)
    results = {"baseline forward pass": _summary(_timed(
        lambda i: model(tf.constant(floats[i % n:i % n + 1]), training=False).numpy(), args.calls))}
    for method in METHODS:
        # target=None, as the app's default: includes the forward pass that finds the predicted class
        results[method] = _summary(_timed(lambda i, m=method: explainer.cam(patches[i % n:i % n + 1], method=m),
                                          args.calls, warmup=2))
    batch = _timed(lambda i: explainer.cam(patches), max(3, args.calls // 5), warmup=1)
    results[f"Grad-CAM, batch of {n} (per patch)"] = _summary([ms / n for ms in batch])

    base = results["baseline forward pass"]["median_ms"]
    print(f"Grad-CAM benchmark: {source}, CAM layer {layer!r}, {os.cpu_count()} CPU cores, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    print(f"import TF + tf-keras-vis {import_s:.1f} s; Explainer() {build_s * 1000:.0f} ms; "
          f"first Grad-CAM (cold) {first_s * 1000:.0f} ms")
    print(f"{'single patch, after warm-up':<36}{'median ms':>10}{'mean ms':>9}{'p90 ms':>8}{'x fwd':>8}")
    for name, r in results.items():
        print(f"{name:<36}{r['median_ms']:>10.1f}{r['mean_ms']:>9.1f}{r['p90_ms']:>8.1f}{r['median_ms'] / base:>8.1f}")
    ok = results["Grad-CAM"]["median_ms"] < BUDGET_MS
    print(f"Grad-CAM per patch {results['Grad-CAM']['median_ms']:.0f} ms: "
          f"{'within' if ok else 'OVER'} the {BUDGET_MS:.0f} ms budget")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "source": source, "layer": layer, "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
        "import_s": import_s, "explainer_build_ms": build_s * 1000, "first_call_ms": first_s * 1000,
        "results": results, "ratio_to_forward": {k: v["median_ms"] / base for k, v in results.items()},
    }, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
