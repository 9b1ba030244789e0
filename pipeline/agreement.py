"""Agreement between pathologists' reviews, and the "reviewed label" their consensus gives a patch.

Pure pandas/NumPy: no Streamlit, no SQLite. The review store (``pipeline/reviews.py``), the app and the
CLI call these functions on a reviews table; nothing here reads or writes files except
:func:`read_reviews_csv`, which only reads.

Opinions
    A reviews table has at least ``patient_id, x, y, verdict, reviewer, created_at`` (the columns of
    ``pipeline.reviews.COLUMNS``; ``id`` is used to break ties in time when present). Reviews are
    append-only, so one reviewer may have reviewed a patch several times: **each reviewer's latest
    review of a patch is their opinion of it** (:func:`latest_per_reviewer`), and the opinions of
    different reviewers on one patch are kept side by side as independent opinions, never merged.
    "Latest" is the latest ``created_at`` (ISO 8601; a time without a UTC offset is taken as UTC),
    then the highest ``id``, then the later row of the table. A patch is always named by its
    identity (patient_id, x, y), never by a manifest row.

Verdicts
    ``agree`` (the dataset label is right), ``label_wrong`` and ``unsure``: the same keys as
    ``pipeline.reviews.VERDICTS``. A verdict is about the dataset label, so two reviewers' verdicts on one
    patch are directly comparable.

Agreement statistics
    * :func:`cohen_kappa`: unweighted Cohen's kappa of two label vectors, computed exactly as
      ``sklearn.metrics.cohen_kappa_score`` does (same operations in the same order, so the same
      float), including its undefined cases: when the expected disagreement is zero (both raters
      used one and the same category and nothing else) kappa is 0/0, and like scikit-learn this
      returns ``nan`` with a warning (:class:`UndefinedAgreementWarning`). Empty input raises.
    * :func:`pairwise_kappa`: Cohen's kappa for every pair of reviewers on the patches both reviewed.
    * :func:`fleiss_kappa`: Fleiss' kappa over items rated by two or more raters; the per-item
      generalisation for a varying number of raters is documented there.
    * :func:`verdict_confusion`, :func:`disagreements`, :func:`reviewer_vs_label`,
      :func:`agreement_report` (all of the above at once, for a page or a CLI report).

Consensus
    :class:`ConsensusRule` states when the reviewers' opinions flip a dataset label;
    :func:`reviewed_labels` applies it to a labels table and says which patches to leave out of
    training because the reviewers could not settle them. ``ConsensusRule.describe()`` is the
    sentence to show next to any number computed with it.

CSV import
    :func:`read_reviews_csv` reads a CSV with the export's columns, checks every row and returns the
    good rows plus (row number, reason) for every rejected one: nothing is dropped unreported.
"""
from __future__ import annotations

import csv
import io
import itertools
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.names import is_patient_id, is_slide_patient_id

# The verdicts, defined here once (pipeline.reviews.VERDICTS gives each its label).
VERDICTS = ("agree", "label_wrong", "unsure")
PATCH_KEY = ["patient_id", "x", "y"]
REQUIRED_REVIEW_COLUMNS = ("patient_id", "x", "y", "verdict", "reviewer", "created_at")
# The review store's columns (pipeline.reviews.COLUMNS); RunReviews.export_frame adds row (in the run).
CSV_COLUMNS = ("id", "patient_id", "x", "y", "verdict", "note", "reviewer", "created_at", "run_name", "model",
               "threshold", "prob_shown", "source", "recorded_row")
# Read when present: row and recorded_row are checked as whole numbers, threshold and prob_shown as
# probabilities, run_name and model kept as text (source is not: an imported review is an import).
CSV_OPTIONAL_COLUMNS = ("id", "row", "recorded_row", "note", "run_name", "model", "threshold", "prob_shown",
                        "source")
MAX_NOTE_CHARS = 10_000  # pipeline.reviews.MAX_NOTE_CHARS: an imported note must fit the store too
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # pipeline.exports.FORMULA_STARTS


class UndefinedAgreementWarning(UserWarning):
    """A kappa is 0/0 (no disagreement was possible by chance) and was returned as nan."""


# --------------------------------------------------------------------------- opinions
def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with the patch key normalised: patient_id str, x and y int64."""
    return df.astype({"patient_id": str, "x": "int64", "y": "int64"})


def _check_reviews(reviews: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_REVIEW_COLUMNS if c not in reviews.columns]
    if missing:
        raise ValueError(f"reviews lack the columns {missing}; a reviews table has {list(REQUIRED_REVIEW_COLUMNS)}")
    bad = sorted(set(reviews["verdict"].astype(str)) - set(VERDICTS))
    if bad:
        raise ValueError(f"unknown verdicts {bad}; valid verdicts: {', '.join(VERDICTS)}")


def _timestamps(created_at: pd.Series) -> pd.Series:
    """created_at parsed as UTC; a value without an offset is taken as UTC. Raises naming bad values."""
    try:
        return pd.to_datetime(created_at.astype(str), utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"created_at must be ISO 8601 times (e.g. 2025-01-31T14:05:09.123+00:00): {exc}") from None


def latest_per_reviewer(reviews: pd.DataFrame) -> pd.DataFrame:
    """Each reviewer's latest review of each patch: one row per (patient_id, x, y, reviewer).

    Latest = latest ``created_at``, then highest ``id`` (when the table has one), then the later row.
    Reviewer names are compared after stripping surrounding spaces, case-sensitively. Other columns
    (note, id, row ...) come along. Sorted by patient_id, x, y, reviewer; a fresh RangeIndex.
    """
    _check_reviews(reviews)
    out = _keyed(reviews).reset_index(drop=True)
    out["reviewer"] = out["reviewer"].astype(str).str.strip()
    out["verdict"] = out["verdict"].astype(str)
    if (out["reviewer"] == "").any():
        raise ValueError("every review needs a reviewer name; some are empty")
    order = pd.DataFrame({"t": _timestamps(out["created_at"]), "pos": np.arange(len(out))})
    if "id" in out.columns:
        order.insert(1, "id", pd.to_numeric(out["id"], errors="coerce").fillna(-1))
    ranked = out.iloc[order.sort_values(list(order.columns), kind="stable").index]
    latest = ranked.drop_duplicates([*PATCH_KEY, "reviewer"], keep="last")
    return latest.sort_values([*PATCH_KEY, "reviewer"], kind="stable").reset_index(drop=True)


def verdict_counts(reviews: pd.DataFrame, min_reviewers: int = 1) -> pd.DataFrame:
    """Per patch (patient_id, x, y): how many reviewers' latest verdicts are agree / label_wrong /
    unsure, and n_reviewers; only patches with at least ``min_reviewers`` reviewers."""
    latest = latest_per_reviewer(reviews)
    if latest.empty:
        counts = pd.DataFrame({c: pd.Series(dtype="int64") for c in (*PATCH_KEY, *VERDICTS)})
    else:
        counts = (pd.crosstab([latest[k] for k in PATCH_KEY], latest["verdict"])
                  .reindex(columns=list(VERDICTS), fill_value=0).reset_index())
        counts.columns.name = None
    counts = _keyed(counts).astype({v: "int64" for v in VERDICTS})
    counts["n_reviewers"] = counts[list(VERDICTS)].sum(axis=1).astype("int64")
    return counts[counts["n_reviewers"] >= min_reviewers].reset_index(drop=True)


def _wide(latest: pd.DataFrame) -> pd.DataFrame:
    """Patches x reviewers table of latest verdicts (NaN where a reviewer did not review a patch)."""
    return latest.pivot(index=PATCH_KEY, columns="reviewer", values="verdict")


# --------------------------------------------------------------------------- Cohen's kappa
def _kappa_from_codes(a: np.ndarray, b: np.ndarray, n_classes: int) -> float:
    """Unweighted kappa of integer codes 0..n_classes-1, with scikit-learn's exact arithmetic
    (cohen_kappa_score, scikit-learn 1.9: float64 confusion, expected = outer(column sums, row
    sums) / n, kappa = 1 - sum(w * confusion) / sum(w * expected)); nan when 0/0, no warning."""
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (a, b), 1)
    confusion = confusion.astype(np.float64)
    sum0 = np.sum(confusion, axis=0)
    sum1 = np.sum(confusion, axis=1)
    total = np.sum(sum0)
    if total == 0:
        return float("nan")
    expected = np.outer(sum0, sum1) / total
    w = np.ones((n_classes, n_classes), np.float64)
    np.fill_diagonal(w, 0)
    denominator = np.sum(w * expected)
    if denominator == 0:
        return float("nan")
    return float(1 - np.sum(w * confusion) / denominator)


def cohen_kappa(a, b, labels=None) -> float:
    """Unweighted Cohen's kappa of two equal-length label vectors; equals
    ``sklearn.metrics.cohen_kappa_score(a, b, labels=labels)`` exactly.

    ``labels`` (optional) restricts the count to those categories, as scikit-learn does (pairs with
    a value outside them are left out); by default every category that occurs counts. Undefined
    cases, like scikit-learn: when the expected disagreement is zero (e.g. both raters gave every
    item the same single category) or no pair is left, kappa is 0/0 and ``nan`` is returned with an
    :class:`UndefinedAgreementWarning`. Empty input raises ValueError (scikit-learn does too).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D and of equal length, got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("cohen_kappa needs at least one rated item; got empty vectors")
    if labels is None:
        classes = np.unique(np.concatenate([a, b]))
        keep = np.ones(len(a), bool)
    else:
        classes = np.asarray(labels)
        if len(classes) == 0:
            raise ValueError("labels must name at least one category")
        if not np.isin(a, classes).any():
            raise ValueError("at least one label in labels must be present in a (as scikit-learn requires)")
        keep = np.isin(a, classes) & np.isin(b, classes)
    lookup = {value: i for i, value in enumerate(classes.tolist())}
    codes_a = np.fromiter((lookup[v] for v in a[keep].tolist()), np.int64, int(keep.sum()))
    codes_b = np.fromiter((lookup[v] for v in b[keep].tolist()), np.int64, int(keep.sum()))
    kappa = _kappa_from_codes(codes_a, codes_b, len(classes))
    if np.isnan(kappa):
        warnings.warn("Cohen's kappa is undefined (0/0): no disagreement was expected by chance, e.g. both "
                      "raters used one and the same category for every item; returning nan, as "
                      "scikit-learn's cohen_kappa_score does", UndefinedAgreementWarning, stacklevel=2)
    return kappa


def _codes(verdicts) -> np.ndarray:
    return pd.Categorical(verdicts, categories=list(VERDICTS)).codes.astype(np.int64)


def pairwise_kappa(reviews: pd.DataFrame) -> pd.DataFrame:
    """Cohen's kappa of every pair of reviewers on the patches both reviewed (latest verdicts).

    Columns: reviewer_a, reviewer_b (a < b), n_patches, kappa, observed_agreement (the share of
    those patches given the same verdict). Pairs that share no patch are left out. kappa is nan
    (no warning) where it is undefined (see :func:`cohen_kappa`): read observed_agreement there.
    """
    latest = latest_per_reviewer(reviews)
    wide = _wide(latest)
    rows = []
    for ra, rb in itertools.combinations(sorted(wide.columns), 2):
        both = wide[[ra, rb]].dropna()
        if both.empty:
            continue
        a, b = _codes(both[ra]), _codes(both[rb])
        rows.append({"reviewer_a": ra, "reviewer_b": rb, "n_patches": len(both),
                     "kappa": _kappa_from_codes(a, b, len(VERDICTS)),
                     "observed_agreement": float(np.mean(a == b))})
    return pd.DataFrame(rows, columns=["reviewer_a", "reviewer_b", "n_patches", "kappa", "observed_agreement"]
                        ).astype({"n_patches": "int64", "kappa": "float64", "observed_agreement": "float64"})


# --------------------------------------------------------------------------- Fleiss' kappa
def _fleiss(counts: np.ndarray) -> tuple[float, float, float]:
    """(kappa, mean observed agreement P-bar, chance agreement P_e); kappa nan when P_e == 1."""
    n_i = counts.sum(axis=1)
    p_i = (np.sum(counts * counts, axis=1) - n_i) / (n_i * (n_i - 1.0))
    p_bar = float(np.mean(p_i))
    p_j = counts.sum(axis=0) / counts.sum()
    p_e = float(np.sum(p_j * p_j))
    kappa = float("nan") if p_e == 1 else (p_bar - p_e) / (1 - p_e)
    return kappa, p_bar, p_e


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa of a (n_items, n_categories) table: counts[i, j] = raters who put item i in category j.

    Every item needs at least 2 ratings. With the same number n of raters for every item this is
    Fleiss (1971): P_i = (sum_j n_ij^2 - n) / (n (n - 1)), P-bar = mean_i P_i, p_j = share of all
    ratings in category j, P_e = sum_j p_j^2, kappa = (P-bar - P_e) / (1 - P_e) (statsmodels'
    ``fleiss_kappa(method="fleiss")``). Generalisation when items have different numbers of raters
    n_i (reviewers do not all see every patch): P_i uses the item's own n_i, P-bar is the plain mean
    over items, and p_j pools all ratings (sum_i n_ij / sum_i n_i); it reduces to Fleiss' formula
    when every n_i is equal. kappa is 0/0 when every rating falls in one category (P_e = 1): then
    nan with an :class:`UndefinedAgreementWarning`.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] == 0 or counts.shape[1] == 0:
        raise ValueError(f"counts must be a non-empty (n_items, n_categories) table, got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.number) or (counts < 0).any() or (counts != np.round(counts)).any():
        raise ValueError("counts must be non-negative whole numbers of ratings")
    few = np.flatnonzero(counts.sum(axis=1) < 2)
    if few.size:
        raise ValueError(f"every item needs at least 2 ratings; items {few[:10].tolist()} have fewer")
    kappa, _, _ = _fleiss(counts.astype(np.float64))
    if np.isnan(kappa):
        warnings.warn("Fleiss' kappa is undefined (0/0): every rating is in one category; returning nan",
                      UndefinedAgreementWarning, stacklevel=2)
    return kappa


def fleiss_kappa_reviews(reviews: pd.DataFrame) -> tuple[float, int]:
    """(Fleiss' kappa, number of patches) over the patches that two or more reviewers reviewed,
    from each reviewer's latest verdict; (nan, 0) when there are none; nan, no warning, when undefined."""
    counts = verdict_counts(reviews, min_reviewers=2)
    if counts.empty:
        return float("nan"), 0
    return _fleiss(counts[list(VERDICTS)].to_numpy(np.float64))[0], len(counts)


# --------------------------------------------------------------------------- tables for review
def verdict_confusion(reviews: pd.DataFrame, reviewer_a: str, reviewer_b: str) -> pd.DataFrame:
    """3x3 counts of patches both reviewed: rows reviewer_a's latest verdict, columns reviewer_b's
    (every verdict listed, in VERDICTS order, zeros included)."""
    latest = latest_per_reviewer(reviews)
    wide = _wide(latest)
    for r in (reviewer_a, reviewer_b):
        if r not in wide.columns:
            raise ValueError(f"no reviews by {r!r}; reviewers: {sorted(wide.columns)}")
    both = wide[[reviewer_a, reviewer_b]].dropna() if reviewer_a != reviewer_b else wide[[reviewer_a]].dropna()
    a = pd.Categorical(both[reviewer_a], categories=list(VERDICTS))
    b = pd.Categorical(both[reviewer_b] if reviewer_a != reviewer_b else both[reviewer_a], categories=list(VERDICTS))
    table = pd.crosstab(a, b, dropna=False).reindex(index=list(VERDICTS), columns=list(VERDICTS), fill_value=0)
    table.index.name, table.columns.name = reviewer_a, reviewer_b
    return table.astype("int64")


def disagreements(reviews: pd.DataFrame) -> pd.DataFrame:
    """The patches whose reviewers' latest verdicts differ: the queue of disagreements to resolve.

    One row per patch: patient_id, x, y, n_reviewers, agree, label_wrong, unsure (counts), conflict
    ("label" when some say agree and others label_wrong; "unsure" when the only difference is that
    some are unsure), verdicts (dict reviewer -> verdict), summary ("alice: agree; bob: label_wrong"),
    last_reviewed_at. Order: "label" conflicts first, then the closest splits between agree and
    label_wrong, then more reviewers, then patient_id, y, x (reading order on the slide). A
    disagreement is resolved when a reviewer's new review changes their latest verdict.
    """
    latest = latest_per_reviewer(reviews)
    columns = [*PATCH_KEY, "n_reviewers", *VERDICTS, "conflict", "verdicts", "summary", "last_reviewed_at"]
    counts = verdict_counts(latest, min_reviewers=2)
    counts = counts[(counts[list(VERDICTS)] > 0).sum(axis=1) >= 2]
    if counts.empty:
        return pd.DataFrame(columns=columns)
    sub = latest.merge(counts[PATCH_KEY], on=PATCH_KEY)  # keeps latest's order: by patch, then reviewer
    sub["t"] = _timestamps(sub["created_at"])
    per_patch = sub.groupby(PATCH_KEY, sort=True)["t"].max().rename("last_reviewed_at").reset_index()
    per_patch["verdicts"] = [dict(zip(g["reviewer"], g["verdict"])) for _, g in sub.groupby(PATCH_KEY, sort=True)]
    out = counts.merge(per_patch, on=PATCH_KEY)
    out["summary"] = out["verdicts"].map(lambda d: "; ".join(f"{r}: {v}" for r, v in d.items()))
    hard = (out["agree"] > 0) & (out["label_wrong"] > 0)
    out["conflict"] = np.where(hard, "label", "unsure")
    decided = (out["agree"] + out["label_wrong"]).to_numpy(np.float64)
    balance = np.divide(np.minimum(out["agree"], out["label_wrong"]), decided,
                        out=np.zeros(len(out)), where=decided > 0)
    out = out.assign(_hard=hard, _balance=balance).sort_values(
        ["_hard", "_balance", "n_reviewers", "patient_id", "y", "x"],
        ascending=[False, False, False, True, True, True], kind="stable")
    return out[columns].reset_index(drop=True)


def reviewer_vs_label(reviews: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per reviewer, how often their latest verdicts agree with the dataset label.

    Columns: reviewer, n (patches reviewed), agree, label_wrong, unsure (counts), agree_share
    (agree / n: the share of 'agree' among their verdicts), decided_agree_share (agree / (agree +
    label_wrong), unsure left out; nan when they never took a side). With ``labels`` (patient_id,
    x, y, label) also agree_share on patches labelled IDC (1) and non-IDC (0), their n_idc /
    n_non_idc, and n_not_in_labels (patches the labels table lacks: counted in n, not in the split).
    """
    latest = latest_per_reviewer(reviews)
    counts = (pd.crosstab(latest["reviewer"], latest["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
              if len(latest) else pd.DataFrame(columns=list(VERDICTS), index=pd.Index([], name="reviewer")))
    out = counts.astype("int64")
    out.columns.name = None
    out.insert(0, "n", out.sum(axis=1).astype("int64"))
    out["agree_share"] = out["agree"] / out["n"]
    decided = out["agree"] + out["label_wrong"]
    out["decided_agree_share"] = (out["agree"] / decided.where(decided > 0)).astype("float64")
    if labels is not None:
        keyed = _unique_labels(labels)
        merged = latest.merge(keyed[[*PATCH_KEY, "label"]], on=PATCH_KEY, how="left")
        for name, value in (("idc", 1), ("non_idc", 0)):
            part = merged[merged["label"] == value]
            n = part.groupby("reviewer").size().reindex(out.index, fill_value=0)
            agree = part[part["verdict"] == "agree"].groupby("reviewer").size().reindex(out.index, fill_value=0)
            out[f"n_{name}"] = n.astype("int64")
            out[f"agree_share_{name}"] = (agree / n.where(n > 0)).astype("float64")
        missing = merged[merged["label"].isna()].groupby("reviewer").size()
        out["n_not_in_labels"] = missing.reindex(out.index, fill_value=0).astype("int64")
    return out.reset_index().rename(columns={"index": "reviewer"})


@dataclass(frozen=True)
class AgreementReport:
    """Everything the agreement page or a CLI report shows, computed once from one reviews table."""

    n_reviews: int  # every review in the table, superseded ones included
    n_reviewers: int
    n_patches: int  # patches with at least one review
    n_patches_multi: int  # patches reviewed by two or more reviewers: the ones agreement is measured on
    fleiss_kappa: float  # over the multi-reviewed patches; nan when none or undefined
    pairwise: pd.DataFrame  # see pairwise_kappa
    disagreements: pd.DataFrame  # see disagreements
    reviewer_vs_label: pd.DataFrame  # see reviewer_vs_label


def agreement_report(reviews: pd.DataFrame, labels: pd.DataFrame | None = None) -> AgreementReport:
    """:func:`pairwise_kappa`, Fleiss' kappa, :func:`disagreements` and :func:`reviewer_vs_label` at once."""
    latest = latest_per_reviewer(reviews)
    kappa, n_multi = fleiss_kappa_reviews(latest)
    return AgreementReport(
        n_reviews=len(reviews), n_reviewers=int(latest["reviewer"].nunique()),
        n_patches=int(len(latest.drop_duplicates(PATCH_KEY))), n_patches_multi=n_multi, fleiss_kappa=kappa,
        pairwise=pairwise_kappa(latest), disagreements=disagreements(latest),
        reviewer_vs_label=reviewer_vs_label(latest, labels))


# --------------------------------------------------------------------------- consensus
CONSENSUS_RULES = {
    "any": "at least one reviewer says the label is wrong",
    "majority": "more reviewers say the label is wrong than agree with it",
    "unanimous": "every reviewer who took a side says the label is wrong",
}
# Consensus status of a patch, as reviewed_labels reports it.
STATUSES = {
    "unreviewed": "no reviews: dataset label kept",
    "keep": "the reviewers' consensus keeps the dataset label",
    "flip": "the reviewers' consensus says the label is wrong: flipped",
    "tie": "as many reviewers say the label is wrong as agree (majority rule): left out of training",
    "split": "reviewers who took a side disagree (unanimous rule): left out of training",
    "all_unsure": "every reviewer is unsure: left out of training",
    "too_few": "fewer reviewers took a side than the rule requires: label kept; left out of training "
               "if one of them says the label is wrong",
}
UNSURE_STATUSES = ("tie", "split", "all_unsure")


@dataclass(frozen=True)
class ConsensusRule:
    """When do the reviewers' opinions flip a patch's dataset label?

    Each reviewer's latest verdict is one opinion; ``unsure`` abstains. Among the reviewers who took
    a side (agree or label_wrong), ``rule`` says when the label is flipped: ``any`` (one
    label_wrong is enough, whatever the others say), ``majority`` (strictly more label_wrong than
    agree; a tie flips nothing and leaves the patch out of training) or ``unanimous`` (everyone who
    took a side says label_wrong; a split leaves the patch out of training). ``min_reviewers``:
    how many must have taken a side before any flip; with fewer, the label is kept, and the patch
    is left out of training if one of them says the label is wrong (a doubt not yet confirmed). A
    patch whose every opinion is unsure is left out of training; an unreviewed patch keeps its label.
    """

    rule: str = "majority"
    min_reviewers: int = 1

    def __post_init__(self):
        if self.rule not in CONSENSUS_RULES:
            raise ValueError(f"unknown consensus rule {self.rule!r}; use one of {', '.join(CONSENSUS_RULES)}")
        if isinstance(self.min_reviewers, bool) or not isinstance(self.min_reviewers, (int, np.integer)) \
                or self.min_reviewers < 1:
            raise ValueError(f"min_reviewers must be a whole number >= 1, got {self.min_reviewers!r}")

    def describe(self) -> str:
        """The rule in one sentence, to show wherever a reviewed label or a count of them appears."""
        need = ("" if self.min_reviewers == 1 else
                f", once at least {self.min_reviewers} reviewers have taken a side (agree or label is wrong)")
        out = ["every reviewer is unsure"]
        if self.rule == "majority":
            out.append("as many reviewers agree as say the label is wrong")
        if self.rule == "unanimous":
            out.append("reviewers who took a side disagree")
        if self.min_reviewers > 1:
            out.append(f"a reviewer says the label is wrong but fewer than {self.min_reviewers} took a side")
        return (f"A dataset label is flipped when {CONSENSUS_RULES[self.rule]}{need}; each reviewer's latest "
                f"verdict counts once and 'unsure' abstains. Patches where {_either(out)} are left out of "
                "training.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConsensusRule:
        return cls(rule=str(d.get("rule", "majority")), min_reviewers=int(d.get("min_reviewers", 1)))


def _either(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def consensus(counts: pd.DataFrame, rule: ConsensusRule) -> pd.Series:
    """The consensus status (a key of STATUSES) of each row of a verdict-counts table (columns agree,
    label_wrong, unsure as in :func:`verdict_counts`), under ``rule``."""
    a = counts["agree"].to_numpy(np.int64)
    w = counts["label_wrong"].to_numpy(np.int64)
    u = counts["unsure"].to_numpy(np.int64)
    d = a + w
    if rule.rule == "any":
        flip, unsure = w > 0, np.zeros(len(d), bool)
    elif rule.rule == "majority":
        flip, unsure = w > a, (w == a) & (d > 0)
    else:  # unanimous
        flip, unsure = (w == d) & (d > 0), (w > 0) & (a > 0)
    tie = "tie" if rule.rule == "majority" else "split"
    status = np.select([d + u == 0, d == 0, d < rule.min_reviewers, flip, unsure],
                       ["unreviewed", "all_unsure", "too_few", "flip", tie], default="keep")
    return pd.Series(status, index=counts.index, dtype=object)


def _unique_labels(labels: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (*PATCH_KEY, "label") if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lack the columns {missing}; need patient_id, x, y, label")
    keyed = _keyed(labels)
    dup = keyed.duplicated(PATCH_KEY, keep=False)
    if dup.any():
        first = keyed.loc[dup, PATCH_KEY].iloc[0].tolist()
        raise ValueError(f"labels hold {int(dup.sum())} rows sharing a patch identity (e.g. {first}); "
                         "each (patient_id, x, y) must appear once")
    bad = ~keyed["label"].isin([0, 1])
    if bad.any():
        raise ValueError(f"labels must be 0 or 1; found {sorted(keyed.loc[bad, 'label'].unique().tolist())[:5]}")
    return keyed


@dataclass(frozen=True)
class ReviewedLabels:
    """Dataset labels after the reviewers' consensus, one row per row of the labels table given."""

    table: pd.DataFrame  # index = the labels table's index; see reviewed_labels
    counts: dict
    rule: ConsensusRule
    not_in_labels: pd.DataFrame = field(repr=False)  # verdict counts of reviewed patches the labels lack

    @property
    def training_mask(self) -> np.ndarray:
        """True for the rows to train on (not left out as unsure)."""
        return ~self.table["unsure"].to_numpy(bool)


def reviewed_labels(labels: pd.DataFrame, reviews: pd.DataFrame,
                    rule: ConsensusRule | None = None) -> ReviewedLabels:
    """The dataset label of each patch, flipped where the reviewers' consensus says it is wrong.

    ``labels``: patient_id, x, y, label (0/1), any index (e.g. the manifest's rows), each patch
    once. Matching is by (patient_id, x, y), never by row. ``table`` keeps ``labels``' index and
    order and has patient_id, x, y, label, reviewed_label, flipped, unsure (leave out of training),
    consensus (a key of STATUSES), n_reviewers, agree, label_wrong, unsure_votes. ``counts``:
    n_patches, n_reviewed, n_flipped, n_flipped_to_idc, n_flipped_to_non_idc, n_unsure, n_training,
    n_reviewed_not_in_labels (reviewed patches the labels table lacks, listed in ``not_in_labels``).
    """
    rule = ConsensusRule() if rule is None else rule
    keyed = _unique_labels(labels)
    votes = verdict_counts(reviews)
    merged = keyed[PATCH_KEY + ["label"]].reset_index(names="_index").merge(
        votes, on=PATCH_KEY, how="left", validate="one_to_one", sort=False)
    for c in (*VERDICTS, "n_reviewers"):
        merged[c] = merged[c].fillna(0).astype("int64")
    status = consensus(merged, rule).to_numpy()
    label = merged["label"].to_numpy(np.int64)
    flipped = status == "flip"
    unsure = np.isin(status, UNSURE_STATUSES) | ((status == "too_few") & (merged["label_wrong"].to_numpy() > 0))
    table = pd.DataFrame({
        "patient_id": merged["patient_id"].to_numpy(), "x": merged["x"].to_numpy(), "y": merged["y"].to_numpy(),
        "label": label.astype(np.int8), "reviewed_label": np.where(flipped, 1 - label, label).astype(np.int8),
        "flipped": flipped, "unsure": unsure, "consensus": status,
        "n_reviewers": merged["n_reviewers"].to_numpy(), "agree": merged["agree"].to_numpy(),
        "label_wrong": merged["label_wrong"].to_numpy(), "unsure_votes": merged["unsure"].to_numpy(),
    }, index=pd.Index(merged["_index"].to_numpy(), name=labels.index.name))
    known = votes.merge(keyed[PATCH_KEY], on=PATCH_KEY, how="left", indicator=True)
    not_in_labels = known[known["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)
    counts = {
        "n_patches": int(len(table)), "n_reviewed": int((table["n_reviewers"] > 0).sum()),
        "n_flipped": int(flipped.sum()), "n_flipped_to_idc": int((flipped & (label == 0)).sum()),
        "n_flipped_to_non_idc": int((flipped & (label == 1)).sum()), "n_unsure": int(unsure.sum()),
        "n_training": int((~unsure).sum()), "n_reviewed_not_in_labels": int(len(not_in_labels)),
    }
    return ReviewedLabels(table=table, counts=counts, rule=rule, not_in_labels=not_in_labels)


# --------------------------------------------------------------------------- CSV import
def unneutralise(value: str) -> str:
    """Undo pipeline.exports.neutralise: drop the single quote an OWASP-style CSV export put before a
    text cell starting with = + - @ tab or CR. (A cell that really began with such a quote, e.g. a
    note "'=x", comes back without it: the export cannot tell the two apart.)"""
    if len(value) >= 2 and value[0] == "'" and value[1] in FORMULA_STARTS:
        return value[1:]
    return value


def _open_text(path_or_buffer):
    """A text stream for the csv module (UTF-8, a BOM from a spreadsheet dropped), and whether we own it."""
    if isinstance(path_or_buffer, (str, os.PathLike)):
        return open(Path(path_or_buffer), encoding="utf-8-sig", newline=""), True
    if isinstance(path_or_buffer, (bytes, bytearray)):
        return io.StringIO(bytes(path_or_buffer).decode("utf-8-sig"), newline=""), True
    if hasattr(path_or_buffer, "read"):
        sample = path_or_buffer.read(0)
        if isinstance(sample, bytes):  # an upload (st.file_uploader), an open binary file
            return io.TextIOWrapper(path_or_buffer, encoding="utf-8-sig", newline=""), False
        return path_or_buffer, False
    raise TypeError(f"read_reviews_csv needs a path, bytes or a file object, got {type(path_or_buffer).__name__}")


def _whole_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(int64 values with 0 where bad, mask of good): ASCII digits only, surrounding spaces allowed."""
    s = values.str.strip()
    good = s.str.fullmatch(r"[0-9]{1,18}").fillna(False).astype(bool)
    return pd.to_numeric(s.where(good, "0")).astype("int64"), good


def read_reviews_csv(path_or_buffer) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Reviews from a CSV with the export's columns: (the valid rows, [(row number, reason), ...]).

    Row numbers are as a spreadsheet shows them: the header is row 1, the first review row 2 (a note
    holding a line break stays in one row). Required columns: patient_id, x, y, verdict, reviewer,
    created_at; optional: id, row, recorded_row, note, run_name, model, threshold, prob_shown, source. A missing required column, an unreadable file
    (not UTF-8, broken quoting) or an empty one raises ValueError: nothing can be imported. Unknown
    columns are ignored and reported as row 1. Every other row is checked and either kept or
    reported with every reason it fails: patient_id ASCII digits; x, y whole numbers >= 1; verdict
    one of VERDICTS; reviewer not empty; created_at an ISO 8601 time; note at most MAX_NOTE_CHARS;
    id, row and recorded_row empty or whole numbers; threshold and prob_shown empty or numbers in
    [0, 1]; the same number of cells as the header; not an exact copy
    of an earlier row. Entirely empty lines are skipped (there is nothing in them to lose).

    Text cells first lose the quote the export's formula neutralisation added (:func:`unneutralise`);
    reviewer, patient_id, verdict and times are also stripped of surrounding spaces.
    The result has id, row (nullable Int64, as in the file: the importer resolves patches by
    identity, see pipeline.reviews.resolve), patient_id, x, y, verdict, note, reviewer, created_at,
    run_name, model (text, empty when absent), threshold, prob_shown (float, nan when empty),
    recorded_row (Int64) and source_row (the row number), in file order.
    """
    stream, owned = None, False
    try:
        stream, owned = _open_text(path_or_buffer)
        records = list(csv.reader(stream, strict=True))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"the file cannot be read as a UTF-8 CSV: {exc}") from None
    finally:
        if owned and stream is not None:
            stream.close()
    if not records or not any(cell.strip() for cell in records[0]):
        raise ValueError(f"the file is empty; a reviews CSV starts with the header {','.join(CSV_COLUMNS)}")
    header = [unneutralise(c).strip() for c in records[0]]
    problems: list[tuple[int, str]] = []
    missing = [c for c in REQUIRED_REVIEW_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"the CSV lacks the columns {', '.join(missing)}; its header is {', '.join(header)}; "
                         f"a reviews export has {', '.join(CSV_COLUMNS)}")
    dup_cols = sorted({c for c in header if header.count(c) > 1})
    if dup_cols:
        raise ValueError(f"the CSV header names {', '.join(dup_cols)} more than once")
    known = set(REQUIRED_REVIEW_COLUMNS) | set(CSV_OPTIONAL_COLUMNS)
    unknown = [c for c in header if c not in known]
    if unknown:
        problems.append((1, f"unknown columns ignored: {', '.join(unknown)}"))

    body, numbers, reasons = [], [], {}
    for i, rec in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in rec):
            continue
        if len(rec) != len(header):
            reasons[i] = [f"has {len(rec)} cells, the header has {len(header)}"]
            continue
        body.append(rec)
        numbers.append(i)
    frame = pd.DataFrame(body, columns=header, dtype=object).astype(str)
    frame = frame.map(unneutralise) if len(frame) else frame
    row_no = np.asarray(numbers, np.int64)
    bad: dict[int, list[str]] = {}

    def flag(mask, reason):
        for n in row_no[np.asarray(mask, bool)]:
            bad.setdefault(int(n), []).append(reason)

    pid = frame["patient_id"].str.strip()
    flag(~pid.map(lambda p: is_patient_id(p) or is_slide_patient_id(p)).astype(bool),
         "patient_id must be ASCII digits (a dataset patient) or a slide's id (ASCII letters, digits, - and _)")
    coords = {}
    for c in ("x", "y"):
        coords[c], good = _whole_numbers(frame[c])
        flag(~good | (coords[c] < 1), f"{c} must be a whole number >= 1")
    verdict = frame["verdict"].str.strip()
    flag(~verdict.isin(VERDICTS), f"verdict must be one of {', '.join(VERDICTS)}")
    reviewer = frame["reviewer"].str.strip()
    flag(reviewer == "", "reviewer is empty")
    created = frame["created_at"].str.strip()
    parsed = pd.to_datetime(created, utc=True, format="ISO8601", errors="coerce") if len(frame) else created
    flag(pd.isna(parsed) | (created == ""), "created_at must be an ISO 8601 time, e.g. 2025-01-31T14:05:09.123+00:00")
    note = frame["note"] if "note" in frame.columns else pd.Series("", index=frame.index)
    flag(note.str.len() > MAX_NOTE_CHARS, f"note is longer than {MAX_NOTE_CHARS:,} characters")
    optional = {}
    for c in ("id", "row", "recorded_row"):
        if c in frame.columns:
            s = frame[c].str.strip()
            values, good = _whole_numbers(s)
            flag(~good & (s != ""), f"{c} must be empty or a whole number")
            optional[c] = pd.array(np.where(good, values, 0), dtype="Int64")
            optional[c][~good.to_numpy()] = pd.NA
        else:
            optional[c] = pd.array([pd.NA] * len(frame), dtype="Int64")

    shown = {}
    for c in ("threshold", "prob_shown"):
        s = frame[c].str.strip() if c in frame.columns else pd.Series("", index=frame.index)
        values = pd.to_numeric(s.where(s != ""), errors="coerce")
        flag(((s != "") & (values.isna() | (values < 0) | (values > 1))).to_numpy(bool),
             f"{c} must be empty or a number in [0, 1]")
        shown[c] = values.to_numpy(np.float64)
    text = {c: (frame[c].str.strip() if c in frame.columns else pd.Series("", index=frame.index)).to_numpy(dtype=object)
            for c in ("run_name", "model")}
    out = pd.DataFrame({
        "id": optional["id"], "row": optional["row"], "patient_id": pid.to_numpy(dtype=object),
        "x": coords["x"].to_numpy(), "y": coords["y"].to_numpy(), "verdict": verdict.to_numpy(dtype=object),
        "note": note.to_numpy(dtype=object), "reviewer": reviewer.to_numpy(dtype=object),
        "created_at": created.to_numpy(dtype=object), "run_name": text["run_name"], "model": text["model"],
        "threshold": shown["threshold"], "prob_shown": shown["prob_shown"], "recorded_row": optional["recorded_row"],
        "source_row": row_no,
    })
    content = ["patient_id", "x", "y", "verdict", "note", "reviewer", "created_at", "id"]
    sub = out[~out["source_row"].isin(list(bad))]
    first = sub.groupby(content, dropna=False, sort=False)["source_row"].transform("first")
    for n, original in zip(sub["source_row"][sub["source_row"] != first], first[sub["source_row"] != first]):
        bad.setdefault(int(n), []).append(f"duplicate of row {int(original)}")
    for n, rs in bad.items():
        reasons.setdefault(n, []).extend(rs)
    problems += [(n, "; ".join(rs)) for n, rs in sorted(reasons.items())]
    valid = out[~out["source_row"].isin(list(reasons))].reset_index(drop=True)
    return valid, problems


def drop_known_reviews(imported: pd.DataFrame, existing: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(the imported reviews not already in ``existing``, how many were): a review is known when
    patient_id, x, y, verdict, note, reviewer and created_at all match one in the store, so
    importing the same export twice adds nothing."""
    content = ["patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]
    if existing.empty or imported.empty:
        return imported.reset_index(drop=True), 0

    def norm(df):
        return pd.DataFrame({"patient_id": df["patient_id"].astype(str), "x": df["x"].astype("int64"),
                             "y": df["y"].astype("int64"), "verdict": df["verdict"].astype(str),
                             "note": df["note"].astype(str) if "note" in df else "",
                             "reviewer": df["reviewer"].astype(str).str.strip(),
                             "created_at": _timestamps(df["created_at"])})

    seen = norm(existing).drop_duplicates()
    flags = norm(imported).merge(seen, on=content, how="left", indicator=True)["_merge"] == "both"
    return imported[~flags.to_numpy()].reset_index(drop=True), int(flags.sum())
