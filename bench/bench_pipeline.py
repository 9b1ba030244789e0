"""Pipeline speed on the real sample: ingest, training and scoring throughput, peak memory, store size.

Run: .venv/bin/python -m bench.bench_pipeline [--data ../shared/data/idc_sample]
Prints each figure next to its target (issue: ingest >= 8,000 patches/s warm, scoring >= 2,000
patches/s for the default model, full dataset's store <= 2.5 GB) and, for scoring, the ratio
against a plain `model.predict` on float32 arrays measured in the same run; the neighbourhood
context stage at full-dataset scale, against the scoring time of the same patches. Training and
scoring use the pipeline's own code and settings (model.fit, model.predict, TrainConfig's defaults).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import SAMPLE_DATA, skip_without
from model.config import TrainConfig
from pipeline import ingest, store
from pipeline.names import PATCH_SIZE

FULL_DATASET_PATCHES = 277_524


def bench_ingest(data: Path, tmp: Path) -> tuple[Path, float]:
    ingest.ingest(data, tmp / "warm", progress=False)  # warms the page cache
    t0 = time.perf_counter()
    info = ingest.ingest(data, tmp / "run", progress=False)
    total = time.perf_counter() - t0
    n = info["n_patches"]
    print(f"ingest (warm cache, {os.cpu_count()} cores): {n:,} patches in {total:.2f} s = {n / total:,.0f} patches/s "
          f"end to end (scan + decode + write), decode alone {n / info['decode_seconds']:,.0f} patches/s "
          f"[target >= 8,000]")
    return tmp / "run", n / total


def bench_store_size(run: Path) -> None:
    size = (run / store.PATCHES).stat().st_size
    n = len(store.read_patches(run))
    full_gb = size / n * FULL_DATASET_PATCHES / 1e9
    print(f"patch store: {size / n:,.0f} bytes/patch -> {full_gb:.2f} GB for the full {FULL_DATASET_PATCHES:,} "
          f"patches [target <= 2.5 GB]")


def bench_training(run: Path, epochs: int = 2) -> None:
    from model.fit import build_for_training, class_weights, make_dataset

    patches = np.asarray(store.read_patches(run))
    labels = store.read_manifest(run)["label"].to_numpy()
    config = TrainConfig(epochs=epochs)  # the pipeline's defaults: model, batch, optimizer, augmentation
    model, _ = build_for_training(config, len(labels), patch_size=PATCH_SIZE)
    ds = make_dataset(patches, labels, config.batch_size, True, config.seed, config.stain_sigma)
    weights = class_weights(labels)
    model.fit(ds.take(5), class_weight=weights, verbose=0, shuffle=False)  # trace and warm up
    t0 = time.perf_counter()
    model.fit(ds, epochs=epochs, class_weight=weights, verbose=0, shuffle=False)
    dt = time.perf_counter() - t0
    print(f"training (default model, batch {config.batch_size}, augmentation on): "
          f"{epochs * len(labels) / dt:,.0f} patches/s")


def bench_scoring(run: Path, repeats: int = 3) -> None:
    from model.architectures import build_model
    from model.predict import predict_probabilities

    patches = store.read_patches(run)
    model, _ = build_model(TrainConfig.arch, patch_size=PATCH_SIZE)
    n = len(patches)
    predict_probabilities(model, patches[:2048])  # trace
    t0 = time.perf_counter()
    for _ in range(repeats):
        ours = predict_probabilities(model, patches)
    ours_rate = repeats * n / (time.perf_counter() - t0)

    x = np.asarray(patches, dtype=np.float32)
    model.predict(x[:2048], batch_size=1024, verbose=0)
    t0 = time.perf_counter()
    for _ in range(repeats):
        base = model.predict(x, batch_size=1024, verbose=0)[:, 0]
    base_rate = repeats * n / (time.perf_counter() - t0)
    assert np.allclose(ours, base, atol=1e-5), "scorer and model.predict disagree"
    print(f"scoring (default model, memmap -> uint8 batches): {ours_rate:,.0f} patches/s; "
          f"baseline model.predict on float32 in memory: {base_rate:,.0f} patches/s; "
          f"ratio {ours_rate / base_rate:.2f}x [target >= 2,000]")
    return ours_rate


def bench_context(scoring_rate: float, n_patients: int = 279) -> None:
    """The neighbourhood-context stage at full-dataset scale: 277,524 patches on dense slides."""
    from pipeline.context import neighbour_context

    rng = np.random.default_rng(0)
    sizes = rng.multinomial(FULL_DATASET_PATCHES, np.full(n_patients, 1 / n_patients))
    pids, xs, ys = [], [], []
    for p, n in enumerate(sizes):  # each slide: n patches spread over a square ~1.5x their number
        side = int(np.ceil(np.sqrt(1.5 * n)))
        cells = rng.choice(side * side, n, replace=False)
        pids.append(np.full(n, p))
        xs.append(cells % side * 50 + 1)
        ys.append(cells // side * 50 + 1)
    pids, xs, ys = np.concatenate(pids), np.concatenate(xs), np.concatenate(ys)
    z = rng.normal(size=len(pids)).astype(np.float32)
    t0 = time.perf_counter()
    neighbour_context(pids, xs, ys, z, sigma_px=200.0)
    dt = time.perf_counter() - t0
    score_s = len(pids) / scoring_rate
    print(f"neighbourhood context (full-dataset scale, {len(pids):,} patches, {n_patients} slides): {dt:.1f} s "
          f"= {len(pids) / dt:,.0f} patches/s; scoring the same patches at the rate above takes {score_s:.0f} s, "
          f"so context adds {dt / score_s:.0%} (x{1 + dt / score_s:.2f} of the scoring time)")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=SAMPLE_DATA)
    args = p.parse_args()
    if skip_without(args.data):
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        run, _ = bench_ingest(args.data, Path(tmp))
        bench_store_size(run)
        bench_context(bench_scoring(run))
        bench_training(run)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
