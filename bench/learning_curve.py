"""Learning curve on real tissue: how test quality grows with the training patients, or with the patches per patient.

Run: .venv/bin/python -m bench.learning_curve [--data ../shared/data/idc_sample] [--seeds 0 1 2]
     [--fractions 0.25 0.5 1] [--by patients|patches] [--tta] [--no-context]
     [--width W --epochs E --patience P ...]
     (every training option of `python -m pipeline run`; defaults: the pipeline's)

``--by patches`` keeps every training patient and trains on a nested share of each one's patches
(25% of a patient's patches is inside 50%): idc_dev has 4x the patches per patient of idc_sample,
so this asks whether denser patients (the full dataset has ~8x idc_dev's) would still help.

For each seed the patient split is the pipeline's own (70/15/15, pipeline.split); the validation
and test patients stay fixed while the model trains on a nested random subset of the training
patients (25% of them is inside 50%, which is inside 100%). Each model is trained, calibrated,
given its neighbourhood context and thresholded exactly as `python -m pipeline run` does it
(model.fit with the same TrainConfig, model.predict, pipeline.score, pipeline.context,
pipeline.metrics), with early stopping on validation PR-AUC. The slope of F1 / ROC-AUC against
log2(training patients) says how much one more doubling of the data would buy; the table is
printed and written to runs/learning-curve<variant>.md (the variant names the data when it is not
idc_dev and every option off its default, e.g. -tta-w48, as bench/common.py's ``variant``).
"""
from __future__ import annotations

import sys

import numpy as np

from bench.common import report_parser, skip_without, train_config, variant
from model.config import TrainConfig
from pipeline import ingest, metrics, split, store
from pipeline.names import PATCH_SIZE
from pipeline.score import final_scores
from pipeline.store import TEST, TRAIN, VAL

FIGURES = ("f1", "balanced_accuracy", "roc_auc", "roc_auc_patch")


def train_and_score(patches, labels, tr, va, config: TrainConfig, tta: bool):
    """Train ``config``'s model on rows ``tr`` (early-stopped on ``va``); return (raw P(IDC) of all rows, seconds)."""
    from model.fit import build_for_training, fit
    from model.predict import predict_probabilities, release_compiled

    model, _ = build_for_training(config, len(tr), patch_size=PATCH_SIZE)
    result = fit(model, patches[tr], labels[tr], patches[va], labels[va], config, verbose=0)
    raw = predict_probabilities(model, patches, tta=tta)  # the best epoch's weights (fit restored them)
    release_compiled()  # a new model each time: do not keep the old ones' graphs
    return raw, result.train_seconds


def evaluate_rows(manifest, labels, raw, va, te, use_context: bool = True) -> dict:
    """Calibration, context and threshold fitted on validation rows; figures on test rows (as the pipeline)."""
    prob, prob_patch, _, _ = final_scores(raw, manifest, va, use_context=use_context)
    threshold = metrics.threshold_presets(labels[va], prob[va])["f1_optimal"]
    at = metrics.metrics_at(labels[te], prob[te], threshold)
    return {"f1": at["f1"], "balanced_accuracy": at["balanced_accuracy"],
            "roc_auc": metrics.roc_auc(labels[te], prob[te]),
            "roc_auc_patch": metrics.roc_auc(labels[te], prob_patch[te])}


def patch_subset(pids: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows of ``rows`` keeping a share ``fraction`` of each patient's patches (at least one), sorted.

    Nested over fractions for one seed: each patient's patches are ranked by one random order, and a
    fraction keeps the first ceil(fraction x count) of them, so a smaller share is inside a larger.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    order = np.random.default_rng(seed).permutation(np.asarray(rows))
    by_patient = np.argsort(pids[order], kind="stable")  # patients together, the random order kept within
    grouped = pids[order][by_patient]
    starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1] if len(grouped) else np.array([], int)
    counts = np.diff(np.r_[starts, len(grouped)])
    rank = np.arange(len(grouped)) - np.repeat(starts, counts)
    keep = rank < np.repeat(np.maximum(1, np.ceil(fraction * counts - 1e-9)).astype(int), counts)
    return np.sort(order[by_patient][keep])


def slope_per_doubling(n_patients, values) -> float:
    """Least-squares slope of ``values`` against log2(n_patients): the gain of one doubling of the data."""
    return float(np.polyfit(np.log2(np.asarray(n_patients, float)), np.asarray(values, float), 1)[0])


def main(argv=None) -> int:
    p = report_parser(__doc__.split("\n\n")[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="shares of the training patients (or of each one's patches, --by patches) to train on "
                        "(nested subsets)")
    p.add_argument("--by", choices=("patients", "patches"), default="patients",
                   help="subsample whole training patients (default), or a share of every training patient's patches")
    args = p.parse_args(argv)
    if any(not 0 < f <= 1 for f in args.fractions):
        p.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    if skip_without(args.data):
        return 0
    ingest_dir = args.out / "learning-curve-ingest"
    ingest.ingest(args.data, ingest_dir)
    manifest = store.read_manifest(ingest_dir)
    labels = manifest["label"].to_numpy(np.int64)
    patches = np.asarray(store.read_patches(ingest_dir))
    pids = manifest["patient_id"].to_numpy().astype(str)

    rows = []
    for seed in args.seeds:
        config = train_config(args, seed)
        assignment = split.split_patients(pids, labels, seed=seed)
        which = np.array([assignment[q] for q in pids])
        va, te = np.flatnonzero(which == VAL), np.flatnonzero(which == TEST)
        train_patients = np.array(sorted(q for q, s in assignment.items() if s == TRAIN))
        order = np.random.default_rng(seed).permutation(train_patients)  # nested subsets: prefixes of one order
        every_train_row = np.flatnonzero(np.isin(pids, train_patients))
        for frac in sorted(args.fractions):
            if args.by == "patches":
                chosen, tr = train_patients, patch_subset(pids, every_train_row, frac, seed)
            else:
                chosen = order[:max(2, int(round(frac * len(order))))]
                tr = np.flatnonzero(np.isin(pids, chosen))
            raw, seconds = train_and_score(patches, labels, tr, va, config, args.tta)
            r = {"seed": seed, "fraction": frac, "patients": len(chosen), "patches": len(tr),
                 "train_min": seconds / 60, **evaluate_rows(manifest, labels, raw, va, te, args.context)}
            rows.append(r)
            print(f"seed {seed} {frac:.0%} ({r['patients']} patients, {r['patches']:,} patches): "
                  f"F1 {r['f1']:.3f} BAcc {r['balanced_accuracy']:.3f} ROC-AUC {r['roc_auc']:.3f} "
                  f"(patch alone {r['roc_auc_patch']:.3f}), {r['train_min']:.1f} min", flush=True)

    config = train_config(args, args.seeds[0])
    model = f"{config.arch} CNN" + (f" width {config.width}" if config.width is not None else "")
    what = "training patients" if args.by == "patients" else "patches of every training patient"
    lines = [f"Learning curve on real tissue ({args.data.name}), over the {what}: test split of each seed "
             f"({', '.join(str(s) for s in args.seeds)}), F1 and balanced accuracy at the validation-chosen "
             f"F1-optimal threshold, {'with' if args.context else 'without'} neighbourhood context"
             f"{', dihedral TTA' if args.tta else ''}; {model}, up to {config.epochs} epochs "
             f"(patience {config.patience}); mean over seeds:", "",
             "| training patients (share) | training patches | F1 | balanced acc. | ROC-AUC | ROC-AUC patch alone "
             "| training (min) |", "|---|---|---|---|---|---|---|"]
    for frac in sorted(args.fractions):
        sel = [r for r in rows if r["fraction"] == frac]
        m = {k: np.mean([r[k] for r in sel]) for k in (*FIGURES, "patients", "patches", "train_min")}
        lines.append(f"| {m['patients']:.0f} ({frac:.0%}) | {m['patches']:,.0f} | {m['f1']:.3f} | "
                     f"{m['balanced_accuracy']:.3f} | {m['roc_auc']:.3f} | {m['roc_auc_patch']:.3f} | "
                     f"{m['train_min']:.1f} |")
    if len(args.fractions) > 1:
        unit = "patients" if args.by == "patients" else "patches"
        n = [r[unit] for r in rows]
        gains = ", ".join(f"{k} {slope_per_doubling(n, [r[k] for r in rows]):+.3f}" for k in FIGURES)
        lines += ["", f"Gain per doubling of the {what} (least squares on log2 {unit}): {gains}."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    name = f"learning-curve{'-by-patches' if args.by == 'patches' else ''}{variant(args)}.md"
    with store.atomic_path(args.out / name) as tmp:
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
