"""Model quality on real tissue over several patient splits: mean and spread, not one lucky split.

Run: .venv/bin/python bench/report_real.py [--data ../shared/data/idc_sample] [--seeds 0 1 2] [--tta] [--no-context]
     [--width W --epochs E --patience P]  (defaults: the pipeline's)

Each seed draws a different patient-level split (70/15/15) and trains the default model from
scratch; thresholds are chosen on that split's validation patients and every figure is measured on
its test patients, whom the model never saw. Runs land in runs/real-sample-s<seed><variant> (open them
in the app; the variant names every option off its default, e.g. -tta-w48-e60p15); the table is
printed and written to runs/real-sample-report<variant>.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline import store  # noqa: E402
from pipeline.compare import share_ingest  # noqa: E402
from pipeline.run import run_pipeline  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "idc_sample"
FIGURES = ("f1", "balanced_accuracy", "roc_auc", "pr_auc", "roc_auc_patch_only", "ece_uncalibrated", "ece")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--width", type=int, default=None, help="separable CNN width (default: the pipeline's)")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--no-context", dest="context", action="store_false",
                   help="score each patch alone (ablation of the neighbourhood-context stage)")
    p.add_argument("--out", type=Path, default=ROOT / "runs")
    args = p.parse_args()
    if not args.data.is_dir():
        print(f"skipped: real patches not found at {args.data}")
        return 0
    # Every setting off its default names the runs and the report, so a variant never overwrites the default's.
    variant = ("-tta" if args.tta else "") + ("" if args.context else "-nocontext") \
        + (f"-w{args.width}" if args.width else "") \
        + ("" if (args.epochs, args.patience) == (p.get_default("epochs"), p.get_default("patience"))
           else f"-e{args.epochs}p{args.patience}")
    rows, first = [], None
    for seed in args.seeds:
        run_dir = args.out / f"real-sample-s{seed}{variant}"
        if first is not None:
            share_ingest(first, run_dir)
        report = run_pipeline(args.data, run_dir, epochs=args.epochs, seed=seed, tta=args.tta, use_context=args.context,
                              patience=args.patience, width=args.width)
        first = first or run_dir
        test = report["splits"]["test"]
        at = test["at"]["f1_optimal"]
        train_s = store.read_meta(run_dir)["train"]["train_seconds"]
        rows.append({"seed": seed, "patients": test["n_patients"], "patches": test["n_patches"],
                     "f1": at["f1"], "balanced_accuracy": at["balanced_accuracy"], "roc_auc": test["roc_auc"],
                     "pr_auc": test["pr_auc"], "roc_auc_patch_only": test.get("roc_auc_patch_only", test["roc_auc"]),
                     "ece_uncalibrated": test["ece_uncalibrated"], "ece": test["ece"],
                     "train_min": train_s / 60})
    lines = [f"Real sample ({args.data.name}), test split of each seed, F1 and balanced accuracy at the "
             f"validation-chosen F1-optimal threshold{', dihedral TTA' if args.tta else ''}"
             f"{', with neighbourhood context' if args.context else ', each patch alone (no context)'}:", "",
             "| seed | test patients | test patches | F1 | balanced acc. | ROC-AUC | PR-AUC | ROC-AUC patch alone | "
             "ECE raw -> calibrated | training (min) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['patients']} | {r['patches']:,} | {r['f1']:.3f} | {r['balanced_accuracy']:.3f} | "
                     f"{r['roc_auc']:.3f} | {r['pr_auc']:.3f} | {r['roc_auc_patch_only']:.3f} | "
                     f"{r['ece_uncalibrated']:.3f} -> {r['ece']:.3f} | {r['train_min']:.1f} |")
    mean = {k: np.mean([r[k] for r in rows]) for k in FIGURES}
    sd = {k: np.std([r[k] for r in rows], ddof=1) if len(rows) > 1 else 0.0 for k in FIGURES}
    lines.append(f"| mean ± sd | | | {mean['f1']:.3f} ± {sd['f1']:.3f} | {mean['balanced_accuracy']:.3f} ± "
                 f"{sd['balanced_accuracy']:.3f} | {mean['roc_auc']:.3f} ± {sd['roc_auc']:.3f} | {mean['pr_auc']:.3f} ± "
                 f"{sd['pr_auc']:.3f} | {mean['roc_auc_patch_only']:.3f} ± {sd['roc_auc_patch_only']:.3f} | "
                 f"{mean['ece_uncalibrated']:.3f} -> {mean['ece']:.3f} | |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    name = f"real-sample-report{variant}.md"
    with store.atomic_path(args.out / name) as tmp:
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
