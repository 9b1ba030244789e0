"""Numbers behind the cohort overview, as pure functions over label/probability arrays.

The threshold-free parts (curves, calibration, histogram) are computed once per run and split and
cached by the app; the threshold-dependent parts come from ``pipeline.metrics`` on every change.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import metrics

HISTOGRAM_BINS = 50
METRIC_LABELS = {
    "sensitivity": "Sensitivity (recall)", "specificity": "Specificity", "precision": "Precision (PPV)",
    "f1": "F1", "balanced_accuracy": "Balanced accuracy", "mcc": "MCC", "accuracy": "Accuracy",
}


def curves(label: np.ndarray, prob: np.ndarray) -> dict:
    """ROC and PR curves (downsampled for drawing), their areas, reliability bins, ECE, histograms."""
    out = {"roc_auc": float("nan"), "pr_auc": float("nan"), "roc": None, "pr": None}
    if len(label) and 0 < label.sum() < len(label):
        fpr, tpr, _ = metrics.roc_curve(label, prob)
        precision, recall, _ = metrics.precision_recall_curve(label, prob)
        out.update(roc_auc=metrics.roc_auc(label, prob), pr_auc=metrics.average_precision(label, prob),
                   roc=metrics.downsample_curve(fpr, tpr), pr=metrics.downsample_curve(recall, precision))
    out["reliability"] = metrics.reliability_bins(label, prob)
    out["ece"] = metrics.expected_calibration_error(label, prob)
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    out["histogram"] = {"edges": edges,
                        "non_idc": np.histogram(prob[label == 0], bins=edges)[0],
                        "idc": np.histogram(prob[label == 1], bins=edges)[0]}
    out["prevalence"] = float(label.mean()) if len(label) else float("nan")
    return out


def score_text(context: dict | None, roc_auc_patch: float | None = None) -> str:
    """What P(IDC) is in this run: the patch alone, or the patch with its neighbourhood context."""
    if not context:
        return "P(IDC) is the CNN's calibrated score of each patch alone."
    text = (f"P(IDC) combines each patch's CNN score with its neighbours' on the same slide (Gaussian "
            f"weighting, σ = {context['sigma_px']:.0f} px), fitted on the validation patients")
    if roc_auc_patch is not None and np.isfinite(roc_auc_patch):
        text += f"; the patch alone reaches ROC-AUC {roc_auc_patch:.3f} here"
    return text + "."


def model_text(meta: dict) -> str:
    """Which model scored this run and how it was trained, from run.json (what an ML engineer asks first)."""
    train = meta.get("train") or {}
    arch = meta.get("arch") or train.get("arch") or "unknown architecture"
    name = f"{arch}, width {train['width']}" if train.get("width") else arch
    if not train:  # a `pipeline score` run: the model was trained elsewhere and only carried over
        source = meta.get("source_run")
        return f"Model: {name}, trained in {source} and carried over unchanged." if source else f"Model: {name}."
    parts = [f"Model: {name}, {train['params']:,} parameters",
             f"best epoch {train['best_epoch']} of {train['epochs_run']} (validation PR-AUC "
             f"{train['best_val_pr_auc']:.3f})",
             f"trained in {train['train_seconds'] / 60:.1f} min on {train['n_train']:,} patches "
             f"({train['train_patches_per_s']:,.0f} patches/s)"]
    if meta.get("seed") is not None:
        parts.append(f"seed {meta['seed']}")
    parts.append("scored with 8-view dihedral test-time augmentation" if meta.get("tta") else "scored without TTA")
    return "; ".join(parts) + "."


def operating_point(at: dict) -> dict:
    """Where the threshold sits on the ROC (FPR, TPR) and PR (recall, precision) curves."""
    return {"fpr": 1.0 - at["specificity"], "tpr": at["sensitivity"],
            "recall": at["sensitivity"], "precision": at["precision"]}


def scope_text(split: str, described: dict) -> str:
    """'the test split: 4 patients, 3,120 patches (812 IDC)', the denominator every figure needs."""
    where = "all splits" if split == "all" else f"the {split} split"
    return (f"{where}: {described['n_patients']:,} patient{'s' * (described['n_patients'] != 1)}, "
            f"{described['n_patches']:,} patches ({described['n_positive']:,} IDC)")


def metrics_frame(at: dict, areas: dict, split: str, described: dict, run_name: str) -> pd.DataFrame:
    """The metrics table as shown and exported: one row per metric, each with its scope."""
    rows = [(METRIC_LABELS[k], at[k]) for k in METRIC_LABELS]
    rows += [("ROC-AUC (threshold-free)", areas["roc_auc"]), ("PR-AUC (threshold-free)", areas["pr_auc"]),
             ("ECE (calibration error)", areas["ece"])]
    rows += [(f"{k.upper()} (patches)", at[k]) for k in ("tp", "fp", "fn", "tn")]
    frame = pd.DataFrame(rows, columns=["metric", "value"])
    return frame.assign(threshold=at["threshold"], split=split, patients=described["n_patients"],
                        patches=described["n_patches"], run=run_name)
