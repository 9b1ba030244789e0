"""95% patient-bootstrap intervals everywhere: evaluation.json, the CLI report, the overview's tiles and
table, and each patient's share of the errors."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import cohort
from pipeline import evaluate, metrics, store, uncertainty

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TILE_KEYS = ("sensitivity", "specificity", "precision", "f1", "balanced_accuracy", "mcc", "roc_auc", "pr_auc")


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


# --------------------------------------------------------------------------- evaluation.json and the report
def test_evaluation_json_has_intervals_per_split(tiny_run):
    ev = json.loads((tiny_run / store.EVALUATION).read_text())
    assert {"test", "val", "train", "all"} <= set(ev["splits"])
    for name, s in ev["splits"].items():
        ivs = s["intervals"]
        assert ivs["method"] == uncertainty.METHOD and "patients" in ivs["method"], name
        assert (ivs["n_boot"], ivs["level"], ivs["seed"]) == (1000, 0.95, 0), name
        assert (ivs["n_patients"], ivs["n_patches"]) == (s["n_patients"], s["n_patches"]), name
        if s["n_patients"] < 2:
            assert "at least 2 patients" in ivs["unavailable"], name
            continue
        assert "unavailable" not in ivs, name
        checked = [("roc_auc", ivs["roc_auc"], s["roc_auc"]), ("pr_auc", ivs["pr_auc"], s["pr_auc"]),
                   ("roc_auc_patch", ivs["roc_auc_patch"], s["roc_auc_patch"])]  # the tiny run has context
        assert set(ivs["at"]) == set(ev["thresholds"]), name
        for preset, at in ivs["at"].items():
            assert at["threshold"] == ev["thresholds"][preset]
            checked += [(f"{preset}/{k}", at[k], s["at"][preset][k]) for k in metrics.METRIC_NAMES]
        for what, iv, value in checked:
            assert set(iv) == {"estimate", "low", "high", "se", "undefined_share"}, what
            if _finite(value):
                assert iv["estimate"] == pytest.approx(value, abs=1e-9), (name, what)
            if _finite(iv["low"]):
                assert iv["low"] - 1e-12 <= iv["estimate"] <= iv["high"] + 1e-12, (name, what, iv)
    # the patient-level split structure of the tiny cohort: a one-patient test split, several in train
    assert ev["splits"]["train"]["n_patients"] >= 2


def test_report_prints_the_headline_figures_with_intervals_over_patients(tiny_run):
    ev = store.read_evaluation(tiny_run)
    text = evaluate.format_report(ev, "train")
    n = ev["splits"]["train"]["n_patients"]
    assert f"bootstrap over the {n} patients of the train split (1,000 resamples" in text
    assert "the interval is over patients" in text
    assert re.search(r"ROC-AUC \d\.\d{3} \(95% CI \d\.\d{3} to \d\.\d{3}\)", text)
    assert re.search(r"F1 \d\.\d{3} \(95% CI \d\.\d{3} to \d\.\d{3}", text)
    assert re.search(r"the patch alone: ROC-AUC \d\.\d{3} \(95% CI", text)
    assert "WARNING: only" in text  # few patients: the intervals are rough
    assert "nan" not in text
    one = evaluate.format_report(ev, "test")  # one patient: said, not a nan
    assert "95% intervals: not available on the test split (a patient-level bootstrap needs at least 2" in one
    assert "nan" not in one


def _two_class_table(n_patients: int = 6, n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.random(n_patients * n) < 0.4).astype(int)
    return pd.DataFrame({
        "patient_id": np.repeat([f"p{i}" for i in range(n_patients)], n), "label": label,
        "prob": np.clip(0.35 * label + 0.65 * rng.random(n_patients * n), 0, 1),
        "split": np.repeat(["train", "train", "val", "val", "test", "test"], n)})


def test_report_intervals_and_undefined_on_a_table():
    report = evaluate.evaluate(_two_class_table())
    test = report["splits"]["test"]["intervals"]
    assert test["n_patients"] == 2 and test["at"]["f1_optimal"]["f1"]["estimate"] == pytest.approx(
        report["splits"]["test"]["at"]["f1_optimal"]["f1"])
    text = evaluate.format_report(report)
    assert "bootstrap over the 2 patients of the test split" in text
    line = next(x for x in text.splitlines() if "at F1-optimal (val)" in x)
    f1 = report["splits"]["test"]["intervals"]["at"]["f1_optimal"]["f1"]
    assert f"F1 {f1['estimate']:.3f} (95% CI {f1['low']:.3f} to {f1['high']:.3f})" in line
    # no IDC patch on test: the values that need both classes are n/a, never nan
    one_class = _two_class_table()
    one_class.loc[one_class["split"] == "test", "label"] = 0
    report = evaluate.evaluate(one_class)
    ivs = report["splits"]["test"]["intervals"]
    assert np.isnan(ivs["roc_auc"]["estimate"]) and np.isnan(ivs["at"]["default"]["sensitivity"]["low"])
    text = evaluate.format_report(report)
    assert "ROC-AUC n/a   PR-AUC n/a" in text and "sensitivity n/a" in text and "nan" not in text


# --------------------------------------------------------------------------- each patient's share of the errors
def test_error_shares_match_a_hand_count():
    rows = pd.DataFrame({
        "patient_id": ["A"] * 4 + ["B"] * 3 + ["C"] * 2,
        "label": [1, 1, 0, 0, 1, 1, 0, 0, 0],
        "prob": [0.9, 0.2, 0.8, 0.1, 0.3, 0.4, 0.6, 0.1, 0.2],
        "split": "test"})
    # at 0.5: A has 1 FP + 1 FN, B 1 FP + 2 FN, C none: 5 errors, 2 FP, 3 FN
    t = evaluate.per_patient_table(rows, 0.5).set_index("patient_id")
    assert t["errors"].tolist() == [2, 3, 0]
    np.testing.assert_allclose(t["error_share_pct"], [40.0, 60.0, 0.0])
    np.testing.assert_allclose(t["fp_share_pct"], [50.0, 50.0, 0.0])
    np.testing.assert_allclose(t["fn_share_pct"], [100 / 3, 200 / 3, 0.0])
    # a split without errors shares nothing: 0 everywhere, not a division by zero
    perfect = rows.assign(prob=rows["label"].astype(float))
    assert (evaluate.per_patient_table(perfect, 0.5)[["error_share_pct", "fp_share_pct", "fn_share_pct"]] == 0).all().all()


def test_error_shares_sum_to_100_over_the_patients_with_errors(tiny_run):
    table = store.load_run(tiny_run).table
    for threshold in (0.3, float(table["prob"].median()), 0.7):
        t = evaluate.per_patient_table(table, threshold)
        for share, count in (("error_share_pct", "errors"), ("fp_share_pct", "false_pos"), ("fn_share_pct", "false_neg")):
            total = t[count].sum()
            if total:
                assert t.loc[t[count] > 0, share].sum() == pytest.approx(100.0)
                np.testing.assert_allclose(t[share], 100 * t[count] / total)
            else:
                assert (t[share] == 0).all()


# --------------------------------------------------------------------------- the overview
def _start(monkeypatch, runs_dir: Path, **query) -> AppTest:
    monkeypatch.setenv("IDC_RUNS", str(runs_dir))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in query.items()})
    return at.run()


def _tile_lines(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith(("95% CI", "not defined"))]


def _expected_lines(run_dir: Path, split: str, threshold: float) -> list[str]:
    rows = evaluate.split_rows(store.load_run(run_dir).table, split)
    boot = uncertainty.PatientBootstrap.from_rows(rows)
    ivs = {**boot.metrics_at(threshold), **boot.curve_metrics()}
    return [cohort.ci_text(ivs[k]) for k in TILE_KEYS]


def _no_nan(at: AppTest) -> None:
    texts = [m.value for m in at.metric] + [c.value for c in at.caption] + [m.value for m in at.markdown]
    assert not [t for t in texts if re.search(r"\bnan\b", t, re.IGNORECASE)]


def test_overview_tiles_show_intervals_that_follow_the_threshold(monkeypatch, tiny_run):
    at = _start(monkeypatch, tiny_run.parent, split="all")
    assert not at.exception
    n = store.load_run(tiny_run).table["patient_id"].nunique()
    assert _tile_lines(at) == _expected_lines(tiny_run, "all", 0.5)
    assert all(line.startswith("95% CI ") for line in _tile_lines(at))
    assert any(f"95% intervals: bootstrap over the {n} patients of the split (1,000 resamples); patches of one "
               "patient are not independent" in c.value for c in at.caption)
    assert any("ROC-AUC and PR-AUC intervals from evaluation.json" in c.value for c in at.caption)
    assert any(f"only {n} patients" in w.value for w in at.warning)  # few patients: said
    # the metrics table (and its CSV) carries low and high
    table = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    assert {"low", "high"} <= set(table.columns)
    f1 = table.set_index("metric").loc["F1"]
    assert f"95% CI {f1['low']:.3f} to {f1['high']:.3f}" in _tile_lines(at)[TILE_KEYS.index("f1")]
    before = _tile_lines(at)

    prob = evaluate.split_rows(store.load_run(tiny_run).table, "all")["prob"].to_numpy()
    # A score of the tiny model's own that moves some patch across, whatever it learnt (on some CPUs its
    # two epochs learn next to nothing and every patch gets nearly the same score).
    unique = np.unique(prob)
    assert len(unique) > 1, "the tiny model gives every patch the same score: no threshold can move a metric"
    threshold = next(float(t) for t in (unique[len(unique) // 2], unique[-1], unique[0])
                     if ((prob >= t) != (prob >= 0.5)).any())
    at.number_input(key="w_threshold_number").set_value(threshold).run()
    assert not at.exception and at.session_state.threshold == threshold
    after = _tile_lines(at)
    assert after == _expected_lines(tiny_run, "all", threshold)
    assert after[:6] != before[:6]  # threshold metrics moved; ROC-AUC and PR-AUC did not
    assert after[6:] == before[6:]
    _no_nan(at)

    # the per-patient table: each patient's share of the errors, summing to 100
    per_patient = at.dataframe[-1].value
    assert {"error_share_pct", "fp_share_pct", "fn_share_pct"} <= set(per_patient.columns)
    assert per_patient.loc[per_patient["errors"] > 0, "error_share_pct"].sum() == pytest.approx(100.0)
    assert list(per_patient["patient_id"]) == sorted(per_patient["patient_id"])  # default order: patient id


def test_a_one_patient_split_says_intervals_are_not_defined(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    split = next(s for s in ("test", "val") if run.table.loc[run.table["split"] == s, "patient_id"].nunique() == 1)
    at = _start(monkeypatch, tiny_run.parent, split=split)
    assert not at.exception
    assert _tile_lines(at) == ["95% CI not defined (only 1 patient)"] * len(TILE_KEYS)
    assert any("95% intervals not defined: a patient-level bootstrap needs at least 2 patients, and the "
               f"{split} split has 1" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    assert table.set_index("metric").loc["F1", "note"].startswith("interval not defined: a patient-level bootstrap")
    _no_nan(at)


def test_a_split_without_idc_says_not_defined_with_the_reason(monkeypatch, tiny_run, tmp_path):
    runs = tmp_path / "runs"
    copy = runs / "no-idc"
    shutil.copytree(tiny_run, copy)
    manifest = store.read_manifest(copy)
    manifest["label"] = 0
    store.write_manifest(copy, manifest)
    run = store.load_run(copy)
    store.write_json(copy / store.EVALUATION, evaluate.evaluate(run.table, context=run.meta.get("context")))
    n = len(run.table)
    at = _start(monkeypatch, runs, split="all")
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    for label in ("Sensitivity (recall)", "Balanced accuracy", "ROC-AUC", "PR-AUC"):
        assert shown[label] == "not defined", label
    lines = dict(zip(TILE_KEYS, _tile_lines(at)))
    reason = f"not defined: all {n:,} patches are IDC-negative"
    assert lines["sensitivity"] == lines["roc_auc"] == lines["pr_auc"] == lines["balanced_accuracy"] == reason
    assert lines["specificity"].startswith("95% CI ")  # the negatives' rate is defined, with its interval
    table = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")
    assert table.loc["ROC-AUC (threshold-free)", "note"] == reason
    _no_nan(at)


# --------------------------------------------------------------------------- pure helpers
def test_metrics_frame_has_low_and_high():
    rng = np.random.default_rng(3)
    pid = np.repeat(["a", "b", "c", "d"], 50)
    label = rng.integers(0, 2, 200)
    prob = np.clip(0.4 * label + 0.6 * rng.random(200), 0, 1)
    boot = uncertainty.PatientBootstrap(pid, label, prob)
    ivs = {**boot.metrics_at(0.5), **boot.curve_metrics()}
    described = {"n_patients": 4, "n_patches": 200, "n_positive": int(label.sum())}
    frame = cohort.metrics_frame(metrics.metrics_at(label, prob, 0.5), cohort.curves(label, prob), "test", described,
                                 "r", ivs, {}, "95% percentile bootstrap over the 4 patients").set_index("metric")
    assert frame.loc["F1", "low"] == ivs["f1"]["low"] and frame.loc["F1", "high"] == ivs["f1"]["high"]
    assert frame.loc["ROC-AUC (threshold-free)", "low"] == ivs["roc_auc"]["low"]
    assert np.isnan(frame.loc["TP (patches)", "low"]) and frame.loc["TP (patches)", "interval"] == ""
    assert frame.loc["F1", "interval"].startswith("95% percentile bootstrap")
    assert cohort.value_text(float("nan")) == "not defined"
    assert cohort.ci_text({"estimate": 0.5, "low": 0.4, "high": 0.6, "se": 0.05, "undefined_share": 0.1}) == \
        "95% CI 0.400 to 0.600; undefined in 10% of resamples"
