"""The evaluation report: threshold presets chosen on validation, measured on test (and every split).

Every figure says which split and how many patients and patches it was measured on, since a
number without its denominator cannot be judged, and carries its 95% interval from a bootstrap over
the split's *patients* (``intervals``; :mod:`pipeline.uncertainty`), since patches of one patient
are not independent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import metrics, store, uncertainty
from pipeline.store import TEST, TRAIN, VAL

PRESET_LABELS = {
    "default": "0.5 (default)",
    "f1_optimal": "F1-optimal (val)",
    "youden_j": "Youden's J (val)",
    "sensitivity_95": "95% sensitivity (val)",
}


def split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split, or every row for 'all'."""
    return table if split == "all" else table[table["split"] == split]


def describe(rows: pd.DataFrame) -> dict:
    return {"n_patients": int(rows["patient_id"].nunique()), "n_patches": int(len(rows)),
            "n_positive": int(rows["label"].sum())}


def per_patient_table(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per patient: patches, true and predicted IDC %, F1, sensitivity, specificity, errors,
    and each patient's share of the errors of ``rows`` (the split) at ``threshold``.

    ``error_share_pct`` is the patient's FP+FN as a percentage of all FP+FN of ``rows``;
    ``fp_share_pct`` and ``fn_share_pct`` the same for false positives and false negatives alone.
    Each sums to 100 over the patients; it is 0 for every patient when ``rows`` has no such error.
    Rows are ordered by patient id (sort by a share to see which patients the errors come from).
    """
    codes, pids = pd.factorize(rows["patient_id"], sort=True)
    c = metrics.grouped_confusion_at(codes, rows["label"].to_numpy(), rows["prob"].to_numpy(), threshold, len(pids))
    r = metrics.rates_from_counts(**c)
    n = c["tn"] + c["fp"] + c["fn"] + c["tp"]
    errors = c["fp"] + c["fn"]
    split = rows.groupby(codes)["split"].first().to_numpy() if "split" in rows else ""
    return pd.DataFrame({
        "patient_id": np.asarray(pids, dtype=str), "split": split, "patches": n,
        "true_idc_pct": 100 * (c["tp"] + c["fn"]) / n, "pred_idc_pct": 100 * (c["tp"] + c["fp"]) / n,
        "f1": r["f1"], "sensitivity": r["sensitivity"], "specificity": r["specificity"],
        "false_pos": c["fp"], "false_neg": c["fn"], "errors": errors,
        "error_share_pct": _share_pct(errors), "fp_share_pct": _share_pct(c["fp"]),
        "fn_share_pct": _share_pct(c["fn"]),
    })


def _share_pct(counts: np.ndarray) -> np.ndarray:
    """Each entry as a percentage of the total (all 0 when the total is 0: no error to share)."""
    total = counts.sum()
    return 100.0 * counts / total if total else np.zeros(len(counts))


def undefined_metrics(counts: dict, split: str) -> tuple[dict[str, str], list[str]]:
    """Which metrics a split with one class cannot have, and the sentence that says so.

    ``counts`` is describe()'s output. Returns ({metric: reason}, [warning]); both empty when the
    split has both classes. The values themselves are NaN; this says why, so no reader takes a
    NaN for a bug or, worse, a trivially perfect rate for a result.
    """
    n, pos = counts["n_patches"], counts["n_positive"]
    if n == 0 or 0 < pos < n:
        return {}, []
    if pos == 0:
        why = f"all {n:,} patches are IDC-negative"
        names = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "sensitivity": "sensitivity",
                 "balanced_accuracy": "balanced accuracy"}
        also = {"roc_auc_patch": why, "pr_auc_patch": why}
        convention = "F1, precision and MCC are 0 by convention there"
    else:
        why = f"all {n:,} patches are IDC-positive"
        names = {"roc_auc": "ROC-AUC", "specificity": "specificity", "balanced_accuracy": "balanced accuracy"}
        also = {"roc_auc_patch": why}
        convention = "MCC is 0 by convention there"
    shown = list(names.values())
    warning = (f"{', '.join(shown[:-1])} and {shown[-1]} are undefined on split {split}: {why} "
               f"(they need both classes); {convention}")
    return {k: why for k in names} | also, [warning]


def split_intervals(rows: pd.DataFrame, thresholds: dict[str, float], patch_alone: bool = False) -> dict:
    """95% patient-bootstrap intervals of one split (:func:`pipeline.uncertainty.bootstrap_summary`):
    ROC-AUC, PR-AUC and every threshold metric at each preset, with the method, resamples, seed, level
    and patient/patch counts; ``unavailable`` (the reason) instead when the split has < 2 patients.

    ``patch_alone`` adds ``roc_auc_patch``, the patch-alone score's ROC-AUC interval on the same
    resamples (the draw depends only on the number of patients, the resample count and the seed).
    """
    pids, y = rows["patient_id"].to_numpy(), rows["label"].to_numpy()
    out = uncertainty.bootstrap_summary(pids, y, rows["prob"].to_numpy(), thresholds)
    if patch_alone and "unavailable" not in out and "prob_patch" in rows:
        boot = uncertainty.PatientBootstrap(pids, y, rows["prob_patch"].to_numpy(), n_boot=out["n_boot"],
                                            seed=out["seed"], level=out["level"])
        out["roc_auc_patch"] = boot.curve_metrics(pr_auc=False)["roc_auc"]
    return out


MACRO_METHOD = ("each figure computed per patient, then averaged over the patients where it is defined "
                "(F1 and sensitivity: patients with an IDC patch; specificity: with a non-IDC patch; ROC-AUC and "
                "balanced accuracy: with both), so a dense patient counts once, as a sparse one does")


def _macro_summary(values: np.ndarray, weights: np.ndarray | None, level: float) -> dict:
    """The mean over patients where ``values`` is defined, how many, and its patient-bootstrap interval."""
    ok = ~np.isnan(values)
    n_ok = int(ok.sum())
    estimate = float(values[ok].mean()) if n_ok else float("nan")
    out = {"estimate": estimate, "n_patients": n_ok, "low": float("nan"), "high": float("nan")}
    if weights is not None and n_ok >= 2:
        w = weights[:, ok]
        drawn = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = np.where(drawn > 0, (w @ values[ok]) / drawn, np.nan)
        iv = uncertainty.interval(estimate, replicates, level)
        out.update(low=iv["low"], high=iv["high"])
    return out


def patient_macro(rows: pd.DataFrame, thresholds: dict[str, float], *, n_boot: int = uncertainty.DEFAULT_N_BOOT,
                  seed: int = uncertainty.DEFAULT_SEED, level: float = uncertainty.DEFAULT_LEVEL) -> dict:
    """Patient-level (macro) figures of one split beside the patch-level ones: dense patients dominate patch counts.

    ROC-AUC, and at each preset F1, sensitivity, specificity and balanced accuracy, each computed per patient
    and averaged over the patients where it is defined (``n_patients`` says over how many), with a 95%
    interval from a bootstrap over those patients (the same resamples as the patch-level intervals).
    """
    codes, pids = pd.factorize(rows["patient_id"], sort=True)
    n = len(pids)
    y, p = rows["label"].to_numpy(), rows["prob"].to_numpy()
    weights = uncertainty.resample_weights(n, n_boot, seed) if n >= 2 else None
    out = {"n_patients": n, "method": MACRO_METHOD, "level": level,
           "roc_auc": _macro_summary(metrics.per_group_roc_auc(codes, y, p, n), weights, level), "at": {}}
    for name, t in thresholds.items():
        rates = metrics.per_group_rates_at(codes, y, p, t, n)
        out["at"][name] = {"threshold": float(t),
                           **{m: _macro_summary(rates[m], weights, level) for m in metrics.MACRO_METRICS}}
    return out


def evaluate_split(rows: pd.DataFrame, thresholds: dict[str, float], split: str = "this split",
                   patch_intervals: bool = False) -> dict:
    y, p = rows["label"].to_numpy(), rows["prob"].to_numpy()
    out = describe(rows)
    out["undefined"], out["warnings"] = undefined_metrics(out, split)
    out["roc_auc"] = metrics.roc_auc(y, p) if len(y) else float("nan")
    out["pr_auc"] = metrics.average_precision(y, p) if len(y) else float("nan")
    if "prob_patch" in rows and len(y):  # what the neighbourhood context adds to the patch alone
        out["roc_auc_patch"] = metrics.roc_auc(y, rows["prob_patch"].to_numpy())
        out["pr_auc_patch"] = metrics.average_precision(y, rows["prob_patch"].to_numpy())
    out["at"] = {name: metrics.metrics_at(y, p, t) for name, t in thresholds.items()}
    if len(y):
        out["intervals"] = split_intervals(rows, thresholds, patch_alone=patch_intervals)
        out["patient_macro"] = patient_macro(rows, thresholds)
    if "prob_uncalibrated" in rows:
        out["ece_uncalibrated"] = metrics.expected_calibration_error(y, rows["prob_uncalibrated"].to_numpy())
    out["ece"] = metrics.expected_calibration_error(y, p)
    out["reliability"] = {k: v.tolist() for k, v in metrics.reliability_bins(y, p).items()}
    return out


def mean_colour_baseline(table: pd.DataFrame, mean_rgb: np.ndarray, split: str = TEST) -> float:
    """ROC-AUC on ``split`` of a logistic regression on each patch's mean RGB, fitted on 'train'.

    A sanity check for shortcut learning: if colour alone scores close to the CNN, the model may be
    reading stain or scanner differences rather than tissue (and on the synthetic cohort it proves
    the label is not readable from a trivial cue). NaN when a split or a class is missing.
    """
    from sklearn.linear_model import LogisticRegression

    train = (table["split"] == TRAIN).to_numpy()
    held_out = (table["split"] == split).to_numpy()
    y = table["label"].to_numpy()
    if not held_out.any() or len(np.unique(y[train])) < 2:
        return float("nan")
    model = LogisticRegression(max_iter=1000).fit(mean_rgb[train], y[train])
    return metrics.roc_auc(y[held_out], model.predict_proba(mean_rgb[held_out])[:, 1])


def evaluate(table: pd.DataFrame, thresholds: dict[str, float] | None = None,
             mean_rgb: np.ndarray | None = None, context: dict | None = None) -> dict:
    """The full report. Presets are chosen on 'val' unless given (e.g. carried over from a trained run).

    ``context`` is the run's neighbourhood-context parameters (None when scores are the patch alone).
    """
    if thresholds is None:
        val = split_rows(table, VAL)
        thresholds = metrics.threshold_presets(val["label"].to_numpy(), val["prob"].to_numpy())
        chosen_on = {"split": VAL, **describe(val)}
    else:
        chosen_on = {"split": "carried over from the training run"}
    report = {"thresholds": thresholds, "thresholds_chosen_on": chosen_on, "context": context, "splits": {},
              "warnings": []}
    if set(thresholds) == {"default"} and chosen_on["split"] == VAL:
        n, pos = chosen_on["n_patches"], chosen_on["n_positive"]
        what = "no patches" if n == 0 else f"a single class (all {n:,} patches are IDC-{'positive' if pos else 'negative'})"
        report["warnings"].append("only the 0.5 threshold preset: F1-optimal, Youden's J and 95% sensitivity are "
                                  f"chosen on the {VAL} split, which has {what}")
    for split in (TEST, VAL, TRAIN, "all"):
        rows = split_rows(table, split)
        if len(rows):
            report["splits"][split] = evaluate_split(rows, thresholds, split, patch_intervals=bool(context))
            report["warnings"] += report["splits"][split]["warnings"]
    if mean_rgb is not None and TEST in report["splits"]:
        baseline = mean_colour_baseline(table, mean_rgb)
        report["splits"][TEST]["mean_colour_baseline_roc_auc"] = baseline
        if np.isnan(baseline):
            report["splits"][TEST]["undefined"]["mean_colour_baseline_roc_auc"] = \
                "needs both classes on the train and on the test split"
    primary = thresholds.get("f1_optimal", 0.5)
    report["per_patient"] = {"threshold": primary, "shares_of": "the errors of all splits together",
                             "rows": per_patient_table(table, primary).to_dict(orient="records")}
    return report


def _num(value, width: int = 0) -> str:
    """A metric to 3 decimals, or 'n/a' when it is undefined (NaN or None): never a bare 'nan'."""
    text = "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"
    return f"{text:>{width}}"


def interval_text(iv: dict | None, level: float = uncertainty.DEFAULT_LEVEL) -> str:
    """'0.747 (95% CI 0.702 to 0.790)'; 'n/a' when the value is undefined; says when some resamples had no value."""
    if not iv or iv.get("estimate") is None or not np.isfinite(iv["estimate"]):
        return "n/a"
    pct = f"{100 * level:g}%"
    if not np.isfinite(iv["low"]):
        return f"{iv['estimate']:.3f} ({pct} CI n/a: undefined in every resample)"
    share = iv.get("undefined_share") or 0.0
    extra = f"; undefined in {100 * share:.0f}% of resamples" if share > 0 else ""
    return f"{iv['estimate']:.3f} ({pct} CI {iv['low']:.3f} to {iv['high']:.3f}{extra})"


HEADLINE_METRICS = (("f1", "F1"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                    ("precision", "precision"), ("balanced_accuracy", "balanced accuracy"), ("mcc", "MCC"))


def format_intervals(report: dict, split: str) -> list[str]:
    """The split's headline figures with their patient-bootstrap intervals, as report lines."""
    s = report["splits"][split]
    ivs = s.get("intervals")
    if not ivs:
        return []
    level = ivs.get("level", uncertainty.DEFAULT_LEVEL)
    head = f"  {100 * level:g}% intervals"
    if "unavailable" in ivs:
        return [f"{head}: not available on the {split} split ({ivs['unavailable']})"]
    lines = [f"{head}: bootstrap over the {ivs['n_patients']:,} patients of the {split} split "
             f"({ivs['n_boot']:,} resamples, seed {ivs['seed']}); the interval is over patients, since patches "
             "of one patient are not independent",
             f"    ROC-AUC {interval_text(ivs.get('roc_auc'), level)}   PR-AUC {interval_text(ivs.get('pr_auc'), level)}"]
    if report.get("context") and "roc_auc_patch" in ivs:
        lines.append(f"    the patch alone: ROC-AUC {interval_text(ivs['roc_auc_patch'], level)}")
    at = ivs.get("at", {})
    name = "f1_optimal" if "f1_optimal" in at else next(iter(at), None)
    if name is not None:
        items = [f"{label} {interval_text(at[name].get(key), level)}" for key, label in HEADLINE_METRICS]
        lines.append(f"    at {PRESET_LABELS.get(name, name)} {at[name]['threshold']:.3f}: " + "   ".join(items[:3]))
        lines.append("      " + "   ".join(items[3:]))
    lines += [f"    WARNING: {w}" for w in ivs.get("warnings", [])]
    return lines


def macro_text(summary: dict | None, level: float = uncertainty.DEFAULT_LEVEL) -> str:
    """'0.812 (95% CI 0.760 to 0.858; 24 patients)'; 'not defined (no patient ...)' when no patient has it."""
    if not summary or not summary["n_patients"]:
        return "not defined (no patient of the split has the classes it needs)"
    iv = {"estimate": summary["estimate"], "low": summary["low"], "high": summary["high"]}
    if not np.isfinite(iv["low"]):
        return f"{iv['estimate']:.3f} ({summary['n_patients']} patient{'s' if summary['n_patients'] != 1 else ''})"
    return (f"{iv['estimate']:.3f} ({100 * level:g}% CI {iv['low']:.3f} to {iv['high']:.3f}; "
            f"{summary['n_patients']} patients)")


def format_patient_macro(macro: dict | None, split: str) -> list[str]:
    """The split's patient-level (macro) figures, as report lines."""
    if not macro:
        return []
    level = macro.get("level", uncertainty.DEFAULT_LEVEL)
    lines = [f"  patient level (macro: the mean over the {macro['n_patients']:,} patients of the {split} split of each "
             "patient's own figure, over the patients where it is defined)",
             f"    ROC-AUC {macro_text(macro['roc_auc'], level)}"]
    name = "f1_optimal" if "f1_optimal" in macro["at"] else next(iter(macro["at"]), None)
    if name is not None:
        at = macro["at"][name]
        lines.append(f"    at {PRESET_LABELS.get(name, name)} {at['threshold']:.3f}: F1 {macro_text(at['f1'], level)}   "
                     f"sensitivity {macro_text(at['sensitivity'], level)}")
        lines.append(f"      specificity {macro_text(at['specificity'], level)}   "
                     f"balanced accuracy {macro_text(at['balanced_accuracy'], level)}")
    return lines


def format_report(report: dict, split: str = TEST) -> str:
    """A readable summary of one split (test by default) for the command line.

    Undefined metrics print as n/a, and every warning of the report (a split with one class,
    presets that could not be chosen) is printed under the figures it concerns.
    """
    s = report["splits"].get(split) or next(iter(report["splits"].values()))
    split = split if split in report["splits"] else next(iter(report["splits"]))
    lines = [
        *(["SYNTHETIC cohort (generated by pipeline.synth, not real tissue):"] if report.get("synthetic") else []),
        f"Evaluation on the {split} split: {s['n_patients']} patients, {s['n_patches']:,} patches "
        f"({s['n_positive']:,} IDC-positive)",
        *(f"  WARNING: {w}" for w in report.get("warnings", s.get("warnings", []))),
        f"  ROC-AUC {_num(s['roc_auc'])}   PR-AUC {_num(s['pr_auc'])}   "
        f"ECE {_num(s.get('ece_uncalibrated'))} -> {_num(s['ece'])} after calibration",
        *([f"  the patch alone, without neighbourhood context: ROC-AUC {_num(s.get('roc_auc_patch'))}   "
           f"PR-AUC {_num(s.get('pr_auc_patch'))}"] if report.get("context") else []),
        *([f"  baseline: logistic regression on mean patch colour, ROC-AUC {_num(s['mean_colour_baseline_roc_auc'])} "
           "(fitted on train; far below the CNN means the label is not a colour cue)"]
          if "mean_colour_baseline_roc_auc" in s else []),
        f"  thresholds chosen on: {report['thresholds_chosen_on'].get('split')}"
        + (f" ({report['thresholds_chosen_on']['n_patients']} patients, "
           f"{report['thresholds_chosen_on']['n_patches']:,} patches)" if "n_patients" in report["thresholds_chosen_on"] else ""),
        f"  {'operating point':<24}{'thr':>7}{'prec':>7}{'sens':>7}{'spec':>7}{'F1':>7}{'BAcc':>7}{'MCC':>7}   TP/FP/FN/TN",
    ]
    for name, m in s["at"].items():
        lines.append(
            f"  {PRESET_LABELS.get(name, name):<24}{m['threshold']:>7.3f}"
            + "".join(_num(m[k], 7) for k in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "mcc"))
            + f"   {m['tp']}/{m['fp']}/{m['fn']}/{m['tn']}"
        )
    lines += format_intervals(report, split)
    lines += format_patient_macro(s.get("patient_macro"), split)
    r = s.get("reviewed_labels")
    if r is not None:
        info = report.get("reviewed_labels", {})
        lines += [
            f"Against the reviewed labels ({info.get('test_labels_flipped', 0):,} test labels flipped by the reviewers' "
            f"consensus, {info.get('test_patches_left_out_unsure', 0):,} unsure test patches left out): "
            f"{r['n_patients']} patients, {r['n_patches']:,} patches ({r['n_positive']:,} IDC-positive)",
            f"  ROC-AUC {_num(r['roc_auc'])}   PR-AUC {_num(r['pr_auc'])}",
        ]
        for name, m in r["at"].items():
            lines.append(
                f"  {PRESET_LABELS.get(name, name):<24}{m['threshold']:>7.3f}"
                + "".join(_num(m[k], 7) for k in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy",
                                                  "mcc"))
                + f"   {m['tp']}/{m['fp']}/{m['fn']}/{m['tn']}")
    return "\n".join(lines)


def _with_reviewed_labels(table: pd.DataFrame, reviewed: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the reviewed labels (``reviewed`` row-aligned with it), its unsure patches left out."""
    keep = ~reviewed["unsure"].to_numpy(bool)
    return table.assign(label=reviewed["reviewed_label"].to_numpy(np.int64))[keep]


def add_reviewed_labels(report: dict, table: pd.DataFrame, reviewed: pd.DataFrame, summary: dict) -> dict:
    """Add the test split's metrics against the reviewed labels to ``report`` (in place; returned).

    ``reviewed``: row-aligned with ``table`` (pipeline.agreement.ReviewedLabels.table: reviewed_label,
    unsure). The test patches left out as unsure are left out here too; the thresholds are the
    report's. Stored under ``splits.test.reviewed_labels`` and summarised in ``reviewed_labels``.
    """
    rows = split_rows(_with_reviewed_labels(table, reviewed), TEST)
    n_test = int((table["split"] == TEST).sum())
    report["reviewed_labels"] = {**summary, "test_patches_left_out_unsure": n_test - len(rows),
                                 "test_labels_flipped": int((reviewed["flipped"].to_numpy(bool)
                                                             & (table["split"] == TEST).to_numpy()).sum())}
    if len(rows) and TEST in report["splits"]:
        out = evaluate_split(rows, report["thresholds"], TEST, patch_intervals=bool(report.get("context")))
        report["splits"][TEST]["reviewed_labels"] = out
        report["warnings"] += [f"reviewed labels: {w}" for w in out["warnings"]]
    return report


def stage_evaluate(run_dir: Path, upstream_fp: str, thresholds: dict | None = None,
                   reviewed: pd.DataFrame | None = None, reviewed_summary: dict | None = None) -> dict:
    """The evaluate stage of a run folder: evaluation.json from its scores, skipped when unchanged.

    Presets are chosen on validation unless ``thresholds`` are given (`pipeline score` carries the
    trained run's over). Returns the report (the one on disk when the stage is skipped).
    ``reviewed`` (a run trained with reviews: ReviewedLabels.table, row-aligned with the manifest):
    the presets are chosen on validation's reviewed labels (unsure patches left out), and the test
    split is reported against both the dataset and the reviewed labels (:func:`add_reviewed_labels`).
    """
    fp = store.fingerprint(upstream_fp, thresholds) if reviewed is None else \
        store.fingerprint(upstream_fp, thresholds, "reviewed", reviewed_summary)
    if store.stage_done(run_dir, "evaluate", fp, store.EVALUATION):
        return store.read_evaluation(run_dir)
    run = store.load_run(run_dir)
    mean_rgb = np.concatenate([np.asarray(run.patches[s:s + 65536], np.float32).mean(axis=(1, 2))
                               for s in range(0, len(run.patches), 65536)])
    chosen_on = None
    if reviewed is not None and thresholds is None:
        val = split_rows(_with_reviewed_labels(run.table, reviewed), VAL)
        thresholds = metrics.threshold_presets(val["label"].to_numpy(), val["prob"].to_numpy())
        chosen_on = {"split": f"{VAL}, reviewed labels (unsure patches left out)", **describe(val)}
    report = evaluate(run.table, thresholds, mean_rgb=mean_rgb, context=run.meta.get("context"))
    if reviewed is not None:
        if chosen_on is not None:
            report["thresholds_chosen_on"] = chosen_on
        add_reviewed_labels(report, run.table, reviewed, reviewed_summary or {})
    report["synthetic"] = run.synthetic
    store.write_json(run_dir / store.EVALUATION, report)
    store.mark_stage(run_dir, "evaluate", fp)
    return report
