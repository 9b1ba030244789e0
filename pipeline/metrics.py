"""Classification metrics as pure, vectorised NumPy functions.

Used by the pipeline's evaluation and by the app's live threshold slider, so they must be exact
(tests compare them with scikit-learn) and fast on the full 277,524-patch dataset: no Python loops
over patches. Conventions follow scikit-learn: precision and F1 are 0 when nothing is predicted
positive, MCC is 0 when undefined; sensitivity/specificity are NaN when their class is absent, and
so is balanced accuracy (their mean), which would otherwise be the one rate that exists (1.000 on a
split where every patch is negative and none is called positive).
"""
from __future__ import annotations

import numpy as np

METRIC_NAMES = ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "mcc", "accuracy")


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as float, or raise ValueError saying the valid range."""
    t = float(threshold)
    if not (0.0 <= t <= 1.0) or np.isnan(t):
        raise ValueError(f"threshold must be between 0 and 1 (a probability), got {threshold!r}")
    return t


def _check_inputs(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y_true and prob must be 1-D arrays of equal length, got {y.shape} and {p.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    return y.astype(bool), p


def confusion_at(y_true, prob, threshold: float) -> dict[str, int]:
    """Counts of TN, FP, FN, TP when a patch is called IDC if prob >= threshold."""
    y, p = _check_inputs(y_true, prob)
    pred = p >= check_threshold(threshold)
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    return {"tn": int(y.size - tp - fp - fn), "fp": fp, "fn": fn, "tp": tp}


def rates_from_counts(tn, fp, fn, tp) -> dict[str, np.ndarray | float]:
    """Precision, sensitivity, specificity, F1, balanced accuracy, MCC, accuracy from counts.

    Works on scalars or on arrays of counts (one entry per patient), element-wise.
    """
    tn, fp, fn, tp = (np.asarray(v, dtype=np.float64) for v in (tn, fp, fn, tp))
    with np.errstate(divide="ignore", invalid="ignore"):
        pos, neg, called = tp + fn, tn + fp, tp + fp
        precision = np.where(called > 0, tp / called, 0.0)
        sensitivity = np.where(pos > 0, tp / pos, np.nan)
        specificity = np.where(neg > 0, tn / neg, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        # Undefined (NaN) unless both classes are present: with one class it would just be the
        # other rate under a name that promises both.
        balanced = (sensitivity + specificity) / 2
        denom = np.sqrt(called * pos * neg * (tn + fn))
        mcc = np.where(denom > 0, (tp * tn - fp * fn) / denom, 0.0)
        total = tp + tn + fp + fn
        accuracy = np.where(total > 0, (tp + tn) / total, np.nan)
    out = {
        "precision": precision, "sensitivity": sensitivity, "specificity": specificity, "f1": f1,
        "balanced_accuracy": balanced, "mcc": mcc, "accuracy": accuracy,
    }
    if np.ndim(tp) == 0:
        out = {k: float(np.asarray(v).item()) for k, v in out.items()}
    return out


def metrics_at(y_true, prob, threshold: float) -> dict[str, float | int]:
    """All threshold metrics plus the confusion counts, as one flat dict."""
    counts = confusion_at(y_true, prob, threshold)
    return {**rates_from_counts(**counts), **counts, "threshold": check_threshold(threshold)}


def grouped_confusion_at(groups, y_true, prob, threshold: float, n_groups: int | None = None) -> dict[str, np.ndarray]:
    """Confusion counts per group (e.g. per patient); ``groups`` are integer codes 0..n_groups-1."""
    y, p = _check_inputs(y_true, prob)
    g = np.asarray(groups, dtype=np.int64)
    n = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
    pred = p >= check_threshold(threshold)
    # One bincount over a 4-way outcome code avoids four passes over the data.
    code = g * 4 + (y.astype(np.int64) * 2 + pred.astype(np.int64))
    c = np.bincount(code, minlength=4 * n).reshape(n, 4)
    return {"tn": c[:, 0], "fp": c[:, 1], "fn": c[:, 2], "tp": c[:, 3]}


MACRO_METRICS = ("f1", "sensitivity", "specificity", "balanced_accuracy")


def per_group_rates_at(groups, y_true, prob, threshold: float, n_groups: int | None = None) -> dict[str, np.ndarray]:
    """Each group's (patient's) F1, sensitivity, specificity and balanced accuracy; NaN where undefined.

    Unlike :func:`rates_from_counts`, F1 is NaN (not 0) for a patient without an IDC patch: with no
    positive to find, a patient's F1 says nothing about the model, and averaging its 0 (or its 1
    under another convention) over patients would move the mean by the share of such patients.
    """
    c = grouped_confusion_at(groups, y_true, prob, threshold, n_groups)
    r = rates_from_counts(**c)
    has_pos = (c["tp"] + c["fn"]) > 0
    return {"f1": np.where(has_pos, r["f1"], np.nan), "sensitivity": r["sensitivity"],
            "specificity": r["specificity"], "balanced_accuracy": r["balanced_accuracy"]}


def per_group_roc_auc(groups, y_true, prob, n_groups: int | None = None) -> np.ndarray:
    """Each group's ROC-AUC (NaN for a group with a single class, where ranking is undefined)."""
    y, p = _check_inputs(y_true, prob)
    g = np.asarray(groups, dtype=np.int64)
    n = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
    out = np.full(n, np.nan)
    order = np.argsort(g, kind="stable")
    bounds = np.searchsorted(g[order], np.arange(n + 1))
    for k in range(n):
        idx = order[bounds[k]:bounds[k + 1]]
        yk = y[idx]
        if 0 < yk.sum() < yk.size:
            out[k] = roc_auc(yk, p[idx])
    return out


# --------------------------------------------------------------------------- threshold-free curves
def _sorted_counts(y_true, prob):
    """Cumulative TP/FP counts at each distinct score, highest score first."""
    y, p = _check_inputs(y_true, prob)
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(p)), y.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    return fps.astype(np.float64), tps.astype(np.float64), p[distinct]


def roc_curve(y_true, prob):
    """(fpr, tpr, thresholds), starting at (0, 0), as scikit-learn's roc_curve without dropping points."""
    fps, tps, thr = _sorted_counts(y_true, prob)
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, thr


def roc_auc(y_true, prob) -> float:
    """Area under the ROC curve (trapezoidal, ties handled as scikit-learn); NaN if one class is absent."""
    fpr, tpr, _ = roc_curve(y_true, prob)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(y_true, prob):
    """(precision, recall, thresholds) from the highest threshold down, ending at recall 1."""
    fps, tps, thr = _sorted_counts(y_true, prob)
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return precision, recall, thr


def average_precision(y_true, prob) -> float:
    """PR-AUC as scikit-learn's average_precision_score (step-wise, no interpolation)."""
    precision, recall, _ = precision_recall_curve(y_true, prob)
    if np.isnan(recall).any():
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_presets(y_true, prob, min_sensitivity: float = 0.95) -> dict[str, float]:
    """Operating points chosen on one split (validation): 0.5, F1-optimal, Youden's J, 95% sensitivity.

    Each candidate threshold is a distinct score, so ``prob >= t`` reproduces that point exactly.
    """
    fps, tps, thr = _sorted_counts(y_true, prob)
    P, N = tps[-1], fps[-1]
    presets = {"default": 0.5}
    if P == 0 or N == 0:
        return presets
    fns = P - tps
    f1 = 2 * tps / (2 * tps + fps + fns)
    youden = tps / P - fps / N
    presets["f1_optimal"] = float(thr[np.argmax(f1)])
    presets["youden_j"] = float(thr[np.argmax(youden)])
    reaching = np.flatnonzero(tps / P >= min_sensitivity)
    presets["sensitivity_95"] = float(thr[reaching[0]])  # the highest threshold that still reaches it
    return presets


# --------------------------------------------------------------------------- calibration
def reliability_bins(y_true, prob, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Equal-width bins of predicted probability: mean prediction, observed IDC fraction, count."""
    y, p = _check_inputs(y_true, prob)
    idx = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"lower": edges[:-1], "upper": edges[1:], "mean_pred": mean_pred, "frac_pos": frac_pos, "count": count}


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """Count-weighted mean |observed - predicted| over the reliability bins."""
    b = reliability_bins(y_true, prob, n_bins)
    ok = b["count"] > 0
    if not ok.any():
        return float("nan")
    return float(np.sum(b["count"][ok] * np.abs(b["frac_pos"][ok] - b["mean_pred"][ok])) / b["count"].sum())


def downsample_curve(*arrays, max_points: int = 400):
    """Keep at most ``max_points`` evenly spaced points (always the ends) of aligned curve arrays."""
    n = len(arrays[0])
    if n <= max_points:
        return arrays
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    return tuple(np.asarray(a)[keep] for a in arrays)
