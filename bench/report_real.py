"""Model quality on real tissue over several patient splits: mean and spread, not one lucky split.

Run: .venv/bin/python -m bench.report_real [--data ../shared/data/idc_sample] [--seeds 0 1 2] [--tta] [--no-context]
     [--width W --epochs E --patience P ...]  (every training option of `python -m pipeline run`; defaults: the pipeline's)

Each seed draws a different patient-level split (70/15/15) and trains the model from scratch;
thresholds are chosen on that split's validation patients and every figure is measured on its test
patients, whom the model never saw. Runs land in runs/real-s<seed><variant> (open them in the app;
the variant names the data when it is not idc_dev and every option off its default, e.g.
-idc_sample-tta-w48-e60p15); the table is printed and written to runs/real-report<variant>.md.
"""
from __future__ import annotations

import sys

import numpy as np

from bench.common import report_parser, skip_without, train_config, variant
from pipeline import store
from pipeline.compare import share_ingest
from pipeline.run import run_pipeline
from pipeline.store import TEST

FIGURES = ("f1", "balanced_accuracy", "roc_auc", "pr_auc", "roc_auc_patch", "ece_uncalibrated", "ece",
           "macro_f1", "macro_balanced_accuracy", "macro_roc_auc")


def main(argv=None) -> int:
    args = report_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    if skip_without(args.data):
        return 0
    suffix = variant(args)  # every setting off its default: a variant never overwrites the default's runs
    rows, first = [], None
    for seed in args.seeds:
        run_dir = args.out / f"real-s{seed}{suffix}"
        if first is not None:
            share_ingest(first, run_dir)
        report = run_pipeline(args.data, run_dir, train_config(args, seed), tta=args.tta, use_context=args.context)
        first = first or run_dir
        test = report["splits"][TEST]
        at = test["at"]["f1_optimal"]
        macro = test["patient_macro"]
        train_s = store.read_meta(run_dir)["train"]["train_seconds"]
        rows.append({"seed": seed, "patients": test["n_patients"], "patches": test["n_patches"],
                     "f1": at["f1"], "balanced_accuracy": at["balanced_accuracy"], "roc_auc": test["roc_auc"],
                     "pr_auc": test["pr_auc"], "roc_auc_patch": test.get("roc_auc_patch", test["roc_auc"]),
                     "ece_uncalibrated": test["ece_uncalibrated"], "ece": test["ece"],
                     # patient level: each test patient's own figure, averaged (dense patients count once)
                     "macro_f1": macro["at"]["f1_optimal"]["f1"]["estimate"],
                     "macro_balanced_accuracy": macro["at"]["f1_optimal"]["balanced_accuracy"]["estimate"],
                     "macro_roc_auc": macro["roc_auc"]["estimate"],
                     "train_min": train_s / 60})
    lines = [f"Real patches ({args.data.name}), test split of each seed, F1 and balanced accuracy at the "
             f"validation-chosen F1-optimal threshold{', dihedral TTA' if args.tta else ''}"
             f"{', with neighbourhood context' if args.context else ', each patch alone (no context)'}:", "",
             "| seed | test patients | test patches | F1 | balanced acc. | ROC-AUC | PR-AUC | ROC-AUC patch alone | "
             "ECE raw -> calibrated | patient-level F1 / bal. acc. / ROC-AUC | training (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['patients']} | {r['patches']:,} | {r['f1']:.3f} | {r['balanced_accuracy']:.3f} | "
                     f"{r['roc_auc']:.3f} | {r['pr_auc']:.3f} | {r['roc_auc_patch']:.3f} | "
                     f"{r['ece_uncalibrated']:.3f} -> {r['ece']:.3f} | {r['macro_f1']:.3f} / "
                     f"{r['macro_balanced_accuracy']:.3f} / {r['macro_roc_auc']:.3f} | {r['train_min']:.1f} |")
    mean = {k: np.mean([r[k] for r in rows]) for k in FIGURES}
    sd = {k: np.std([r[k] for r in rows], ddof=1) if len(rows) > 1 else 0.0 for k in FIGURES}
    lines.append(f"| mean ± sd | | | {mean['f1']:.3f} ± {sd['f1']:.3f} | {mean['balanced_accuracy']:.3f} ± "
                 f"{sd['balanced_accuracy']:.3f} | {mean['roc_auc']:.3f} ± {sd['roc_auc']:.3f} | {mean['pr_auc']:.3f} ± "
                 f"{sd['pr_auc']:.3f} | {mean['roc_auc_patch']:.3f} ± {sd['roc_auc_patch']:.3f} | "
                 f"{mean['ece_uncalibrated']:.3f} -> {mean['ece']:.3f} | {mean['macro_f1']:.3f} ± {sd['macro_f1']:.3f} / "
                 f"{mean['macro_balanced_accuracy']:.3f} ± {sd['macro_balanced_accuracy']:.3f} / "
                 f"{mean['macro_roc_auc']:.3f} ± {sd['macro_roc_auc']:.3f} | |")
    lines += ["", "Patient level: each test patient's own F1 (patients with IDC), balanced accuracy (patients with both "
              "classes) and ROC-AUC, averaged over patients, so a dense slide counts once, as a sparse one does."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with store.atomic_path(args.out / f"real-report{suffix}.md") as tmp:
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
