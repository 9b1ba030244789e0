"""Two runs of the same cohort compared on the patches both scored: the ``compare-runs`` command.

``python -m pipeline compare-runs RUN_A RUN_B [--split test]`` loads both run folders, matches their
patches on (patient, x, y), keeps those that lie in the chosen split *of both runs* (each run has its
own split.json; patches whose patient is in the split of one run only are dropped, and counted), and
reports, paired (pipeline/uncertainty.py):

- each run's metrics at its own threshold (its evaluation preset, F1-optimal on its own validation
  patients by default) and both at one shared threshold (0.5 by default: both runs' scores are
  calibrated probabilities, so 0.5 means "more likely IDC than not" for either, and it depends on
  neither run's validation split; ``--shared`` sets another);
- the paired differences B - A of ROC-AUC, PR-AUC and the threshold metrics, with 95% intervals from
  one bootstrap over *patients* (patches of a patient are not independent), DeLong's test of the
  ROC-AUC difference (plain and clustered by patient), McNemar's test on the patches exactly one run
  gets right (patch-level: it ignores clustering), and the plain sentence of
  :func:`pipeline.uncertainty.compare_sentence`.

The pure helpers :func:`agreement_outcomes` and :func:`most_disagreeing` serve the app's Compare runs
page (disagreement overlay, gallery); :func:`pair_tables`, :func:`paired_split` and
:func:`compare_paired` are shared by the command and the page, so both show the same figures.
"""
from __future__ import annotations

import argparse
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import evaluate, metrics, store, uncertainty
from pipeline.errors import UsageError, non_negative_int, positive_int

SPLIT_CHOICES = (*store.SPLITS, "all")
DEFAULT_PRESET = "f1_optimal"
#: The shared threshold unless one is given: the runs' scores are calibrated, so 0.5 is a common
#: operating point chosen on neither run's validation patients.
DEFAULT_SHARED = 0.5
KEY = ("patient_id", "x", "y")  # a patch's identity in the manifest
NAMES = ("A", "B")

# Agreement of the two runs' calls with the label, one code per patch (the overlay's categories).
AGREEMENT = ("A only right", "B only right", "both right", "both wrong")
A_ONLY, B_ONLY, BOTH_RIGHT, BOTH_WRONG = range(4)
_AGREEMENT_LUT = np.array([BOTH_WRONG, B_ONLY, A_ONLY, BOTH_RIGHT], np.int8)  # index 2 * A right + B right

# Rows of the metrics table: threshold-free first, then the threshold metrics.
CURVE_ROWS = ("roc_auc", "pr_auc")
THRESHOLD_ROWS = ("f1", "sensitivity", "specificity", "balanced_accuracy", "precision", "mcc")


# --------------------------------------------------------------------------- pure helpers (the app)
def agreement_outcomes(label, prob_a, prob_b, threshold_a: float, threshold_b: float) -> np.ndarray:
    """Per patch: 0 'A only right', 1 'B only right', 2 'both right', 3 'both wrong' (:data:`AGREEMENT`).

    A run calls IDC when its probability is at least its threshold; a call is right when it matches
    the label. NaN probabilities (a patch one run did not score) give -1.
    """
    y = np.asarray(label).astype(bool)
    pa, pb = np.asarray(prob_a, np.float64), np.asarray(prob_b, np.float64)
    if not y.shape == pa.shape == pb.shape:
        raise ValueError(f"lengths differ: {y.size} labels, {pa.size} probs_a, {pb.size} probs_b")
    right_a = (pa >= metrics.check_threshold(threshold_a)) == y
    right_b = (pb >= metrics.check_threshold(threshold_b)) == y
    codes = _AGREEMENT_LUT[2 * right_a + right_b]
    codes[np.isnan(pa) | np.isnan(pb)] = -1
    return codes


def agreement_names(label, prob_a, prob_b, threshold_a: float, threshold_b: float) -> np.ndarray:
    """:func:`agreement_outcomes` as text ('' where a run did not score the patch)."""
    codes = agreement_outcomes(label, prob_a, prob_b, threshold_a, threshold_b)
    return np.asarray((*AGREEMENT, ""))[codes]


def most_disagreeing(rows: pd.DataFrame, prob_a, prob_b, threshold_a: float, threshold_b: float) -> pd.DataFrame:
    """The patches whose calls differ (exactly one run right), the largest |P_A - P_B| first.

    ``rows``: table rows with ``label`` (index = patch row); ``prob_a``, ``prob_b``: the two runs'
    probabilities aligned with ``rows``. Returns one row per such patch, index kept, with
    ``prob_a``, ``prob_b``, ``gap`` (|P_A - P_B|) and ``agreement`` ('A only right' / 'B only
    right'); ties keep table order.
    """
    pa, pb = np.asarray(prob_a, np.float64), np.asarray(prob_b, np.float64)
    codes = agreement_outcomes(rows["label"].to_numpy(), pa, pb, threshold_a, threshold_b)
    keep = np.flatnonzero((codes == A_ONLY) | (codes == B_ONLY))
    gap = np.abs(pa - pb)[keep]
    order = keep[np.argsort(-gap, kind="stable")]
    return pd.DataFrame({"prob_a": pa[order], "prob_b": pb[order], "gap": np.abs(pa - pb)[order],
                         "agreement": pd.Categorical.from_codes(codes[order], AGREEMENT)},
                        index=rows.index[order])


# --------------------------------------------------------------------------- pairing two runs
def pair_tables(table_a: pd.DataFrame, table_b: pd.DataFrame, names=("run A", "run B")) -> pd.DataFrame:
    """The patches both runs scored, one row each, indexed by A's patch row, in A's order.

    Columns: patient_id, x, y, label, split_a, split_b, prob_a, prob_b, row_b (B's patch row).
    Matched with :func:`pipeline.uncertainty.align_runs` on (patient, x, y); raises UsageError,
    naming both runs and the fix, when they share no patch (different cohorts), disagree on a
    shared patch's label, or a run repeats a patch.
    """
    rows_a = table_a.assign(_row=table_a.index.to_numpy(np.int64))
    rows_b = table_b.assign(_row=table_b.index.to_numpy(np.int64))
    try:  # the row numbers ride along as the "score" column, so each shared patch keeps both rows
        aligned = uncertainty.align_runs(rows_a, rows_b, on=KEY, prob="_row")
    except ValueError as exc:
        raise UsageError(_pairing_problem(str(exc), *names)) from None
    ia, ib = aligned["probs_a"].astype(np.int64), aligned["probs_b"].astype(np.int64)
    a, b = table_a.loc[ia], table_b.loc[ib]
    pairs = pd.DataFrame({"patient_id": a["patient_id"].astype(str).to_numpy(), "x": a["x"].to_numpy(),
                          "y": a["y"].to_numpy(), "label": a["label"].to_numpy(),
                          "split_a": a["split"].astype(str).to_numpy(), "split_b": b["split"].astype(str).to_numpy(),
                          "prob_a": a["prob"].to_numpy(np.float64), "prob_b": b["prob"].to_numpy(np.float64),
                          "row_b": ib}, index=pd.Index(ia, name=table_a.index.name)).sort_index()
    pairs.attrs.update(n_patches_a=aligned["n_patches_a"], n_patches_b=aligned["n_patches_b"],
                       n_shared=aligned["n_shared"])
    return pairs


def _pairing_problem(reason: str, name_a: str, name_b: str) -> str:
    both = f"{name_a} and {name_b}"
    if "share no patch" in reason:
        return (f"{both} share no patch (matched on patient, x and y): they are runs of different cohorts. "
                "Compare two runs of the same data: runs made with the same --data folder (or scored with "
                "`pipeline score` on the same patients).")
    if "disagree on the label" in reason:
        return (f"{both} are not runs of the same cohort: {reason.split(': not')[0].replace('the two runs', 'they')}. "
                "Compare two runs ingested from the same data folder (a re-labelled dataset is a new cohort).")
    if "repeated patch key" in reason:
        return (f"cannot compare {both}: {reason.replace('run A', name_a).replace('run B', name_b)}; "
                "its manifest is damaged: move manifest.parquet aside and re-run `python -m pipeline run` "
                "to re-ingest.")
    return f"cannot compare {both}: {reason}"


@dataclass(frozen=True)
class PairedSplit:
    """The compared patches of one split, with the bootstrap over their patients (None when impossible)."""

    rows: pd.DataFrame  # pair_tables rows in the split of both runs (index = A's patch row)
    counts: dict
    boot: uncertainty.PairedBootstrap | None
    problem: str = ""  # why there are no intervals (fewer than 2 patients); '' otherwise


def split_counts(pairs: pd.DataFrame, split: str) -> tuple[pd.DataFrame, dict]:
    """(the pairs in ``split`` of both runs, the counts: shared, compared, dropped because the splits differ)."""
    if split not in SPLIT_CHOICES:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    attrs = pairs.attrs
    counts = {"split": split, "patches_a": int(attrs.get("n_patches_a", len(pairs))),
              "patches_b": int(attrs.get("n_patches_b", len(pairs))),
              "shared_patches": int(attrs.get("n_shared", len(pairs)))}
    counts["only_a_patches"] = counts["patches_a"] - counts["shared_patches"]
    counts["only_b_patches"] = counts["patches_b"] - counts["shared_patches"]
    if split == "all":
        rows, in_a, in_b = pairs, np.ones(len(pairs), bool), np.ones(len(pairs), bool)
    else:
        in_a, in_b = (pairs["split_a"] == split).to_numpy(), (pairs["split_b"] == split).to_numpy()
        rows = pairs[in_a & in_b]
    pid = pairs["patient_id"].to_numpy()
    counts.update(
        patches=int(len(rows)), patients=int(rows["patient_id"].nunique()), positive=int(rows["label"].sum()),
        dropped_split_patches={"a_only": int((in_a & ~in_b).sum()), "b_only": int((~in_a & in_b).sum())},
        dropped_split_patients={"a_only": int(pd.unique(pid[in_a & ~in_b]).size),
                                "b_only": int(pd.unique(pid[~in_a & in_b]).size)})
    return rows, counts


def paired_split(pairs: pd.DataFrame, split: str, n_boot: int = uncertainty.DEFAULT_N_BOOT,
                 seed: int = uncertainty.DEFAULT_SEED) -> PairedSplit:
    """The compared patches of ``split`` and their :class:`~pipeline.uncertainty.PairedBootstrap`.

    Build once per (run A, run B, split) and keep it (the app caches it): every threshold after the
    first costs a few milliseconds. With fewer than 2 patients there is no bootstrap; ``problem`` says so.
    """
    rows, counts = split_counts(pairs, split)
    where = "all splits" if split == "all" else f"the {split} split of both runs"
    if counts["patients"] < 2:
        problem = (f"{where} holds {counts['patients']} patient{'s' * (counts['patients'] != 1)} scored by both "
                   f"runs ({counts['patches']:,} patches): a bootstrap over patients needs at least 2.")
        return PairedSplit(rows, counts, None, problem)
    try:
        boot = uncertainty.PairedBootstrap(rows["patient_id"].to_numpy(), rows["label"].to_numpy(),
                                           rows["prob_a"].to_numpy(), rows["prob_b"].to_numpy(),
                                           n_boot=n_boot, seed=seed, names=NAMES)
    except ValueError as exc:  # NaN or out-of-range scores: a damaged scores.parquet
        raise store.ArtifactError(f"the runs' scores cannot be compared ({exc}): move the run's scores.parquet "
                                  "aside and re-run `python -m pipeline run` to re-score.") from None
    return PairedSplit(rows, counts, boot)


# --------------------------------------------------------------------------- thresholds
def own_threshold(run: store.Run, preset: str = DEFAULT_PRESET, given: float | None = None) -> dict:
    """A run's own operating point: ``given``, else its evaluation preset (0.5 when the run has none)."""
    if given is not None:
        return {"threshold": metrics.check_threshold(given), "source": "given on the command line"}
    presets = run.evaluation.get("thresholds") or {}
    if preset in presets:
        chosen = run.evaluation.get("thresholds_chosen_on", {})
        on = chosen.get("split", "?")
        n = chosen.get("n_patients", 0)
        where = (f"its {on} split ({n:,} patient{'s' * (n != 1)}, {chosen.get('n_patches', 0):,} patches)"
                 if "n_patients" in chosen else on)
        return {"threshold": float(presets[preset]), "preset": preset,
                "source": f"{evaluate.PRESET_LABELS.get(preset, preset)} preset, chosen on {where}"}
    why = "has no evaluation.json" if not presets else f"has no {preset!r} preset (it has {', '.join(presets)})"
    return {"threshold": 0.5, "preset": "default", "source": f"0.5: the run {why}"}


def preset_names(*runs: store.Run) -> list[str]:
    """The presets every one of ``runs`` has, in the evaluation's order (0.5 always)."""
    names = [p for p in evaluate.PRESET_LABELS if all(p in (r.evaluation.get("thresholds") or {}) for r in runs)]
    return names or ["default"]


# --------------------------------------------------------------------------- the comparison
def describe_run(run: store.Run) -> dict:
    train = run.meta.get("train", {})
    return {"name": run.name, "path": str(run.path), "synthetic": run.synthetic,
            "architecture": run.meta.get("arch") or train.get("arch"), "created": run.meta.get("created"),
            "context": run.has_context}


def compare_paired(paired: PairedSplit, threshold_a: dict, threshold_b: dict, shared: dict,
                   runs: dict | None = None, pr_auc: bool = True) -> dict:
    """The whole result (JSON-serialisable): counts, thresholds, intervals, tests, the sentence."""
    if paired.boot is None:
        raise UsageError(paired.problem)
    comparison = paired.boot.compare(threshold_a["threshold"], threshold_b["threshold"], shared["threshold"], pr_auc)
    warnings = list(comparison.get("warnings", []))
    counts = paired.counts
    if counts["only_a_patches"] or counts["only_b_patches"]:
        warnings.append(f"only the {counts['shared_patches']:,} patches both runs scored are compared "
                        f"({counts['only_a_patches']:,} scored by A alone, {counts['only_b_patches']:,} by B alone)")
    dropped, patches = counts["dropped_split_patients"], counts["dropped_split_patches"]
    if dropped["a_only"] or dropped["b_only"]:
        warnings.append(f"the runs' splits differ: {_n(dropped['a_only'], 'patient')} "
                        f"({_n(patches['a_only'], 'patch')}) in A's {counts['split']} split but not B's and "
                        f"{_n(dropped['b_only'], 'patient')} ({_n(patches['b_only'], 'patch')}) in B's but not A's "
                        "are left out")
    if runs and any(r.get("synthetic") for r in runs.values()):
        warnings.insert(0, "SYNTHETIC cohort: generated images, not real tissue; the figures say nothing about "
                           "IDC in real slides")
    return {"tool": "compare-runs", "runs": runs or {}, "split": counts["split"], "counts": counts,
            "synthetic": bool(runs and any(r.get("synthetic") for r in runs.values())),
            "thresholds": {"a": threshold_a, "b": threshold_b, "shared": shared},
            "comparison": comparison, "sentence": uncertainty.compare_sentence(comparison, at="both"),
            "warnings": warnings}


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else ('es' if word.endswith('ch') else 's')}"


def compare_runs(run_a: store.Run, run_b: store.Run, split: str = store.TEST, threshold_a: float | None = None,
                 threshold_b: float | None = None, shared: float | None = None, preset: str = DEFAULT_PRESET,
                 n_boot: int = uncertainty.DEFAULT_N_BOOT, seed: int = uncertainty.DEFAULT_SEED) -> dict:
    """:func:`compare_run_folders` on two loaded runs."""
    pairs = pair_tables(run_a.table, run_b.table, names=(f"run A ({run_a.name})", f"run B ({run_b.name})"))
    paired = paired_split(pairs, split, n_boot, seed)
    if paired.boot is None:
        raise UsageError(f"{paired.problem} Compare on another split: --split all (or --split val).")
    shared_t = ({"threshold": metrics.check_threshold(shared), "source": "given on the command line"}
                if shared is not None else
                {"threshold": DEFAULT_SHARED, "source": "the default: both runs' scores are calibrated probabilities"})
    return compare_paired(paired, own_threshold(run_a, preset, threshold_a), own_threshold(run_b, preset, threshold_b),
                          shared_t, runs={"a": describe_run(run_a), "b": describe_run(run_b)})


def load_named(path: Path | str, name: str) -> store.Run:
    """store.load_run, its error naming which run (A or B) is broken."""
    try:
        return store.load_run(path)
    except store.ArtifactError as exc:
        raise store.ArtifactError(f"run {name} ({path}) cannot be opened: {exc}") from None


def compare_run_folders(run_a: Path | str, run_b: Path | str, split: str = store.TEST,
                        threshold_a: float | None = None, threshold_b: float | None = None,
                        shared: float | None = None, preset: str = DEFAULT_PRESET,
                        n_boot: int = uncertainty.DEFAULT_N_BOOT, seed: int = uncertainty.DEFAULT_SEED) -> dict:
    """Compare run folders A and B on the patches both scored in ``split`` of both (see the module doc).

    ``threshold_a`` / ``threshold_b`` override each run's own threshold (its ``preset``, F1-optimal
    on its validation patients by default); ``shared`` is the common threshold (default 0.5).
    Raises store.ArtifactError (a broken run folder) or UsageError (different cohorts, labels that
    disagree, a split with fewer than 2 shared patients), naming the run and the fix.
    """
    if split not in SPLIT_CHOICES:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    return compare_runs(load_named(run_a, "A"), load_named(run_b, "B"), split, threshold_a, threshold_b, shared,
                        preset, n_boot, seed)


# --------------------------------------------------------------------------- the table
def _verdict(iv: dict) -> str:
    if math.isnan(iv["low"]):
        return "n/a"
    if iv["low"] > 0:
        return "B better"
    if iv["high"] < 0:
        return "A better"
    return "no detectable difference"


def table_rows(result: dict, where: str = "own", curves: bool = True) -> list[dict]:
    """The metrics table of ``where`` ('own' thresholds or 'shared'): metric, A, B, B - A, verdict.

    Values are formatted strings ('0.912 (0.887 to 0.934)'); ``curves`` puts ROC-AUC and PR-AUC
    (threshold-free) first. The app's table and the command's print the same rows.
    """
    c = result["comparison"]
    out = []
    blocks = [(k, c[k], " (threshold-free)") for k in CURVE_ROWS if curves and k in c]
    blocks += [(k, {"a": c[where]["a"][k], "b": c[where]["b"][k], "difference": c[where]["difference"][k]}, "")
               for k in THRESHOLD_ROWS]
    for key, block, note in blocks:
        out.append({"metric": uncertainty.LABELS[key] + note,
                    "A": uncertainty.format_interval(block["a"]), "B": uncertainty.format_interval(block["b"]),
                    "B - A": uncertainty.format_interval(block["difference"], signed=True),
                    "verdict": _verdict(block["difference"])})
    return out


def significance_lines(result: dict) -> list[str]:
    """DeLong (plain and clustered) and McNemar (own and shared thresholds), one line each."""
    c = result["comparison"]
    lines = []
    for key, what in (("delong_clustered", "clustered by patient (Obuchowski)"),
                      ("delong", "plain, patches taken as independent")):
        d = c["roc_auc"][key]
        lines.append(f"DeLong's test of ROC-AUC B - A, {what}: {d['difference']:+.4f}, SE {d['se']:.4f}, "
                     f"z {d['z']:.2f}, p {_p(d['p_value'])}")
    for where, what in (("own", "at each run's own threshold"), ("shared", "at the shared threshold")):
        m = c[where]["mcnemar"]
        lines.append(f"McNemar's exact test {what}: A only right {m['only_a_correct']:,}, B only right "
                     f"{m['only_b_correct']:,}, p {_p(m['p_exact'])} (patch-level: ignores clustering by patient)")
    return lines


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else ("< 0.0001" if p < 1e-4 else f"{p:.3g}")


def format_result(result: dict) -> str:
    """The result as the command prints it: scope, thresholds, the table at both thresholds, tests, sentence."""
    counts, runs, th = result["counts"], result["runs"], result["thresholds"]
    split = counts["split"]
    where = "all splits" if split == "all" else f"the {split} split (of both runs)"
    lines = [*(["SYNTHETIC cohort (generated by pipeline.synth, not real tissue):"] if result.get("synthetic") else []),
             f"Comparing runs on {where}: {counts['patients']:,} patients, {counts['patches']:,} patches "
             f"({counts['positive']:,} IDC) scored by both",
             *(f"  {k.upper()} = {r['name']} ({r['path']})" for k, r in runs.items()),
             *(f"  WARNING: {w}" for w in result["warnings"][1 if result.get("synthetic") else 0:]),
             f"  threshold of A {th['a']['threshold']:.3f} ({th['a']['source']})",
             f"  threshold of B {th['b']['threshold']:.3f} ({th['b']['source']})",
             f"  shared threshold {th['shared']['threshold']:.3f} ({th['shared']['source']})"]
    tables = [(f"{title}:", table_rows(result, key, curves))
              for key, title, curves in (("own", "At each run's own threshold", True),
                                         ("shared", f"At the shared threshold {th['shared']['threshold']:.3f}",
                                          False))]
    columns = ("metric", "A", "B", "B - A", "verdict")
    widths = {c: max(len(c), *(len(r[c]) for _, rows in tables for r in rows)) + 2 for c in columns}
    for title, rows in tables:
        lines += ["", title, "  " + "".join(f"{'' if c == 'metric' else c:<{widths[c]}}" for c in columns).rstrip()]
        lines += ["  " + "".join(f"{r[c]:<{widths[c]}}" for c in columns).rstrip() for r in rows]
    lines += ["", *significance_lines(result), "", *textwrap.wrap(result["sentence"], 110)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command
def _threshold(text: str) -> float:
    try:
        return metrics.check_threshold(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a threshold between 0 and 1, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="run folder A (the reference)")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="run folder B (differences are B - A)")
    parser.add_argument("--split", choices=SPLIT_CHOICES, default=store.TEST,
                        help="compare the patches in this split of both runs (default: test)")
    parser.add_argument("--preset", choices=list(evaluate.PRESET_LABELS), default=DEFAULT_PRESET,
                        help="each run's own threshold: this preset of its evaluation (default: F1-optimal, "
                             "chosen on its validation patients)")
    parser.add_argument("--threshold-a", type=_threshold, help="run A's own threshold instead of its preset")
    parser.add_argument("--threshold-b", type=_threshold, help="run B's own threshold instead of its preset")
    parser.add_argument("--shared", type=_threshold,
                        help=f"the threshold both runs are also measured at (default {DEFAULT_SHARED})")
    parser.add_argument("--n-boot", type=positive_int, default=uncertainty.DEFAULT_N_BOOT,
                        help="bootstrap resamples of the patients (default 1000)")
    parser.add_argument("--seed", type=non_negative_int, default=uncertainty.DEFAULT_SEED, help="seed of the bootstrap draw")
    parser.add_argument("--out", type=Path, help="also write the whole result to this JSON file")


def run_command(args: argparse.Namespace) -> int:
    result = compare_run_folders(args.run_a, args.run_b, args.split, args.threshold_a, args.threshold_b,
                                 args.shared, args.preset, args.n_boot, args.seed)
    print(format_result(result))
    if args.out is not None:
        store.write_json(args.out, result)
        print(f"\nwritten: {args.out}")
    return 0
