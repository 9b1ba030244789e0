"""Label noise at region borders: how a finished run's errors split between region interiors and borders.

Run: .venv/bin/python -m bench.report_borders RUN [RUN ...] [--split test] [--preset f1_optimal]

Each patch of the split is placed by its touching neighbours (pipeline.borders): on a region's border (a
neighbour has the other label), inside a region (neighbours, all with its label), or isolated (no touching
neighbour: sparse patients). For each group: patches, IDC share, the error rate at the run's
validation-chosen threshold, the false-negative and false-positive rates, ROC-AUC, and the group's share of
all errors against its share of patches. Errors concentrated on borders, where the outlines drawn at low
magnification decide half-carcinoma patches, point at label noise rather than at the model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pipeline import borders, metrics, store


def border_rows(run_dir: Path, split: str, preset: str) -> list[dict]:
    run = store.load_run(run_dir)
    rows = run.table if split == "all" else run.table[run.table["split"] == split]
    threshold = run.thresholds.get(preset, 0.5)
    where = borders.positions(rows["patient_id"], rows["x"], rows["y"], rows["label"])
    y, p = rows["label"].to_numpy(), rows["prob"].to_numpy()
    wrong = (p >= threshold) != (y == 1)
    out = []
    for name in borders.POSITIONS:
        sel = where == name
        if not sel.any():
            continue
        c = metrics.confusion_at(y[sel], p[sel], threshold)
        out.append({"run": run.name, "position": name, "patients": int(rows.loc[sel, "patient_id"].nunique()),
                    "patches": int(sel.sum()), "idc_pct": 100 * y[sel].mean(),
                    "error_pct": 100 * wrong[sel].mean(),
                    "fn_rate": c["fn"] / max(c["fn"] + c["tp"], 1), "fp_rate": c["fp"] / max(c["fp"] + c["tn"], 1),
                    "roc_auc": metrics.roc_auc(y[sel], p[sel]), "patch_share": 100 * sel.mean(),
                    "error_share": 100 * wrong[sel].sum() / max(wrong.sum(), 1), "threshold": threshold})
    keep = where != borders.BORDER  # what the figures would be if border labels were left out as uncertain
    m_all, m_keep = metrics.metrics_at(y, p, threshold), metrics.metrics_at(y[keep], p[keep], threshold)
    out.append({"run": run.name, "position": "all / without border", "patients": int(rows["patient_id"].nunique()),
                "summary": f"ROC-AUC {metrics.roc_auc(y, p):.3f} -> {metrics.roc_auc(y[keep], p[keep]):.3f}, "
                           f"F1 {m_all['f1']:.3f} -> {m_keep['f1']:.3f}, balanced accuracy "
                           f"{m_all['balanced_accuracy']:.3f} -> {m_keep['balanced_accuracy']:.3f}"})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished run folders")
    parser.add_argument("--split", default=store.TEST, choices=(store.TRAIN, store.VAL, store.TEST, "all"))
    parser.add_argument("--preset", default="f1_optimal", help="threshold preset of the run (default f1_optimal)")
    args = parser.parse_args(argv)
    lines = [f"Errors by position in the label's region, {args.split} split, at each run's {args.preset} threshold:", "",
             "| run | position | patients | patches (share) | IDC % | error % | FN rate | FP rate | ROC-AUC | "
             "share of errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run_dir in args.runs:
        for r in border_rows(run_dir, args.split, args.preset):
            if "summary" in r:
                lines.append(f"| {r['run']} | {r['position']} | {r['patients']} | {r['summary']} | | | | | | |")
                continue
            auc = "n/a" if not np.isfinite(r["roc_auc"]) else f"{r['roc_auc']:.3f}"
            lines.append(f"| {r['run']} | {r['position']} | {r['patients']} | {r['patches']:,} ({r['patch_share']:.1f}%) "
                         f"| {r['idc_pct']:.1f} | {r['error_pct']:.1f} | {r['fn_rate']:.3f} | {r['fp_rate']:.3f} | "
                         f"{auc} | {r['error_share']:.1f}% |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
