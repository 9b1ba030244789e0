"""Which patches to show a reviewer, in which order: outcomes, errors, the review queue, paging.

Pure NumPy/pandas, no Streamlit. Rows keep the run table's index, which is the patch's row in the
patch store, so a selection can always be traced back to its pixels.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.metrics import check_threshold
from pipeline.store import labelled

# Outcome code = 2 * label + predicted, the same coding as pipeline.metrics.grouped_confusion_at.
OUTCOMES = ("TN", "FP", "FN", "TP")
UNLABELLED = "unlabelled"  # the outcome of a patch without a ground truth (a slide ingested without annotations)
UNLABELLED_CODE = -1
ERROR_KINDS = ("FP", "FN")
QUEUE_ORDERS = {
    "uncertain": "Most uncertain first (nearest the threshold)",
    "confident_errors": "Most confident errors first",
}


def outcome_codes(label, prob, threshold: float) -> np.ndarray:
    """0 TN, 1 FP, 2 FN, 3 TP per patch, calling IDC when prob >= threshold; UNLABELLED_CODE (-1) for
    a patch without a label (store.UNLABELLED), which has no outcome."""
    predicted = np.asarray(prob) >= check_threshold(threshold)
    label = np.asarray(label, np.int8)
    codes = (2 * label + predicted).astype(np.int8)
    return np.where(labelled(label), codes, np.int8(UNLABELLED_CODE)).astype(np.int8)


OUTCOME_NAMES = (*OUTCOMES, UNLABELLED)  # index -1 (UNLABELLED_CODE) is 'unlabelled'


def outcome_names(label, prob, threshold: float) -> np.ndarray:
    return np.asarray(OUTCOME_NAMES)[outcome_codes(label, prob, threshold)]


def labelled_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with a ground-truth label (0 or 1): what every metric is measured on."""
    return rows[labelled(rows["label"].to_numpy())]


def unlabelled_counts(rows: pd.DataFrame) -> dict:
    """{'n_patches', 'n_patients'} of ``rows`` without a label, and 'n_patients_partly': patients with
    some of their patches unlabelled (a slide without annotations is wholly unlabelled)."""
    missing = ~labelled(rows["label"].to_numpy())
    pids = np.asarray(rows["patient_id"].astype(str))
    with_missing = set(pids[missing])
    return {"n_patches": int(missing.sum()), "n_patients": len(with_missing - set(pids[~missing])),
            "n_patients_partly": len(with_missing & set(pids[~missing]))}


def unlabelled_text(counts: dict, total_patches: int) -> str:
    """The caption saying what the metrics leave out, '' when every patch is labelled."""
    if not counts["n_patches"]:
        return ""
    n, p = counts["n_patches"], counts["n_patients"]
    text = (f"{n:,} of {total_patches:,} patches are unlabelled (slides ingested without annotations) and left out "
            f"of every metric: {p:,} patient{'s' * (p != 1)} without any label")
    if counts["n_patients_partly"]:
        text += f", {counts['n_patients_partly']:,} partly labelled"
    return text + "."


def _ranked(index: np.ndarray, codes: np.ndarray, order: np.ndarray, **scores: np.ndarray) -> pd.DataFrame:
    """The ranking as a slim frame (patch row index, outcome, scores); callers look up other columns
    only for the page they show, so ordering 277,524 patches never copies the whole table."""
    codes = np.where(codes[order] < 0, len(OUTCOMES), codes[order])  # unlabelled: the last category
    categories = OUTCOME_NAMES if (codes == len(OUTCOMES)).any() else OUTCOMES
    return pd.DataFrame({"outcome": pd.Categorical.from_codes(codes, categories),
                         **{name: values[order] for name, values in scores.items()}}, index=index[order])


def _errors(index, label, prob, threshold: float, kinds) -> pd.DataFrame:
    unknown = set(kinds) - set(ERROR_KINDS)
    if unknown:
        raise ValueError(f"unknown error kinds {sorted(unknown)}; use {ERROR_KINDS}")
    codes = outcome_codes(label, prob, threshold)
    keep = np.isin(codes, [OUTCOMES.index(k) for k in kinds])
    confidence = np.abs(prob - label)[keep]
    return _ranked(index[keep], codes[keep], np.argsort(-confidence, kind="stable"), confidence=confidence)


def _uncertain(index, label, prob, threshold: float) -> pd.DataFrame:
    distance = np.abs(prob - check_threshold(threshold))
    return _ranked(index, outcome_codes(label, prob, threshold), np.argsort(distance, kind="stable"),
                   distance=distance)


def _arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rows.index.to_numpy(), rows["label"].to_numpy(), rows["prob"].to_numpy(np.float64)


def errors(rows: pd.DataFrame, threshold: float, kinds=ERROR_KINDS) -> pd.DataFrame:
    """The false positives and/or false negatives among ``rows``, most confident error first.

    Confidence of an error is how far the probability sits on the wrong side: prob for a false
    positive, 1 - prob for a false negative (|prob - label| for both). Ties keep table order.
    Returns one row per error (index = patch row) with its outcome and confidence.
    """
    return _errors(*_arrays(rows), threshold, kinds)


def uncertainty_queue(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Every patch in ``rows``, the ones whose probability is nearest the threshold first."""
    return _uncertain(*_arrays(rows), threshold)


def review_queue(rows: pd.DataFrame, threshold: float, order: str, reviewed_rows=()) -> pd.DataFrame:
    """Patches still to review in the chosen order (see QUEUE_ORDERS), leaving out ``reviewed_rows``."""
    if order not in QUEUE_ORDERS:
        raise ValueError(f"unknown queue order {order!r}; use one of {', '.join(QUEUE_ORDERS)}")
    index, label, prob = _arrays(rows)
    pending = ~np.isin(index, np.asarray(list(reviewed_rows), dtype=index.dtype))
    arrays = (index[pending], label[pending], prob[pending])
    return _errors(*arrays, threshold, ERROR_KINDS) if order == "confident_errors" else _uncertain(*arrays, threshold)


def spread_over_patients(queue: pd.DataFrame, patient_ids) -> pd.DataFrame:
    """``queue`` reordered round-robin by patient: each patient's first item, then each one's second, ...

    ``patient_ids`` gives each queue row's patient (aligned with ``queue``). Within a patient the
    queue's order is kept; patients take turns in the order their first item appears in the queue,
    so the most urgent item overall still comes first and no patient's work hogs the top.
    """
    pids = pd.Series(np.asarray(patient_ids), index=range(len(queue)))
    if len(pids) != len(queue):
        raise ValueError(f"patient_ids has {len(pids)} entries for a queue of {len(queue)}")
    rank = pids.groupby(pids, sort=False).cumcount().to_numpy()  # 0 for each patient's first item, ...
    first_seen = pd.factorize(pids)[0]  # patients in the order they first appear
    order = np.lexsort((first_seen, rank))
    return queue.iloc[order]


PROGRESS = ("not started", "in review", "done")


def slide_progress(patient_ids, reviews: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """Each patient's review progress: ``progress`` (not started / in review / done), ``by``, ``when``,
    ``patches_reviewed`` (patches with at least one review), indexed by patient_id in ``patient_ids`` order.

    ``reviews`` are the run's reviews of its own patches (patient_id, row, reviewer, created_at);
    ``status`` the latest slide status per patient (patient_id, status, reviewer, created_at; status
    'in_review', 'done' or 'reopened'). Done = the latest status is 'done' (by whom marked it, when);
    otherwise a patient with a review or a status row is in review (by its reviewers, at the latest
    review; a slide with a status row but no review yet, e.g. reopened: by whom set it, when), and
    one with neither is not started.
    """
    ids = pd.Index([str(p) for p in patient_ids], name="patient_id")
    out = pd.DataFrame({"progress": PROGRESS[0], "by": "", "when": "", "patches_reviewed": 0}, index=ids)
    if len(reviews):
        r = reviews.assign(patient_id=reviews["patient_id"].astype(str))
        r = r[r["patient_id"].isin(ids)]
        grouped = r.groupby("patient_id")
        out.loc[grouped.size().index, "patches_reviewed"] = grouped["row"].nunique()
        out.loc[grouped.size().index, "by"] = grouped["reviewer"].agg(lambda s: ", ".join(sorted(set(s))))
        out.loc[grouped.size().index, "when"] = grouped["created_at"].max()
        out.loc[grouped.size().index, "progress"] = PROGRESS[1]
    if len(status):
        st_ = status.assign(patient_id=status["patient_id"].astype(str))
        st_ = st_[st_["patient_id"].isin(ids)].set_index("patient_id")
        done = st_[st_["status"] == "done"]
        out.loc[st_.index, "progress"] = PROGRESS[1]
        unnamed = st_[out.loc[st_.index, "by"].eq("").to_numpy()]  # in review without a review yet
        out.loc[unnamed.index, "by"] = unnamed["reviewer"].astype(str)
        out.loc[unnamed.index, "when"] = unnamed["created_at"].astype(str)
        out.loc[done.index, "progress"] = PROGRESS[2]
        out.loc[done.index, "by"] = done["reviewer"].astype(str)
        out.loc[done.index, "when"] = done["created_at"].astype(str)
    out["patches_reviewed"] = out["patches_reviewed"].astype("int64")
    return out


def progress_text(progress: pd.Series) -> str:
    """One patient's progress in a few words, e.g. 'done by A' or 'in review by A, B · 3 patches reviewed'
    (when: :func:`progress_when`)."""
    by = f" by {progress['by']}" if progress["by"] else ""
    if progress["progress"] == PROGRESS[2]:
        return f"done{by}"
    if progress["progress"] == PROGRESS[1]:
        n = int(progress["patches_reviewed"])
        return f"in review{by} · {n:,} patch{'es' * (n != 1)} reviewed"
    return PROGRESS[0]


def progress_when(progress: pd.Series) -> str:
    """When a slide was marked done, or last reviewed while in review, as 'YYYY-MM-DD HH:MM UTC'; empty
    when not started (or not known)."""
    if progress["progress"] == PROGRESS[0] or not progress["when"]:
        return ""
    return f"{str(progress['when']).replace('T', ' ')[:16]} UTC"


def unreviewed(patient_ids, progress: pd.DataFrame, keep=None) -> list:
    """The patients of ``patient_ids`` whose slide review is not done (``progress``: :func:`slide_progress`
    of the run), in order; ``keep`` (e.g. the open patient) stays listed. The one definition of every
    "Only unreviewed patients" filter."""
    return [p for p in patient_ids if progress.at[str(p), "progress"] != PROGRESS[2] or (keep is not None and p == keep)]


def n_pages(n_items: int, per_page: int) -> int:
    """At least one page, so an empty selection still has a page 1 to show."""
    return max(1, -(-n_items // per_page))


def page_bounds(n_items: int, number: int, per_page: int) -> tuple[int, int]:
    """[start, stop) of page ``number`` (1-based, clamped to the pages that exist)."""
    number = min(max(int(number), 1), n_pages(n_items, per_page))
    start = (number - 1) * per_page
    return start, min(start + per_page, n_items)



# --------------------------------------------------------------------------- keyboard review
# Stepping through patches by keys (J next, K previous) in the inspector: the patient's errors, the
# patches a reviewer came for, or every patch in reading order (top to bottom, left to right).
STEP_ORDERS = {
    "errors": "Errors, most confident first",
    "all": "All patches, top to bottom",
}


def step_order(rows: pd.DataFrame, threshold: float, order: str) -> list[int]:
    """The patch rows J/K step through, in order (see STEP_ORDERS)."""
    if order == "errors":
        return [int(r) for r in errors(rows, threshold).index]
    if order == "all":
        return [int(r) for r in rows.sort_values(["y", "x"], kind="stable").index]
    raise ValueError(f"unknown step order {order!r}; use one of {', '.join(STEP_ORDERS)}")


def neighbours(order, current) -> tuple[int | None, int | None]:
    """(previous, next) of ``current`` in ``order``; None past either end.

    A patch outside the order (e.g. a true negative open while stepping through errors) has no
    previous, and its next is the order's first patch, so J always leads somewhere useful.
    """
    order = list(order)
    if current not in order:
        return None, (order[0] if order else None)
    i = order.index(current)
    return (order[i - 1] if i > 0 else None), (order[i + 1] if i + 1 < len(order) else None)


def focus_position(n_items: int, position: int | None, page: int, per_page: int) -> tuple[int, int]:
    """(position of the current item, page to show) for a paged gallery with one current item.

    The page follows the current item (J past a page's last card turns the page); with no current
    item (a new selection, or the reviewer turned the page) the current item is the page's first.
    """
    if n_items <= 0:
        return 0, 1
    if position is None or not 0 <= position < n_items:
        start, _ = page_bounds(n_items, page, per_page)
        return start, start // per_page + 1
    return position, position // per_page + 1


# --------------------------------------------------------------------------- one patient's rates
def undefined_patient_rates(n_idc: int, n_non_idc: int) -> dict[str, str]:
    """Which of a patient's rates are not defined, and why: {metric: reason}.

    Sensitivity and F1 need an IDC patch to find (with none, pipeline.metrics gives NaN and 0, and a
    0.000 would read as a model that missed everything); specificity needs a non-IDC patch.
    """
    out = {}
    if n_idc == 0:
        out.update(sensitivity="no IDC patch in this patient", f1="no IDC patch in this patient")
    if n_non_idc == 0:
        out["specificity"] = "no non-IDC patch in this patient"
    return out


def undefined_rates_text(undefined: dict[str, str]) -> list[str]:
    """One sentence per reason, naming the rates it leaves undefined: 'Sensitivity and F1 not defined: ...'."""
    names = {"sensitivity": "Sensitivity", "specificity": "Specificity", "f1": "F1"}
    return [" and ".join(names.get(n, n) for n, r in undefined.items() if r == reason) + f" not defined: {reason}."
            for reason in dict.fromkeys(undefined.values())]
