"""How fast the patient-bootstrap intervals are at full dataset scale, against a naive baseline.

    .venv/bin/python -m bench.bench_uncertainty        (from the project root)

Builds a random cohort the size of the public IDC dataset (279 patients, 277,524 patches, slide
sizes as bench/bench_app.py draws them; per-patient random effects on the IDC share and on the
scores; float32 probabilities as the scorer writes them) and a second "run" scored on the same
patches. Every figure is the median of repeated runs (one-off computations are rebuilt from a fresh
object each time, so no cache helps). The naive baseline is what one would write first: a Python
loop over resamples that copies each drawn patient's patches and calls pipeline.metrics.metrics_at
(or scikit-learn's roc_auc_score); it is timed on a few resamples in the same process and scaled
to the same number of resamples, so the ratio is fair on this machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from bench.common import N_PATCHES, N_PATIENTS, median_ms, patient_sizes
from model.link import sigmoid
from pipeline import metrics, store, uncertainty

TARGETS_MS = {"intervals at a new threshold": 30, "paired intervals at new thresholds": 30}


def build_cohort(rng: np.random.Generator):
    sizes = patient_sizes(rng)
    patient = np.repeat(np.array([str(10000 + i) for i in range(N_PATIENTS)]), sizes)
    code = np.repeat(np.arange(N_PATIENTS), sizes)
    share = sigmoid(-1.0 + 1.2 * rng.normal(size=N_PATIENTS))
    label = (rng.random(N_PATCHES) < share[code]).astype(np.int8)
    z = -1.5 + 3.0 * label + 0.8 * rng.normal(size=N_PATIENTS)[code] + rng.normal(size=N_PATCHES)
    prob_a = sigmoid(z).astype(np.float32)
    z_b = z + 0.3 * (label - 0.5) + 0.5 * rng.normal(size=N_PATCHES)
    prob_b = sigmoid(z_b).astype(np.float32)
    split = np.repeat(rng.choice(store.SPLITS, p=[0.7, 0.15, 0.15], size=N_PATIENTS), sizes)
    return patient, label, prob_a, prob_b, split


# --------------------------------------------------------------------------- naive baselines
def resampled(boot, by_patient, r):
    return np.concatenate([np.tile(by_patient[k], c) for k, c in enumerate(boot.weights[r]) if c])


def naive_threshold_loop(boot, by_patient, y, p, t, n):
    """Per resample: copy the drawn patients' patches, call metrics_at; then percentiles."""
    reps = []
    for r in range(n):
        idx = resampled(boot, by_patient, r)
        reps.append(metrics.metrics_at(y[idx], p[idx], t))
    return {k: np.nanpercentile([m[k] for m in reps], [2.5, 97.5]) for k in metrics.METRIC_NAMES}


def naive_roc_loop(boot, by_patient, y, p, n, fn):
    return [fn(y[idx], p[idx]) for idx in (resampled(boot, by_patient, r) for r in range(n))]


# --------------------------------------------------------------------------- the benchmark
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="repeats per hot-path figure (median)")
    ap.add_argument("--n-boot", type=int, default=uncertainty.DEFAULT_N_BOOT)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    patient, y, pa, pb, split = build_cohort(rng)
    B = args.n_boot
    print(f"cohort: {N_PATIENTS} patients, {N_PATCHES:,} patches ({y.mean():.0%} IDC); {B} resamples; "
          f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    rows = []

    def row(what, ms, naive_ms=None, note=""):
        rows.append((what, ms, naive_ms, note))
        ratio = f"{naive_ms / ms:8.0f}x" if naive_ms else " " * 9
        base = f"{naive_ms:10.0f} ms" if naive_ms else " " * 13
        target = TARGETS_MS.get(what)
        flag = "" if target is None else (f"  (target < {target} ms: {'ok' if ms < target else 'MISSED'})")
        print(f"  {what:42s} {ms:9.1f} ms {base} {ratio}  {note}{flag}", flush=True)

    print(f"  {'':42s} {'this':>12s} {'naive':>13s} {'speed-up':>9s}")
    t0 = time.perf_counter()
    boot = uncertainty.PatientBootstrap(patient, y, pa, n_boot=B)
    row("build (check inputs, draw resamples)", (time.perf_counter() - t0) * 1000, note="once per run+split")
    by_patient = [np.flatnonzero(boot.codes == k) for k in range(boot.n_patients)]

    thresholds = iter(np.linspace(0.05, 0.95, 100_000))
    fast = median_ms(lambda: boot.metrics_at(next(thresholds)), args.repeats)
    n_naive = 20
    naive = median_ms(lambda: naive_threshold_loop(boot, by_patient, y, pa, next(thresholds), n_naive), 3,
                      warm=False) * B / n_naive
    row("intervals at a new threshold", fast, naive, f"7 metrics; naive timed on {n_naive} resamples, scaled")
    per_patient = median_ms(lambda: boot.counts_at(next(thresholds)), args.repeats)
    row("  of which per-patient counts + product", per_patient)

    def fresh():
        b = uncertainty.PatientBootstrap(patient, y, pa, n_boot=B, weights=boot.weights)
        return b

    def roc_once():
        fresh().curve_metrics(pr_auc=False)

    roc_ms = median_ms(roc_once, 3, warm=False)
    n_sk = 5
    from sklearn.metrics import roc_auc_score
    sk_ms = median_ms(lambda: naive_roc_loop(boot, by_patient, y, pa, n_sk, roc_auc_score), 1, warm=False) * B / n_sk
    row("ROC-AUC interval (one-off)", roc_ms, sk_ms, f"naive: sklearn on {n_sk} resampled copies, scaled")
    vec_ms = median_ms(lambda: naive_roc_loop(boot, by_patient, y, pa, n_sk, metrics.roc_auc), 1,
                       warm=False) * B / n_sk
    row("  vs pipeline.metrics.roc_auc per resample", roc_ms, vec_ms, "the vectorised AUC, still one call per copy")
    b2 = fresh()
    pairs_ms = median_ms(lambda: (b2._cache.pop("pairs", None), b2.pair_matrix()), 3, warm=True)
    row("  of which the patient-pair matrix", pairs_ms)
    pr_ms = median_ms(lambda: fresh().pr_auc_replicates(), 3, warm=False)
    row("PR-AUC interval (one-off)", pr_ms, note="weighted cumulative sums, O(n_boot x positive blocks)")
    cum_ms = median_ms(lambda: fresh()._curves_cumulative(roc=True), 1, warm=False)
    row("  ROC+PR by the cumulative route", cum_ms, note=f"used beyond {uncertainty.PAIR_MATRIX_MAX_PATIENTS} patients")

    # the overview's default: the test split
    test = split == "test"
    tboot = uncertainty.PatientBootstrap(patient[test], y[test], pa[test], n_boot=B)
    row(f"test split ({tboot.n_patients} patients, {tboot.n_patches:,} patches): at a threshold",
        median_ms(lambda: tboot.metrics_at(next(thresholds)), args.repeats))
    row("  test split: ROC-AUC + PR-AUC (one-off)",
        median_ms(lambda: uncertainty.PatientBootstrap(patient[test], y[test], pa[test], n_boot=B,
                                                       weights=tboot.weights).curve_metrics(), 3, warm=False))

    # paired comparison of two runs
    t0 = time.perf_counter()
    pair = uncertainty.PairedBootstrap(patient, y, pa, pb, n_boot=B)
    row("paired: build", (time.perf_counter() - t0) * 1000)
    row("paired intervals at new thresholds", median_ms(lambda: pair.at(next(thresholds), next(thresholds)),
                                                        args.repeats), note="A, B, B-A for 7 metrics + McNemar")
    row("paired: DeLong, clustered by patient", median_ms(lambda: uncertainty.delong_test(y, pa, pb, patient), 3))
    t0 = time.perf_counter()
    res = pair.compare(0.5, 0.45, 0.5)
    row("paired: full comparison (one-off)", (time.perf_counter() - t0) * 1000,
        note="curves A and B, DeLong x2, own + shared thresholds")
    print()
    print(uncertainty.compare_sentence(res, at="both"))


if __name__ == "__main__":
    main()
