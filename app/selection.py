"""Which patches to show a reviewer, in which order: outcomes, errors, the review queue, paging.

Pure NumPy/pandas, no Streamlit. Rows keep the run table's index, which is the patch's row in the
patch store, so a selection can always be traced back to its pixels.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.metrics import check_threshold

# Outcome code = 2 * label + predicted, the same coding as pipeline.metrics.grouped_confusion_at.
OUTCOMES = ("TN", "FP", "FN", "TP")
ERROR_KINDS = ("FP", "FN")
QUEUE_ORDERS = {
    "confident_errors": "Most confident errors first",
    "uncertain": "Most uncertain first (nearest the threshold)",
}


def outcome_codes(label, prob, threshold: float) -> np.ndarray:
    """0 TN, 1 FP, 2 FN, 3 TP per patch, calling IDC when prob >= threshold."""
    predicted = np.asarray(prob) >= check_threshold(threshold)
    return (2 * np.asarray(label, np.int8) + predicted).astype(np.int8)


def outcome_names(label, prob, threshold: float) -> np.ndarray:
    return np.asarray(OUTCOMES)[outcome_codes(label, prob, threshold)]


def errors(rows: pd.DataFrame, threshold: float, kinds=ERROR_KINDS) -> pd.DataFrame:
    """The false positives and/or false negatives among ``rows``, most confident error first.

    Confidence of an error is how far the probability sits on the wrong side: prob for a false
    positive, 1 - prob for a false negative (|prob - label| for both). Ties keep table order.
    """
    unknown = set(kinds) - set(ERROR_KINDS)
    if unknown:
        raise ValueError(f"unknown error kinds {sorted(unknown)}; use {ERROR_KINDS}")
    label, prob = rows["label"].to_numpy(), rows["prob"].to_numpy(np.float64)
    outcome = outcome_names(label, prob, threshold)
    keep = np.isin(outcome, list(kinds))
    confidence = np.abs(prob - label)[keep]
    order = np.argsort(-confidence, kind="stable")
    return rows[keep].iloc[order].assign(outcome=outcome[keep][order], confidence=confidence[order])


def uncertainty_queue(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Every patch in ``rows``, the ones whose probability is nearest the threshold first."""
    label, prob = rows["label"].to_numpy(), rows["prob"].to_numpy(np.float64)
    distance = np.abs(prob - check_threshold(threshold))
    order = np.argsort(distance, kind="stable")
    return rows.iloc[order].assign(outcome=outcome_names(label, prob, threshold)[order],
                                   distance=distance[order])


def review_queue(rows: pd.DataFrame, threshold: float, order: str, reviewed_rows=()) -> pd.DataFrame:
    """Patches still to review in the chosen order (see QUEUE_ORDERS), leaving out ``reviewed_rows``."""
    if order not in QUEUE_ORDERS:
        raise ValueError(f"unknown queue order {order!r}; use one of {', '.join(QUEUE_ORDERS)}")
    pending = rows[~rows.index.isin(list(reviewed_rows))]
    return errors(pending, threshold) if order == "confident_errors" else uncertainty_queue(pending, threshold)


def n_pages(n_items: int, per_page: int) -> int:
    """At least one page, so an empty selection still has a page 1 to show."""
    return max(1, -(-n_items // per_page))


def page_bounds(n_items: int, number: int, per_page: int) -> tuple[int, int]:
    """[start, stop) of page ``number`` (1-based, clamped to the pages that exist)."""
    number = min(max(int(number), 1), n_pages(n_items, per_page))
    start = (number - 1) * per_page
    return start, min(start + per_page, n_items)

