"""Uncertainty of the headline metrics: patient-level bootstrap intervals and paired run comparisons.

Patches of one patient are not independent (they share a slide, a stain, a scanner, a tumour), so
every interval here comes from resampling *patients* with replacement, never patches. The draw is a
``(n_boot, n_patients)`` matrix of integer counts (how often each patient appears in each
resample), made once from a fixed seed; a resample is the original data with patient ``k``'s patches
weighted by its count, which is exactly the same as copying them that many times.

What is cheap and what is not:

* **At a threshold** (moves with the slider): per-patient confusion counts ``(n_patients, 4)`` from
  :func:`pipeline.metrics.grouped_confusion_at` (one pass over the patches), then all resamples'
  counts in one product ``weights @ counts -> (n_boot, 4)`` and every rate from
  :func:`pipeline.metrics.rates_from_counts`, vectorised over the resamples (5 ms at full scale).
* **Threshold-free** (ROC-AUC, PR-AUC): computed once per score vector and cached on the object.
  ROC-AUC is a Mann-Whitney sum over (positive, negative) patch pairs, so it decomposes over pairs
  of patients: with ``M[k, l]`` = the (tie-halved) count of pairs "positive patch of patient k scores
  above negative patch of patient l", a resample's numerator is ``c @ M @ c`` for its count vector
  ``c``. ``M`` comes from one sort of the patches and sparse per-patient counts per score block;
  all resamples then cost one ``(n_boot, P) @ (P, P)`` product, and the result is exact (integer
  arithmetic in float64). PR-AUC (average precision) does not decompose that way; it is computed
  from weighted cumulative sums over the score blocks that hold a positive patch, sorted once
  (``O(n_boot * blocks)``, memory bounded by chunking over resamples).

Intervals are percentile intervals (default 95%). A metric that is undefined in a resample (e.g.
sensitivity when the resample has no positive patch) is NaN there; the interval is taken over the
resamples where it is defined and ``undefined_share`` says how many were not.

Every result is a plain dict of floats/ints/strings, ready for ``json.dumps`` (NaN for undefined,
as in evaluation.json). An interval is ``{"estimate", "low", "high", "se", "undefined_share"}``:
``estimate`` is the value on the data as observed (not the bootstrap mean), ``se`` the standard
deviation of the defined replicates.

Paired comparison of two runs (A, B) on the same patches uses the *same* resample matrix for both,
so each resample's difference B - A is paired; a run compared with itself gives differences that
are exactly 0 with zero-width intervals. The patch-level tests (McNemar, plain DeLong) treat patches
as independent and are reported beside the patient-bootstrap intervals, which are the primary
figures; :func:`delong_test` with ``groups`` gives the clustered (Obuchowski 1997) variant.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from pipeline import metrics

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95
#: Threshold metrics with intervals (all of pipeline.metrics.METRIC_NAMES).
THRESHOLD_METRICS = metrics.METRIC_NAMES
#: The metrics a run comparison reports, each "higher is better".
COMPARED_METRICS = ("roc_auc", "f1", "sensitivity", "specificity", "balanced_accuracy")
LABELS = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "precision": "precision", "sensitivity": "sensitivity",
          "specificity": "specificity", "f1": "F1", "balanced_accuracy": "balanced accuracy", "mcc": "MCC",
          "accuracy": "accuracy"}
#: Up to this many patients ROC-AUC resamples use the exact patient-pair matrix (P x P floats);
#: beyond it, the cumulative-sum route (O(n_boot * score blocks), as PR-AUC).
PAIR_MATRIX_MAX_PATIENTS = 3000
_CHUNK_ELEMENTS = 4_000_000  # elements of a dense temporary in the pair-matrix build (32 MB)
_CACHE_ELEMENTS = 65_536      # blocks x resamples per step of the cumulative route (512 kB arrays)
METHOD = "percentile bootstrap over patients (patients resampled with replacement)"
#: Below this many patients an interval carries a warning (simulated 95% intervals held the true
#: value ~93% of the time with 40 patients, ~95% with 80; with a handful they are much too narrow).
FEW_PATIENTS = 30


# --------------------------------------------------------------------------- input checks
def _as_probs(probs, name: str, n: int) -> np.ndarray:
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric probabilities: {exc}") from None
    if p.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {p.shape}")
    if p.size != n:
        raise ValueError(f"lengths differ: {n} labels but {p.size} {name}")
    bad = np.isnan(p)
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN value(s); every patch needs a probability")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"{name} must be probabilities in [0, 1]; found values from {p.min():g} to {p.max():g}")
    return p


def _check_labels(labels) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("no patches: the arrays are empty")
    if y.dtype == bool:
        return y
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("labels must contain only 0 and 1") from None
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"labels must contain only 0 and 1; found {np.unique(yf[bad])[:5].tolist()}")
    return yf == 1.0


def check_scores(labels, *probs, names=None) -> tuple[np.ndarray, ...]:
    """Validate labels and aligned score vectors; return (bool labels, float64 probs...)."""
    names = list(names or (["probs"] if len(probs) == 1 else [f"probs_{c}" for c in "ab"[:len(probs)]]))
    y = _check_labels(labels)
    return (y, *(_as_probs(p, nm, y.size) for p, nm in zip(probs, names)))


def check_inputs(patient_ids, labels, *probs, names=None):
    """Validate aligned per-patch arrays; return (patient codes 0..P-1, patient ids sorted, bool labels, probs...).

    Raises ValueError naming the problem: lengths differ, labels not 0/1, probs NaN or outside [0, 1],
    missing patient ids, fewer than 2 patients.
    """
    pid = np.asarray(patient_ids)
    if pid.ndim != 1:
        raise ValueError(f"patient_ids must be a 1-D array, got shape {pid.shape}")
    if pid.size != np.asarray(labels).size:
        raise ValueError(f"lengths differ: {pid.size} patient_ids but {np.asarray(labels).size} labels")
    y, *ps = check_scores(labels, *probs, names=names)
    codes, uniques = pd.factorize(pd.Series(pid), sort=True)
    if (codes < 0).any():
        raise ValueError(f"patient_ids contains {int((codes < 0).sum())} missing value(s)")
    if len(uniques) < 2:
        raise ValueError(f"a patient-level bootstrap needs at least 2 patients, got {len(uniques)}")
    return (codes.astype(np.int64), np.asarray(uniques), y, *ps)


def _check_level(level: float) -> float:
    lv = float(level)
    if not 0.0 < lv < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}")
    return lv


def resample_weights(n_patients: int, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The bootstrap draw: ``(n_boot, n_patients)`` int32 counts, each row P patients drawn with replacement.

    Depends only on (n_patients, n_boot, seed), so two runs of the same cohort get the same resamples.
    """
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if n_patients < 2:
        raise ValueError(f"a patient-level bootstrap needs at least 2 patients, got {n_patients}")
    n_boot, P = int(n_boot), int(n_patients)
    draws = np.random.default_rng(seed).integers(0, P, size=(n_boot, P))   # P patients drawn with replacement
    draws += P * np.arange(n_boot)[:, None]
    w = np.bincount(draws.ravel(), minlength=n_boot * P).reshape(n_boot, P).astype(np.int32)
    w.flags.writeable = False
    return w


# --------------------------------------------------------------------------- intervals
def interval(estimate: float, replicates, level: float = DEFAULT_LEVEL) -> dict:
    """Percentile interval over the defined (non-NaN) replicates, with the share that were undefined."""
    r = np.asarray(replicates, dtype=np.float64)
    ok = ~np.isnan(r)
    n_ok = int(ok.sum())
    if n_ok:
        lo, hi = np.percentile(r[ok], [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
        se = float(np.std(r[ok], ddof=1)) if n_ok > 1 else float("nan")
    else:
        lo = hi = se = float("nan")
    return {"estimate": float(estimate), "low": float(lo), "high": float(hi), "se": se,
            "undefined_share": float(1.0 - n_ok / r.size) if r.size else float("nan")}


def excludes_zero(iv: dict) -> bool:
    """True when the interval lies entirely above or entirely below 0 (a 'detected' difference)."""
    return bool(iv["low"] > 0 or iv["high"] < 0)  # NaN compares False: undefined is not detected


def format_interval(iv: dict, digits: int = 3, signed: bool = False, level: float | None = None) -> str:
    """'0.912 (95% CI 0.887 to 0.934)', or 'n/a' when undefined; ``signed`` for differences (+0.012)."""
    if iv is None or np.isnan(iv.get("estimate", np.nan)):
        return "n/a"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    pct = "" if level is None else f"{100 * level:g}% "
    if np.isnan(iv["low"]):
        return f"{fmt.format(iv['estimate'])} ({pct}CI n/a)"
    return f"{fmt.format(iv['estimate'])} ({pct}CI {fmt.format(iv['low'])} to {fmt.format(iv['high'])})"


# --------------------------------------------------------------------------- one run
class PatientBootstrap:
    """Patient-level bootstrap of one score vector (one run, one split).

    Build once per run+split (cheap: it only draws the resample matrix), keep it (e.g. in
    ``st.cache_resource``), then call :meth:`metrics_at` at every threshold (fast) and
    :meth:`curve_metrics` for ROC-AUC/PR-AUC (computed on first call, then cached).
    ``weights`` lets several score vectors share one draw (see :meth:`with_probs`).
    """

    def __init__(self, patient_ids, labels, probs, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                 level: float = DEFAULT_LEVEL, weights: np.ndarray | None = None):
        self.codes, self.patients, self.labels, self.probs = check_inputs(patient_ids, labels, probs)
        self._setup(n_boot, seed, level, weights)

    def _setup(self, n_boot, seed, level, weights):
        self.level = _check_level(level)
        self.n_patients = len(self.patients)
        self.n_patches = int(self.labels.size)
        if weights is None:
            weights = resample_weights(self.n_patients, n_boot, seed)
        else:
            weights = np.asarray(weights)
            if weights.ndim != 2 or weights.shape[1] != self.n_patients:
                raise ValueError(f"weights must have shape (n_boot, {self.n_patients}), got {weights.shape}")
            if (weights < 0).any() or not np.issubdtype(weights.dtype, np.integer):
                raise ValueError("weights must be non-negative integer counts")
        self.seed, self.n_boot = seed, int(weights.shape[0])
        self.weights = weights
        self._wf = weights.astype(np.float64)
        y = self.labels.astype(np.float64)
        self._pos = np.bincount(self.codes, weights=y, minlength=self.n_patients)
        self._neg = np.bincount(self.codes, minlength=self.n_patients) - self._pos
        self._cache: dict = {}

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, prob: str = "prob", **kwargs) -> "PatientBootstrap":
        """From a scores table (one row per patch: ``patient_id``, ``label`` and the ``prob`` column)."""
        return cls(rows["patient_id"].to_numpy(), rows["label"].to_numpy(), rows[prob].to_numpy(), **kwargs)

    @classmethod
    def _from_checked(cls, codes, patients, labels, probs, n_boot, seed, level, weights=None) -> "PatientBootstrap":
        """From arrays :func:`check_inputs` has already validated (no second pass over the data)."""
        obj = object.__new__(cls)
        obj.codes, obj.patients, obj.labels, obj.probs = codes, patients, labels, probs
        obj._setup(n_boot, seed, level, weights)
        return obj

    def with_probs(self, probs) -> "PatientBootstrap":
        """The same patients, labels and resamples, other scores on the same patches (for paired comparisons)."""
        return PatientBootstrap._from_checked(self.codes, self.patients, self.labels,
                                              _as_probs(probs, "probs_b", self.n_patches),
                                              self.n_boot, self.seed, self.level, self.weights)

    def info(self) -> dict:
        """What the intervals rest on: method, level, resamples, seed, patients, patches, and warnings."""
        warnings = []
        if self.n_patients < FEW_PATIENTS:
            warnings.append(f"only {self.n_patients} patients: intervals from a bootstrap over so few patients "
                            "are rough and tend to be too narrow")
        return {"method": METHOD, "level": self.level, "n_boot": self.n_boot, "seed": self.seed,
                "n_patients": self.n_patients, "n_patches": self.n_patches, "warnings": warnings}

    # ---------------------------------------------------------------- at a threshold
    def counts_at(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(per-patient counts ``(P, 4)``, resample counts ``(n_boot, 4)``), columns tn, fp, fn, tp."""
        c = metrics.grouped_confusion_at(self.codes, self.labels, self.probs, threshold, self.n_patients)
        per_patient = np.stack([c["tn"], c["fp"], c["fn"], c["tp"]], axis=1).astype(np.float64)
        # weights @ per_patient, as four matrix-vector products: a (n_boot, P) @ (P, 4) matrix product
        # goes to multi-threaded BLAS, whose thread wake-ups cost ~8 ms on a busy 2-core machine.
        return per_patient, np.stack([self._wf @ per_patient[:, j] for j in range(4)], axis=1)

    def replicates_at(self, threshold: float) -> tuple[dict, dict]:
        """(point metrics as pipeline.metrics.metrics_at gives them, {metric: (n_boot,) replicates})."""
        per_patient, boot = self.counts_at(threshold)
        total = per_patient.sum(axis=0)
        point = {**metrics.rates_from_counts(*total),
                 **dict(zip(("tn", "fp", "fn", "tp"), (int(v) for v in total))),
                 "threshold": metrics.check_threshold(threshold)}
        reps = metrics.rates_from_counts(boot[:, 0], boot[:, 1], boot[:, 2], boot[:, 3])
        return point, reps

    def metrics_at(self, threshold: float) -> dict:
        """{metric: interval} for every threshold metric at ``threshold`` (the slider's hot path)."""
        point, reps = self.replicates_at(threshold)
        return {name: interval(point[name], reps[name], self.level) for name in THRESHOLD_METRICS}

    # ---------------------------------------------------------------- threshold-free
    def roc_auc_replicates(self) -> np.ndarray:
        """ROC-AUC of every resample, ``(n_boot,)``, NaN where a resample lacks a class (cached)."""
        if "roc" not in self._cache:
            if self.n_patients <= PAIR_MATRIX_MAX_PATIENTS:
                self._cache["roc"] = self._roc_auc_pair_matrix()
            else:
                self._cache["roc"], self._cache["pr"] = self._curves_cumulative()
        return self._cache["roc"]

    def pr_auc_replicates(self) -> np.ndarray:
        """PR-AUC (average precision) of every resample, ``(n_boot,)`` (cached)."""
        if "pr" not in self._cache:
            _, self._cache["pr"] = self._curves_cumulative(roc=False)
        return self._cache["pr"]

    def curve_metrics(self, pr_auc: bool = True) -> dict:
        """{'roc_auc': interval, 'pr_auc': interval} (threshold-free; cached after the first call)."""
        est_roc = self._cache.get("roc_est")
        if est_roc is None:
            est_roc = self._cache["roc_est"] = metrics.roc_auc(self.labels, self.probs)
        out = {"roc_auc": interval(est_roc, self.roc_auc_replicates(), self.level)}
        if pr_auc:
            est_pr = self._cache.get("pr_est")
            if est_pr is None:
                est_pr = self._cache["pr_est"] = metrics.average_precision(self.labels, self.probs)
            out["pr_auc"] = interval(est_pr, self.pr_auc_replicates(), self.level)
        return out

    def summary(self, thresholds: dict[str, float], pr_auc: bool = True) -> dict:
        """Everything evaluation.json needs for one split: info, curve-metric and per-preset intervals."""
        return {**self.info(), **self.curve_metrics(pr_auc),
                "at": {name: {"threshold": float(t), **self.metrics_at(t)} for name, t in thresholds.items()}}

    def _blocks(self):
        """The patches sorted once by score, grouped for the threshold-free resamples (cached).

        Sorted highest score first, tied scores form a block; the T blocks holding a positive patch
        are numbered t = 0..T-1. Returns (pos, upto, tie, T), three sparse (T, P) count matrices:
        ``pos[t, k]`` positives of patient k in block t, ``tie[t, k]`` its negatives in block t, and
        ``upto[t, k]`` all its patches after block t-1 up to and including block t (so cumulative
        sums of ``upto`` count everything at or above block t). A resample's weighted counts are
        these matrices times its patient-count vector.
        """
        if "blocks" not in self._cache:
            from scipy import sparse

            order = np.argsort(-self.probs, kind="stable")
            ps, ys, cs = self.probs[order], self.labels[order], self.codes[order]
            block = np.r_[0, np.cumsum(ps[1:] != ps[:-1])]
            has_pos = np.bincount(block, weights=ys.astype(np.float64)) > 0
            T = int(has_pos.sum())
            t = (np.cumsum(has_pos) - 1)[block]          # the last positive block at or above each patch
            in_pos_block = has_pos[block]
            t_upto = np.where(in_pos_block, t, t + 1)     # negatives between blocks count towards the next

            def counts(sel, rows):
                m = sparse.csr_matrix((np.ones(int(sel.sum())), (rows[sel], cs[sel])), shape=(T, self.n_patients))
                m.sum_duplicates()
                return m

            self._cache["blocks"] = (counts(ys, t), counts(t_upto < T, t_upto),
                                     counts(in_pos_block & ~ys, t), T)
        return self._cache["blocks"]

    def pair_matrix(self) -> np.ndarray:
        """``M2[k, l]`` = sum over positive patches of patient k and negative patches of patient l of
        2*[p_pos > p_neg] + [p_pos == p_neg] (twice the Mann-Whitney count; integers; cached).

        A resample with patient counts c has ROC-AUC ``c @ M2 @ c / (2 * W_pos * W_neg)``.
        """
        if "pairs" not in self._cache:
            pos, upto, tie, T = self._blocks()
            P = self.n_patients
            m2 = np.zeros((P, P))
            if T:
                pos_by_patient = pos.T.tocsr()                   # (P, T)
                neg_upto = (upto - pos).T.tocsr()                 # (P, T): negatives at or above block t, per block
                tie_by_patient = tie.T.tocsr()
                step = max(1, _CHUNK_ELEMENTS // (4 * T))
                for l0 in range(0, P, step):
                    l1 = min(P, l0 + step)
                    tie_l = tie_by_patient[l0:l1].toarray()                      # (L, T)
                    below = self._neg[l0:l1, None] - np.cumsum(neg_upto[l0:l1].toarray(), axis=1)
                    m2[:, l0:l1] = pos_by_patient @ np.ascontiguousarray((2.0 * below + tie_l).T)
            self._cache["pairs"] = m2
        return self._cache["pairs"]

    def _roc_auc_pair_matrix(self) -> np.ndarray:
        m2 = self.pair_matrix()
        num = np.einsum("bk,bk->b", self._wf @ m2, self._wf)  # c @ M2 @ c per resample, exact integers
        w_pos, w_neg = self._wf @ self._pos, self._wf @ self._neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((w_pos > 0) & (w_neg > 0), num / (2.0 * w_pos * w_neg), np.nan)

    def _curves_cumulative(self, roc: bool = True):
        """(ROC-AUC or None, PR-AUC) per resample from weighted cumulative sums over the sorted blocks.

        Per step of resamples: sparse products give each positive block's weighted positives and the
        weight of everything since the previous one; their cumulative sums are the TP count and the
        called-positive count at every threshold that matters, hence average precision as
        scikit-learn's (sum over blocks of recall increment x precision) and the Mann-Whitney sum.
        Steps are sized so the (blocks x resamples) arrays stay in cache (one resample at a time at
        full scale, hundreds at once on a small split).
        """
        pos, upto, tie, T = self._blocks()
        roc_out = np.full(self.n_boot, np.nan) if roc else None
        pr_out = np.full(self.n_boot, np.nan)
        if T == 0:
            return roc_out, pr_out
        w_negs = self._wf @ self._neg
        chunk = max(1, _CACHE_ELEMENTS // T)   # resamples per step: a working set that stays in cache
        for s in range(0, self.n_boot, chunk):
            c = np.ascontiguousarray(self._wf[s:s + chunk].T)       # (P, b)
            p_t = pos @ c                                            # (T, b) weighted positives per block
            cum_pos = np.cumsum(p_t, axis=0)
            cum_all = np.cumsum(upto @ c, axis=0)                    # weight at or above each block
            np.maximum(cum_all, 1.0, out=cum_all)  # 0 only where cum_pos is 0 too, and the term is then 0
            w_pos = cum_pos[-1]
            with np.errstate(invalid="ignore", divide="ignore"):
                pr_out[s:s + chunk] = np.where(w_pos > 0, np.einsum("tb,tb->b", p_t, cum_pos / cum_all) / w_pos,
                                               np.nan)
                if roc:
                    w_neg = w_negs[s:s + chunk]
                    # twice the negatives strictly below block t, plus the negatives tied with it
                    num = np.einsum("tb,tb->b", p_t, 2.0 * (w_neg - (cum_all - cum_pos)) + tie @ c)
                    roc_out[s:s + chunk] = np.where((w_pos > 0) & (w_neg > 0), num / (2.0 * w_pos * w_neg), np.nan)
        return roc_out, pr_out
        w_negs = self._wf @ self._neg
        for b, c in enumerate(self._wf):
            p_t = pos @ c
            cum_pos = np.cumsum(p_t)
            w_pos = cum_pos[-1]
            if w_pos == 0:
                continue
            cum_all = np.cumsum(upto @ c)
            np.maximum(cum_all, 1.0, out=cum_all)   # 0 only where cum_pos is 0 too: the term is then 0
            pr_out[b] = p_t @ (cum_pos / cum_all) / w_pos
            if roc and w_negs[b] > 0:
                # negatives strictly below block t = W_neg - (negatives at or above it) ... plus half the ties
                neg_at_or_above = cum_all - cum_pos
                num = p_t @ (2.0 * (w_negs[b] - neg_at_or_above) + tie @ c)
                roc_out[b] = num / (2.0 * w_pos * w_negs[b])
        return roc_out, pr_out


def bootstrap_summary(patient_ids, labels, probs, thresholds: dict[str, float], *, n_boot: int = DEFAULT_N_BOOT,
                      seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL, pr_auc: bool = True) -> dict:
    """:meth:`PatientBootstrap.summary` for evaluation.json, or ``{'unavailable': reason, ...}`` instead of
    raising when a split cannot have intervals (no patches, fewer than 2 patients)."""
    try:
        boot = PatientBootstrap(patient_ids, labels, probs, n_boot=n_boot, seed=seed, level=level)
    except ValueError as exc:
        n_patients = int(pd.Series(np.asarray(patient_ids)).nunique())
        if len(np.asarray(labels)) and n_patients >= 2:
            raise                                   # bad data, not a small split: say so
        return {"method": METHOD, "level": level, "n_boot": n_boot, "seed": seed, "n_patients": n_patients,
                "n_patches": int(len(np.asarray(labels))), "unavailable": str(exc)}
    return boot.summary(thresholds, pr_auc)


# --------------------------------------------------------------------------- patch-level tests
def mcnemar(labels, probs_a, probs_b, threshold_a: float, threshold_b: float) -> dict:
    """McNemar's test on the patches where exactly one run is correct (A at ``threshold_a``, B at ``threshold_b``).

    Exact two-sided binomial p-value and the continuity-corrected chi-square one. Patch-level: it
    treats patches as independent, which patches of one patient are not, so its p-value is too small
    when errors cluster by patient; the patient-bootstrap interval of the accuracy difference is the
    primary figure. No discordant patch (e.g. a run against itself) gives p = 1.
    """
    y, pa, pb = check_scores(labels, probs_a, probs_b)
    ok_a = (pa >= metrics.check_threshold(threshold_a)) == y
    ok_b = (pb >= metrics.check_threshold(threshold_b)) == y
    only_a = int(np.count_nonzero(ok_a & ~ok_b))
    only_b = int(np.count_nonzero(~ok_a & ok_b))
    n = only_a + only_b
    if n == 0:
        p_exact, stat, p_cc = 1.0, 0.0, 1.0
    else:
        p_exact = float(min(1.0, 2.0 * stats.binom.cdf(min(only_a, only_b), n, 0.5)))
        stat = float(max(abs(only_a - only_b) - 1, 0) ** 2 / n)
        p_cc = float(stats.chi2.sf(stat, 1))
    return {"only_a_correct": only_a, "only_b_correct": only_b, "n_discordant": n, "p_exact": p_exact,
            "chi2_corrected": stat, "p_corrected": p_cc, "level": "patch (ignores clustering by patient)"}


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based midranks along the last axis of a 2-D array (ties share the mean of their ranks)."""
    out = np.empty(x.shape, dtype=np.float64)
    for i, row in enumerate(x):
        order = np.argsort(row, kind="stable")
        s = row[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])          # first index of each run of ties
        ends = np.r_[starts[1:], s.size]                                 # one past its last
        run = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
        out[i, order] = ((starts + ends + 1) / 2.0)[run]
    return out


def delong_covariance(labels, probs, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """(AUCs ``(k,)``, their covariance ``(k, k)``) for ``k`` score vectors on the same patches.

    Fast DeLong (Sun & Xu 2014): midranks in O(n log n) instead of the O(n_pos * n_neg) kernel.
    Without ``groups`` patches are taken as independent (plain DeLong, DeLong et al. 1988). With
    ``groups`` (e.g. patient ids) the structural components are summed per group and the clustered
    variance of Obuchowski (1997) is used, which accounts for patches of a patient being correlated.
    """
    rows = [probs] if np.ndim(probs) == 1 else list(probs)
    y, *rows = check_scores(labels, *rows, names=[f"probs[{i}]" for i in range(len(rows))])
    X = np.vstack(rows)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        k = X.shape[0]
        return np.full(k, np.nan), np.full((k, k), np.nan)
    pos, neg = X[:, y], X[:, ~y]
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    tx, ty = _midranks(pos), _midranks(neg)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n          # per positive: share of negatives it beats (ties half)
    v01 = 1.0 - (tz[:, m:] - ty) / m    # per negative: share of positives that beat it
    if groups is None:
        s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((X.shape[0],) * 2)
        s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((X.shape[0],) * 2)
        return aucs, s10 / m + s01 / n
    if len(groups) != y.size:
        raise ValueError(f"lengths differ: {y.size} labels but {len(groups)} groups")
    g, _ = pd.factorize(pd.Series(np.asarray(groups)))
    if (g < 0).any():
        raise ValueError("groups contains missing values")
    G = int(g.max()) + 1
    gp, gn = g[y], g[~y]
    m_g = np.bincount(gp, minlength=G).astype(np.float64)
    n_g = np.bincount(gn, minlength=G).astype(np.float64)
    d10 = np.stack([np.bincount(gp, weights=r, minlength=G) for r in v10]) - m_g * aucs[:, None]
    d01 = np.stack([np.bincount(gn, weights=r, minlength=G) for r in v01]) - n_g * aucs[:, None]
    i10, i01 = int((m_g > 0).sum()), int((n_g > 0).sum())
    s10 = (i10 / ((i10 - 1) * m)) * d10 @ d10.T if i10 > 1 else np.zeros((X.shape[0],) * 2)
    s01 = (i01 / ((i01 - 1) * n)) * d01 @ d01.T if i01 > 1 else np.zeros((X.shape[0],) * 2)
    s11 = (G / (G - 1)) * d10 @ d01.T if G > 1 else np.zeros((X.shape[0],) * 2)
    return aucs, s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def delong_test(labels, probs_a, probs_b, groups=None) -> dict:
    """DeLong's test of ROC-AUC(B) - ROC-AUC(A) for paired scores: difference, its SE, z, two-sided p.

    ``groups`` (patient ids) switches to the clustered variance (Obuchowski 1997). When the two AUCs
    are equal (e.g. a run against itself) z = 0 and p = 1 by definition, the 0/0 notwithstanding;
    p is NaN when the variance is 0 but the AUCs differ, or when a class is missing.
    """
    aucs, cov = delong_covariance(labels, np.vstack([probs_a, probs_b]), groups)
    diff = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if np.isnan(diff):
        z = p = se = float("nan")
    elif diff == 0.0:
        z, p, se = 0.0, 1.0, math.sqrt(max(var, 0.0))
    elif var > 0:
        se = math.sqrt(var)
        z = diff / se
        p = float(2.0 * stats.norm.sf(abs(z)))
    else:
        z, p, se = float("nan"), float("nan"), 0.0
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": diff, "se": se, "z": float(z),
            "p_value": float(p), "clustered": groups is not None}


# --------------------------------------------------------------------------- two runs
def align_runs(table_a: pd.DataFrame, table_b: pd.DataFrame, on=("patient_id", "x", "y"),
               prob: str = "prob", label: str = "label") -> dict:
    """The patches both runs scored, row-aligned: {'patient_ids', 'labels', 'probs_a', 'probs_b', counts}.

    Patches are matched on ``on`` (a patch's identity in the manifest). Raises ValueError when a key
    repeats within a run, no patch is shared, or the runs disagree on a shared patch's label.
    """
    on = list(on)
    for name, t in (("A", table_a), ("B", table_b)):
        missing = [c for c in (*on, prob, label) if c not in t.columns]
        if missing:
            raise ValueError(f"run {name}'s table lacks column(s) {missing}")
        if t.duplicated(on).any():
            raise ValueError(f"run {name} has {int(t.duplicated(on).sum())} repeated patch key(s) on {on}")
    a = table_a[[*on, label, prob]]
    b = table_b[[*on, label, prob]]
    both = a.merge(b, on=on, how="inner", suffixes=("_a", "_b"), sort=True)
    if both.empty:
        raise ValueError(f"the two runs share no patch (matched on {on})")
    differ = both[f"{label}_a"].to_numpy() != both[f"{label}_b"].to_numpy()
    if differ.any():
        raise ValueError(f"the two runs disagree on the label of {int(differ.sum())} shared patch(es): "
                         "not the same cohort")
    return {"patient_ids": both[on[0]].to_numpy(), "labels": both[f"{label}_a"].to_numpy(),
            "probs_a": both[f"{prob}_a"].to_numpy(), "probs_b": both[f"{prob}_b"].to_numpy(),
            "n_patches_a": int(len(a)), "n_patches_b": int(len(b)), "n_shared": int(len(both))}


class PairedBootstrap:
    """Two runs' scores on the same patches (same patient ids and labels), one shared resample matrix.

    ``.a`` and ``.b`` are :class:`PatientBootstrap` objects with identical resamples, so every
    difference B - A is paired resample by resample.
    """

    def __init__(self, patient_ids, labels, probs_a, probs_b, *, n_boot: int = DEFAULT_N_BOOT,
                 seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL, names=("A", "B")):
        codes, patients, y, pa, pb = check_inputs(patient_ids, labels, probs_a, probs_b)
        self.a = PatientBootstrap._from_checked(codes, patients, y, pa, n_boot, seed, level)
        self.b = PatientBootstrap._from_checked(codes, patients, y, pb, n_boot, seed, level, self.a.weights)
        self.names = tuple(names)
        self.level = self.a.level
        self._cache: dict = {}

    def info(self) -> dict:
        return {**self.a.info(), "names": {"a": self.names[0], "b": self.names[1]}}

    def curve_metrics(self, pr_auc: bool = True) -> dict:
        """ROC-AUC (and PR-AUC) of A and B with intervals, the paired difference B - A, and DeLong (cached)."""
        key = ("curves", pr_auc)
        if key not in self._cache:
            ca, cb = self.a.curve_metrics(pr_auc), self.b.curve_metrics(pr_auc)
            out = {"roc_auc": {"a": ca["roc_auc"], "b": cb["roc_auc"],
                               "difference": interval(cb["roc_auc"]["estimate"] - ca["roc_auc"]["estimate"],
                                                      self.b.roc_auc_replicates() - self.a.roc_auc_replicates(),
                                                      self.level),
                               "delong": delong_test(self.a.labels, self.a.probs, self.b.probs),
                               "delong_clustered": delong_test(self.a.labels, self.a.probs, self.b.probs,
                                                               groups=self.a.codes)}}
            if pr_auc:
                out["pr_auc"] = {"a": ca["pr_auc"], "b": cb["pr_auc"],
                                 "difference": interval(cb["pr_auc"]["estimate"] - ca["pr_auc"]["estimate"],
                                                        self.b.pr_auc_replicates() - self.a.pr_auc_replicates(),
                                                        self.level)}
            self._cache[key] = out
        return self._cache[key]

    def at(self, threshold_a: float, threshold_b: float | None = None) -> dict:
        """Both runs' threshold metrics (A at ``threshold_a``, B at ``threshold_b``, default the same) with
        intervals, the paired differences B - A, and McNemar's test; fast enough for a slider."""
        threshold_b = threshold_a if threshold_b is None else threshold_b
        pa, ra = self.a.replicates_at(threshold_a)
        pb, rb = self.b.replicates_at(threshold_b)
        lv = self.level
        return {"threshold_a": float(threshold_a), "threshold_b": float(threshold_b),
                "a": {k: interval(pa[k], ra[k], lv) for k in THRESHOLD_METRICS},
                "b": {k: interval(pb[k], rb[k], lv) for k in THRESHOLD_METRICS},
                "difference": {k: interval(pb[k] - pa[k], rb[k] - ra[k], lv) for k in THRESHOLD_METRICS},
                "mcnemar": mcnemar(self.a.labels, self.a.probs, self.b.probs, threshold_a, threshold_b)}

    def compare(self, threshold_a: float, threshold_b: float, shared_threshold: float = 0.5,
                pr_auc: bool = True) -> dict:
        """The full comparison: curve metrics, each run at its own threshold ('own') and both at a shared one."""
        return {**self.info(), **self.curve_metrics(pr_auc), "own": self.at(threshold_a, threshold_b),
                "shared": self.at(shared_threshold, shared_threshold)}


def compare_runs(patient_ids, labels, probs_a, probs_b, threshold_a: float, threshold_b: float,
                 shared_threshold: float = 0.5, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                 level: float = DEFAULT_LEVEL, names=("A", "B"), pr_auc: bool = True) -> dict:
    """One-call paired comparison of runs A and B on the same patches (see :meth:`PairedBootstrap.compare`)."""
    return PairedBootstrap(patient_ids, labels, probs_a, probs_b, n_boot=n_boot, seed=seed, level=level,
                           names=names).compare(threshold_a, threshold_b, shared_threshold, pr_auc)


# --------------------------------------------------------------------------- the sentence
def _fmt_signed(iv: dict) -> tuple[str, str, str]:
    """Signed estimate and bounds with enough decimals that a detected interval does not print as 0."""
    for digits in (3, 4, 5):
        vals = [f"{iv[k]:+.{digits}f}" for k in ("estimate", "low", "high")]
        if not excludes_zero(iv) or all(float(v) != 0.0 for v in vals[1:]):
            break
    return tuple(vals)


def _item(label: str, iv: dict, level: float) -> str:
    est, lo, hi = _fmt_signed(iv)
    extra = f"; undefined in {100 * iv['undefined_share']:.0f}% of resamples" if iv["undefined_share"] > 0 else ""
    return f"{label} ({est}, {100 * level:g}% CI {lo} to {hi}{extra})"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _p_text(p: float) -> str:
    return "p = n/a" if np.isnan(p) else ("p < 0.0001" if p < 1e-4 else f"p = {p:.2g}")


def compare_sentence(result: dict, at: str = "own") -> str:
    """Plain words for a comparison result: 'B is better than A on ... ; no detectable difference on ...'.

    ``at``: 'own' (each run at its own threshold), 'shared' or 'both'. A difference is 'better' only
    when its patient-bootstrap interval excludes 0. ROC-AUC (threshold-free) is in the first clause
    set; the closing sentences say how the intervals were made, DeLong's (clustered) p-value and
    McNemar's, with the warning that McNemar's treats patches as independent.
    """
    if at not in ("own", "shared", "both"):
        raise ValueError(f"at must be 'own', 'shared' or 'both', got {at!r}")
    name_a, name_b = result["names"]["a"], result["names"]["b"]
    level = result["level"]
    wheres = ("own", "shared") if at == "both" else (at,)
    out, mcnemars = [], []
    for i, where in enumerate(wheres):
        block = result[where]
        diffs = {k: block["difference"][k] for k in COMPARED_METRICS if k != "roc_auc"}
        if i == 0:
            diffs = {"roc_auc": result["roc_auc"]["difference"], **diffs}
        better_b, better_a, none, undefined = [], [], [], []
        for k, iv in diffs.items():
            if np.isnan(iv["low"]):
                undefined.append(LABELS[k])
            elif iv["low"] > 0:
                better_b.append(_item(LABELS[k], iv, level))
            elif iv["high"] < 0:
                better_a.append(_item(LABELS[k], iv, level))
            else:
                none.append(_item(LABELS[k], iv, level))
        parts = []
        if better_b:
            parts.append(f"{name_b} is better than {name_a} on {_join(better_b)}")
        if none:
            parts.append(f"no detectable difference on {_join(none)}" if parts
                         else f"no detectable difference between {name_a} and {name_b} on {_join(none)}")
        if better_a:
            parts.append(f"{name_a} is better than {name_b} on {_join(better_a)}")
        if undefined:
            parts.append(f"{_join(undefined)} could not be compared (undefined in every resample)")
        if where == "own":
            lead = (f"At each run's own threshold ({name_a} {block['threshold_a']:.3f}, "
                    f"{name_b} {block['threshold_b']:.3f}), ")
            mc_where = "at the own thresholds"
        else:
            lead = f"At the shared threshold {block['threshold_a']:.3f}, "
            mc_where = "at the shared threshold"
        out.append(lead + "; ".join(parts) + ".")
        mc = block["mcnemar"]
        mcnemars.append(f"{_p_text(mc['p_exact'])} ({mc['n_discordant']:,} patches) {mc_where}")
    out.append(f"Differences are {name_b} - {name_a}, with {100 * level:g}% intervals from {result['n_boot']:,} "
               f"bootstrap resamples of the {result['n_patients']:,} patients ({result['n_patches']:,} patches).")
    dl = result["roc_auc"].get("delong_clustered")
    if dl is not None:
        out.append(f"DeLong's test of the ROC-AUC difference (clustered by patient): {_p_text(dl['p_value'])}.")
    out.append(f"McNemar's exact test on the patches where exactly one run is correct: {_join(mcnemars)}; "
               "it treats patches as independent, which patches of one patient are not, so the intervals "
               "above are the primary figures.")
    return " ".join(out)
