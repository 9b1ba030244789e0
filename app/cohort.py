"""Numbers behind the cohort overview, as pure functions over label/probability arrays.

The threshold-free parts (curves, calibration, histogram, ROC-AUC/PR-AUC intervals) are computed
once per run and split and cached by the app; the threshold-dependent parts come from
``pipeline.metrics`` and the split's cached ``pipeline.uncertainty.PatientBootstrap`` on every change.
An undefined value is shown as "not defined" with its reason, never as "nan".
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


def unlabelled_histogram(prob: np.ndarray) -> dict:
    """The histogram of P(IDC) of patches without labels (charts.histogram_figure draws it in grey)."""
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    return {"edges": edges, "unlabelled": np.histogram(np.asarray(prob, np.float64), bins=edges)[0]}


NO_LABELS_TEXT = ("Metrics need labels, and no patch {where} has one: the slides were ingested without annotations. "
                  "Re-run `python -m pipeline ingest-slides --annotations DIR` with QuPath GeoJSON annotations "
                  "(one per slide) to measure the model; below are its predictions only.")


def score_text(context: dict | None, roc_auc_patch: float | None = None, patch_interval: dict | None = None) -> str:
    """What P(IDC) is in this run: the patch alone, or the patch with its neighbourhood context."""
    if not context:
        return "P(IDC) is the CNN's calibrated score of each patch alone."
    text = (f"P(IDC) combines each patch's CNN score with its neighbours' on the same slide (Gaussian "
            f"weighting, σ = {context['sigma_px']:.0f} px), fitted on the validation patients")
    if roc_auc_patch is not None and np.isfinite(roc_auc_patch):
        text += f"; the patch alone reaches ROC-AUC {roc_auc_patch:.3f} here"
        if patch_interval and np.isfinite(patch_interval.get("low", np.nan)):
            text += f" ({ci_text(patch_interval)})"
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


# --------------------------------------------------------------------------- intervals
CI_LEVEL_TEXT = "95% CI"


def value_text(value) -> str:
    """A metric for a tile: 3 decimals, or 'not defined' (never 'nan')."""
    return "not defined" if value is None or not np.isfinite(value) else f"{value:.3f}"


def ci_text(iv: dict | None) -> str:
    """'95% CI 0.702 to 0.790' (plus the share of resamples without a value), or 'not defined' text."""
    if not iv or not np.isfinite(iv.get("estimate", np.nan)):
        return f"{CI_LEVEL_TEXT} not defined"
    if not np.isfinite(iv.get("low", np.nan)):
        return f"{CI_LEVEL_TEXT} not defined (undefined in every resample)"
    text = f"{CI_LEVEL_TEXT} {iv['low']:.3f} to {iv['high']:.3f}"
    share = iv.get("undefined_share") or 0.0
    return text + (f"; undefined in {100 * share:.0f}% of resamples" if share > 0 else "")


def tile_caption(value, iv: dict | None, reason: str = "", unavailable: str = "") -> str:
    """The line under a metric tile: its interval, or why there is none.

    ``reason``: why the value itself is undefined (e.g. 'all 812 patches are IDC-negative');
    ``unavailable``: why the split has no intervals at all, in a few words (e.g. 'only 1 patient').
    """
    if value is None or not np.isfinite(value):
        return f"not defined: {reason}" if reason else "not defined on this split"
    if unavailable:
        return f"{CI_LEVEL_TEXT} not defined ({unavailable})"
    return ci_text(iv)


def bootstrap_text(info: dict | None, unavailable: str = "", curves_source: str = "") -> str:
    """The caption under the tiles: how the intervals were made, or why there are none."""
    if info is None:
        return (f"95% intervals not defined: {unavailable}. Patches of one patient are not independent, so "
                "the intervals resample patients, never patches.")
    n, n_boot = info["n_patients"], info["n_boot"]
    text = (f"95% intervals: bootstrap over the {n:,} patients of the split ({n_boot:,} resamples); patches of one "
            "patient are not independent, so patients, not patches, are resampled.")
    if curves_source:
        text += (" ROC-AUC and PR-AUC intervals from evaluation.json." if curves_source == "evaluation.json"
                 else " ROC-AUC and PR-AUC intervals computed for this view.")
    return text


INTERVAL_KEYS = (*metrics.METRIC_NAMES, "roc_auc", "pr_auc")


def metrics_frame(at: dict, areas: dict, split: str, described: dict, run_name: str,
                  intervals: dict | None = None, reasons: dict | None = None, interval_method: str = "",
                  unavailable: str = "") -> pd.DataFrame:
    """The metrics table as shown and exported: one row per metric, each with its scope.

    ``intervals``: {metric: interval dict} (threshold metrics, 'roc_auc', 'pr_auc') for the ``low`` and
    ``high`` columns (empty where there is none); ``reasons``: {metric: why it is undefined} for the
    ``note`` column; ``interval_method`` names how the intervals were made; ``unavailable`` why the
    split has no intervals (e.g. one patient).
    """
    intervals, reasons = intervals or {}, reasons or {}
    keyed = [(METRIC_LABELS[k], k, at[k]) for k in METRIC_LABELS]
    keyed += [("ROC-AUC (threshold-free)", "roc_auc", areas["roc_auc"]),
              ("PR-AUC (threshold-free)", "pr_auc", areas["pr_auc"]), ("ECE (calibration error)", "ece", areas["ece"])]
    keyed += [(f"{k.upper()} (patches)", k, at[k]) for k in ("tp", "fp", "fn", "tn")]
    rows = []
    for label, key, value in keyed:
        iv = intervals.get(key) or {}
        low, high = iv.get("low", np.nan), iv.get("high", np.nan)
        if value is None or not np.isfinite(value):
            note = f"not defined: {reasons[key]}" if reasons.get(key) else "not defined on this split"
        elif unavailable and key in INTERVAL_KEYS:
            note = f"interval not defined: {unavailable}"
        elif key in intervals and not np.isfinite(low):
            note = "interval not defined (undefined in every resample)"
        elif iv.get("undefined_share"):
            note = f"interval over the {100 * (1 - iv['undefined_share']):.0f}% of resamples where it is defined"
        else:
            note = ""
        rows.append((label, value, low, high, note))
    frame = pd.DataFrame(rows, columns=["metric", "value", "low", "high", "note"])
    has_interval = frame["low"].notna()
    frame["interval"] = np.where(has_interval, interval_method, "")
    return frame.assign(threshold=at["threshold"], split=split, patients=described["n_patients"],
                        patches=described["n_patches"], run=run_name)
