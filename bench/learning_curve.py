"""Learning curve on real tissue: how test quality grows with the number of training patients.

Run: .venv/bin/python bench/learning_curve.py [--data ../shared/data/idc_sample] [--seeds 0 1 2]
     [--fractions 0.25 0.5 1] [--tta] [--width W --epochs E --patience P]  (defaults: the pipeline's)

For each seed the patient split is the pipeline's own (70/15/15, pipeline.split); the validation
and test patients stay fixed while the model trains on a nested random subset of the training
patients (25% of them is inside 50%, which is inside 100%). Each model is trained, calibrated,
given its neighbourhood context and thresholded exactly as `python -m pipeline run` does it
(pipeline.train, pipeline.score, pipeline.context, pipeline.metrics), with early stopping on
validation PR-AUC. The slope of F1 / ROC-AUC against log2(training patients) says how much one
more doubling of the data would buy; the table is printed and written to runs/learning-curve<variant>.md (the variant names every
option off its default, e.g. -tta-w48).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline import ingest, metrics, score, split, store  # noqa: E402
from pipeline.run import final_scores  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "idc_sample"
FIGURES = ("f1", "balanced_accuracy", "roc_auc", "roc_auc_patch_only")


def train_and_score(patches, labels, tr, va, seed: int, tta: bool, epochs: int, patience: int, width: int | None):
    """Train the default model on rows ``tr`` (early-stopped on ``va``); return (raw P(IDC) of all rows, seconds)."""
    import keras

    from model.architectures import build_model
    from pipeline.train import class_weights, compile_for_training, make_dataset

    keras.utils.set_random_seed(seed)
    model, _ = build_model("separable", width)
    batch = 128
    compile_for_training(model, len(tr), batch, epochs, 2e-3)
    stop = keras.callbacks.EarlyStopping(monitor="val_pr_auc", mode="max", patience=patience,
                                         restore_best_weights=True)
    t0 = time.perf_counter()
    model.fit(make_dataset(patches[tr], labels[tr], batch, True, seed),
              validation_data=make_dataset(patches[va], labels[va], 512, False), epochs=epochs,
              class_weight=class_weights(labels[tr]), callbacks=[stop], verbose=0, shuffle=False)
    seconds = time.perf_counter() - t0
    score._compiled.cache_clear()  # a new model each time: do not keep the old ones' graphs
    return score.predict_probabilities(model, patches, tta=tta), seconds


def evaluate_rows(manifest, labels, raw, va, te) -> dict:
    """Calibration, context and threshold fitted on validation rows; figures on test rows (as the pipeline)."""
    prob, prob_patch, _, _ = final_scores(raw, manifest, va)
    threshold = metrics.threshold_presets(labels[va], prob[va])["f1_optimal"]
    at = metrics.metrics_at(labels[te], prob[te], threshold)
    return {"f1": at["f1"], "balanced_accuracy": at["balanced_accuracy"],
            "roc_auc": metrics.roc_auc(labels[te], prob[te]),
            "roc_auc_patch_only": metrics.roc_auc(labels[te], prob_patch[te])}


def slope_per_doubling(n_patients, values) -> float:
    """Least-squares slope of ``values`` against log2(n_patients): the gain of one doubling of the data."""
    return float(np.polyfit(np.log2(np.asarray(n_patients, float)), np.asarray(values, float), 1)[0])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--width", type=int, default=None, help="separable CNN width (default: the pipeline's)")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "runs")
    args = p.parse_args()
    from model.architectures import model_width

    if not args.data.is_dir():
        print(f"skipped: real patches not found at {args.data}")
        return 0
    if any(not 0 < f <= 1 for f in args.fractions):
        p.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    ingest_dir = args.out / "learning-curve-ingest"
    ingest.ingest(args.data, ingest_dir)
    manifest = store.read_manifest(ingest_dir)
    labels = manifest["label"].to_numpy(np.int64)
    patches = np.asarray(store.read_patches(ingest_dir))
    pids = manifest["patient_id"].to_numpy().astype(str)

    rows = []
    for seed in args.seeds:
        assignment = split.split_patients(pids, labels, seed=seed)
        which = np.array([assignment[q] for q in pids])
        va, te = np.flatnonzero(which == "val"), np.flatnonzero(which == "test")
        train_patients = np.array(sorted(q for q, s in assignment.items() if s == "train"))
        order = np.random.default_rng(seed).permutation(train_patients)  # nested subsets: prefixes of one order
        for frac in sorted(args.fractions):
            chosen = order[:max(2, int(round(frac * len(order))))]
            tr = np.flatnonzero(np.isin(pids, chosen))
            raw, seconds = train_and_score(patches, labels, tr, va, seed, args.tta, args.epochs, args.patience,
                                           args.width)
            r = {"seed": seed, "fraction": frac, "patients": len(chosen), "patches": len(tr),
                 "train_min": seconds / 60, **evaluate_rows(manifest, labels, raw, va, te)}
            rows.append(r)
            print(f"seed {seed} {frac:.0%} ({r['patients']} patients, {r['patches']:,} patches): "
                  f"F1 {r['f1']:.3f} BAcc {r['balanced_accuracy']:.3f} ROC-AUC {r['roc_auc']:.3f} "
                  f"(patch alone {r['roc_auc_patch_only']:.3f}), {r['train_min']:.1f} min", flush=True)

    lines = [f"Learning curve on the real sample ({args.data.name}): test split of each seed "
             f"({', '.join(str(s) for s in args.seeds)}), F1 and balanced accuracy at the validation-chosen "
             f"F1-optimal threshold, with neighbourhood context{', dihedral TTA' if args.tta else ''}; separable CNN "
             f"width {model_width('separable', args.width)}, up to {args.epochs} epochs (patience {args.patience}); "
             "mean over seeds:", "",
             "| training patients (share) | training patches | F1 | balanced acc. | ROC-AUC | ROC-AUC patch alone "
             "| training (min) |", "|---|---|---|---|---|---|---|"]
    for frac in sorted(args.fractions):
        sel = [r for r in rows if r["fraction"] == frac]
        m = {k: np.mean([r[k] for r in sel]) for k in (*FIGURES, "patients", "patches", "train_min")}
        lines.append(f"| {m['patients']:.0f} ({frac:.0%}) | {m['patches']:,.0f} | {m['f1']:.3f} | "
                     f"{m['balanced_accuracy']:.3f} | {m['roc_auc']:.3f} | {m['roc_auc_patch_only']:.3f} | "
                     f"{m['train_min']:.1f} |")
    if len(args.fractions) > 1:
        n = [r["patients"] for r in rows]
        gains = ", ".join(f"{k} {slope_per_doubling(n, [r[k] for r in rows]):+.3f}" for k in FIGURES)
        lines += ["", f"Gain per doubling of the training patients (least squares on log2 patients): {gains}."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    variant = ("-tta" if args.tta else "") + (f"-w{args.width}" if args.width else "") \
        + ("" if (args.epochs, args.patience) == (p.get_default("epochs"), p.get_default("patience"))
           else f"-e{args.epochs}p{args.patience}")
    with store.atomic_path(args.out / f"learning-curve{variant}.md") as tmp:
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
