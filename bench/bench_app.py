"""How fast the dashboard's hot paths are at full dataset scale, against naive baselines.

    .venv/bin/python -m bench.bench_app            # functions only (about a minute)
    .venv/bin/python -m bench.bench_app --app      # also whole page reruns through Streamlit's AppTest

Builds a cohort the size of the public IDC dataset (279 patients, 277,524 patches, the largest
slides 2,400 patches) as random arrays in a temporary folder: random labels and probabilities,
patches on a 50-px grid with holes and some narrower edge patches. Timing does not depend on
what the pixels show. Every figure is the median of repeated runs; each naive baseline (what one
would write first: scikit-learn per metric, a per-patient Python loop, a per-patch Python loop)
is measured in the same process, so the ratio is fair on this machine.

The 95% intervals the overview shows beside every metric are timed next to the plain metrics: a
patient-level bootstrap (1,000 resamples) at a new threshold on the same cohort, and what is done
once (building the bootstrap, the ROC-AUC/PR-AUC intervals, the evaluate stage's intervals).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from app import overlays, selection, slides
from bench.common import ROOT, median_ms, once_ms, patient_sizes
from pipeline import evaluate, metrics, store, uncertainty

TARGETS_MS = {"metrics at a new threshold": 50, "95% intervals at a new threshold": 30, "per-patient table": 10,
              "rebuild one slide": 100}


def build_table(rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for i, n in enumerate(patient_sizes(rng)):
        gw = int(np.ceil(np.sqrt(n / 0.7)))
        gh = int(np.ceil(n / (0.7 * gw)))
        cells = np.sort(rng.choice(gh * gw, size=n, replace=False))  # ~30 % of the frame left empty
        gy, gx = np.divmod(cells, gw)
        width = np.where(gx == gw - 1, rng.integers(20, 51, n), 50)  # the slide's last column is cut short
        height = np.where(gy == gh - 1, rng.integers(20, 51, n), 50)
        label = (rng.random(n) < 0.28).astype(np.int8)
        prob = np.clip(0.35 * label + 0.65 * rng.random(n), 0, 1).astype(np.float32)
        parts.append(pd.DataFrame({
            "patient_id": str(10000 + i), "x": 1 + 50 * gx, "y": 1 + 50 * gy, "width": width, "height": height,
            "label": label, "split": rng.choice(store.SPLITS, p=[0.7, 0.15, 0.15]),
            "prob": prob, "prob_uncalibrated": prob}))
    return pd.concat(parts, ignore_index=True)


def build_patch_store(path: Path, table: pd.DataFrame, fill_patients: list[str], rng) -> np.ndarray:
    """A (277,524, 50, 50, 3) .npy memmap (2 GB, sparse on disk); only the timed slides get pixels."""
    patches = store.create_patch_store(path, len(table))
    for pid in fill_patients:
        rows = np.flatnonzero(table["patient_id"].to_numpy() == pid)
        patches[rows[0]:rows[-1] + 1] = rng.integers(0, 256, (len(rows), 50, 50, 3), dtype=np.uint8)
    patches.flush()
    return store.open_patch_store(path)


# --------------------------------------------------------------------------- naive baselines
def sklearn_metrics(y, p, t):
    from sklearn import metrics as skm

    pred = p >= t
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {"precision": skm.precision_score(y, pred, zero_division=0), "sensitivity": skm.recall_score(y, pred),
            "specificity": tn / (tn + fp), "f1": skm.f1_score(y, pred), "mcc": skm.matthews_corrcoef(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred), "accuracy": skm.accuracy_score(y, pred)}


def per_patient_loop(rows: pd.DataFrame, t: float) -> pd.DataFrame:
    out = []
    for pid, g in rows.groupby("patient_id"):
        m = metrics.metrics_at(g["label"].to_numpy(), g["prob"].to_numpy(), t)
        out.append({"patient_id": pid, "patches": len(g), "f1": m["f1"], "sensitivity": m["sensitivity"],
                    "specificity": m["specificity"], "errors": m["fp"] + m["fn"]})
    return pd.DataFrame(out)


def rebuild_loop(patches, x, y, width, height) -> np.ndarray:
    h, w = slides.slide_shape(x, y, width, height)
    out = np.full((h, w, 3), 255, np.uint8)
    for patch, xi, yi, wi, hi in zip(patches, x, y, width, height):
        out[yi - 1:yi - 1 + hi, xi - 1:xi - 1 + wi] = patch[:hi, :wi]
    return out


# --------------------------------------------------------------------------- the benchmark
def bench_functions(table: pd.DataFrame, patches: np.ndarray, big: str, repeats: int) -> list[dict]:
    y, p = table["label"].to_numpy(), table["prob"].to_numpy()
    as_held = table.astype({"patient_id": "category", "split": "category"})  # as app.loaders keeps a split
    test_held = as_held[as_held["split"] == "test"]
    rows_big = table[table["patient_id"] == big]
    index = rows_big.index.to_numpy()
    geometry = [rows_big[c].to_numpy() for c in ("x", "y", "width", "height")]
    in_memory = np.asarray(patches[index])
    thresholds = iter(np.linspace(0.05, 0.95, 10_000))  # a new threshold every call, as a slider moves

    def rebuild():
        return slides.rebuild_slide(patches[index], *geometry)

    slide = rebuild()
    shape = slides.grid_shape(*geometry)
    # The overview's bootstrap, as app.loaders builds it (once per run version and split, cached).
    boot_all = uncertainty.PatientBootstrap(as_held["patient_id"].to_numpy(), y, p)
    boot_test = uncertainty.PatientBootstrap(test_held["patient_id"].to_numpy(), test_held["label"].to_numpy(),
                                             test_held["prob"].to_numpy())
    errors_overlay = overlays.build("Errors (TP/FP/FN/TN)", rows_big, 0.5, shape)
    checks = [
        ("metrics at a new threshold", f"all {len(table):,} patches",
         lambda: metrics.metrics_at(y, p, next(thresholds)), lambda: sklearn_metrics(y, p, 0.5),
         "scikit-learn, one call per metric"),
        ("95% intervals at a new threshold", f"all {len(table):,} patches, {boot_all.n_patients} patients, "
         f"{boot_all.n_boot:,} resamples, 7 metrics",
         lambda: boot_all.metrics_at(next(thresholds)),
         scaled(lambda: naive_intervals(boot_all, y, p, 0.5, NAIVE_RESAMPLES), boot_all.n_boot / NAIVE_RESAMPLES),
         f"per resample: copy the patients' patches + metrics_at; {NAIVE_RESAMPLES} resamples timed, scaled"),
        ("  on the test split (the default)", f"{len(test_held):,} patches, {boot_test.n_patients} patients",
         lambda: boot_test.metrics_at(next(thresholds)), None, ""),
        ("per-patient table", f"{table['patient_id'].nunique()} patients, all {len(table):,} patches",
         lambda: evaluate.per_patient_table(as_held, next(thresholds)), lambda: per_patient_loop(table, 0.5),
         "groupby loop, metrics per patient"),
        ("  on the test split (the default)", f"{(table['split'] == 'test').sum():,} patches",
         lambda: evaluate.per_patient_table(test_held, next(thresholds)), None, ""),
        ("rebuild one slide", f"{len(rows_big):,} patches, {slide.shape[1]}x{slide.shape[0]} px, read from the memmap",
         rebuild, lambda: rebuild_loop(patches[index], *geometry), "same read, per-patch Python loop"),
        ("  of which placing the patches", "patches already in memory",
         lambda: slides.rebuild_slide(in_memory, *geometry), lambda: rebuild_loop(in_memory, *geometry),
         "per-patch Python loop"),
        ("overlay grids for one slide", "errors + probability + ground truth",
         lambda: [overlays.build(n, rows_big, next(thresholds), shape) for n in overlays.OVERLAY_NAMES[:3]],
         None, ""),
        ("errors gallery order", "all patches, FP+FN by confidence",
         lambda: selection.errors(table, next(thresholds)), None, ""),
        ("review queue order", "all patches, nearest the threshold",
         lambda: selection.uncertainty_queue(table, next(thresholds)), None, ""),
        ("slide JPEG for the browser", "once per patient (cached)", lambda: slides.jpeg_data_uri(slide), None, ""),
        ("PNG export of one slide view", "blend + encode on click; random pixels are PNG's worst case",
         lambda: slides.png_bytes(overlays.compose(slide, [errors_overlay], 0.4)), None, ""),
    ]
    results = []
    for name, scope, fast, naive, naive_name in checks:
        fast_ms = median_ms(fast, repeats)
        naive_ms = median_ms(naive, max(3, repeats // 5)) * getattr(naive, "scale", 1.0) if naive else None
        results.append({"name": name, "scope": scope, "ms": fast_ms, "baseline_ms": naive_ms,
                        "baseline": naive_name, "target_ms": TARGETS_MS.get(name)})
    return results + bench_one_offs(table, as_held)


NAIVE_RESAMPLES = 10


def scaled(fn, factor: float):
    """``fn`` with a factor its timing is multiplied by (a baseline timed on part of the work)."""
    fn.scale = factor
    return fn


def naive_intervals(boot, y, p, t, n: int) -> dict:
    """What one would write first: per resample, copy the drawn patients' patches and call metrics_at
    (here on the first ``n`` resamples; the timing is scaled to all of them)."""
    by_patient = [np.flatnonzero(boot.codes == k) for k in range(boot.n_patients)]
    reps = []
    for r in range(n):
        idx = np.concatenate([np.tile(by_patient[k], c) for k, c in enumerate(boot.weights[r]) if c])
        reps.append(metrics.metrics_at(y[idx], p[idx], t))
    return {k: np.nanpercentile([m[k] for m in reps], [2.5, 97.5]) for k in metrics.METRIC_NAMES}


def bench_one_offs(table: pd.DataFrame, as_held: pd.DataFrame) -> list[dict]:
    """What the intervals cost once (cached by the app, or written once into evaluation.json)."""
    thresholds = {"default": 0.5, "f1_optimal": 0.45, "youden_j": 0.5, "sensitivity_95": 0.3}
    pid, y, p = as_held["patient_id"].to_numpy(), as_held["label"].to_numpy(), as_held["prob"].to_numpy()
    out = []

    def row(name, scope, ms):
        out.append({"name": name, "scope": scope, "ms": ms, "baseline_ms": None, "baseline": "", "target_ms": None})

    row("bootstrap build (one-off)", f"all {len(table):,} patches: check inputs, draw resamples; cached per split",
        once_ms(lambda: uncertainty.PatientBootstrap(pid, y, p)))
    row("ROC/PR-AUC intervals (one-off)", "all patches, when evaluation.json lacks them; cached",
        once_ms(lambda: uncertainty.PatientBootstrap(pid, y, p).curve_metrics()))
    with_context = table.assign(prob_patch=np.clip(table["prob"] + 0.1, 0, 1))  # a run with neighbourhood context
    splits = (*reversed(store.SPLITS), "all")  # test first, as the app lists them
    row("evaluate: the 4 splits' reports", "with intervals and the patch-alone ROC-AUC interval (one-off)",
        once_ms(lambda: [evaluate.evaluate_split(evaluate.split_rows(with_context, s), thresholds, s, True)
                         for s in splits]))
    row("  of which the intervals", "4 splits x (ROC, PR, patch-alone ROC, 7 metrics x 4 presets)",
        once_ms(lambda: [evaluate.split_intervals(evaluate.split_rows(with_context, s), thresholds, patch_alone=True)
                         for s in splits]))
    return out


def write_run_folder(run_dir: Path, table: pd.DataFrame) -> None:
    """Just enough of a pipeline run folder for the app to open (no model: Grad-CAM is not timed)."""
    manifest = table.assign(source="bench")
    store.write_manifest(run_dir, manifest)
    split = dict(table.groupby("patient_id")["split"].first())
    store.write_split(run_dir, split, seed=0, fractions=(0.7, 0.15, 0.15))
    store.write_scores(run_dir, table["prob"].to_numpy(), table["prob_uncalibrated"].to_numpy())
    store.write_json(run_dir / store.EVALUATION, evaluate.evaluate(table))
    store.update_meta(run_dir, created="2026-01-01T00:00:00", name=run_dir.name, synthetic=True)


def bench_pages(runs_dir: Path, big: str, repeats: int) -> list[dict]:
    """Whole script reruns through AppTest: Python side of a slider move, without the browser."""
    from streamlit.testing.v1 import AppTest

    os.environ["IDC_RUNS"] = str(runs_dir)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.query_params["patient"] = big
    t0 = time.perf_counter()
    at.run()
    first = (time.perf_counter() - t0) * 1000
    results = [{"name": "overview, first open", "ms": first, "scope": "loads the run, curves on test"}]
    values = iter(np.linspace(0.2, 0.8, 1000))

    def move_threshold():
        at.number_input(key="w_threshold_number").set_value(round(float(next(values)), 4)).run()
        assert not at.exception, at.exception

    results.append({"name": "overview, threshold change", "ms": median_ms(move_threshold, repeats),
                    "scope": "metrics, curves' operating point, per-patient table"})
    t0 = time.perf_counter()
    at.switch_page("views/patient.py").run()
    results.append({"name": "patient viewer, first open", "ms": (time.perf_counter() - t0) * 1000,
                    "scope": f"patient {big}: rebuild + JPEG + figure"})
    results.append({"name": "patient viewer, threshold change", "ms": median_ms(move_threshold, repeats),
                    "scope": "patient metrics, overlays, figure"})
    return results


def print_table(title: str, results: list[dict]) -> None:
    print(f"\n{title}")
    print(f"  {'operation':<34}{'median':>11}{'target':>9}{'baseline':>12}{'speed-up':>10}  scope / baseline")
    for r in results:
        target = f"<{r['target_ms']} ms" if r.get("target_ms") else ""
        base = f"{r['baseline_ms']:.1f} ms" if r.get("baseline_ms") else ""
        ratio = f"{r['baseline_ms'] / r['ms']:.0f}x" if r.get("baseline_ms") else ""
        note = r["scope"] + (f"; baseline: {r['baseline']}" if r.get("baseline") else "")
        print(f"  {r['name']:<34}{r['ms']:>8.1f} ms{target:>9}{base:>12}{ratio:>10}  {note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--app", action="store_true", help="also time whole page reruns through AppTest")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    table = build_table(rng)
    big = table["patient_id"].value_counts().index[0]
    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        run_dir = Path(tmp) / "runs" / "full-scale"
        run_dir.mkdir(parents=True)
        patches = build_patch_store(run_dir / store.PATCHES, table, [big], rng)
        print(f"cohort: {table['patient_id'].nunique()} patients, {len(table):,} patches, largest slide "
              f"{(table['patient_id'] == big).sum():,} patches; built in {time.perf_counter() - t0:.1f} s")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
              f"Python {platform.python_version()}, NumPy {np.__version__}")
        results = {"functions": bench_functions(table, patches, big, args.repeats)}
        print_table("functions (median of repeats)", results["functions"])
        if args.app:
            write_run_folder(run_dir, table)
            results["pages"] = bench_pages(run_dir.parent, big, max(3, args.repeats // 5))
            print_table("whole page reruns through AppTest (server side only, no browser)", results["pages"])
        del patches  # close the memmap before the folder is removed
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
