"""The vectorised metrics must agree with scikit-learn exactly."""
import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline import metrics


@pytest.fixture(params=[0, 1, 2])
def scores(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 3000)
    # rounded scores create ties, the case where curve code usually goes wrong
    p = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), 2)
    return y, p


def test_threshold_metrics_match_sklearn(scores):
    y, p = scores
    for t in (0.0, 0.25, 0.5, 0.73, 1.0):
        pred = p >= t
        m = metrics.metrics_at(y, p, t)
        tn, fp, fn, tp = sk.confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
        assert m["precision"] == pytest.approx(sk.precision_score(y, pred, zero_division=0))
        assert m["sensitivity"] == pytest.approx(sk.recall_score(y, pred))
        assert m["f1"] == pytest.approx(sk.f1_score(y, pred, zero_division=0))
        assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
        assert m["mcc"] == pytest.approx(sk.matthews_corrcoef(y, pred))
        assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))


def test_curves_match_sklearn(scores):
    y, p = scores
    assert metrics.roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert metrics.average_precision(y, p) == pytest.approx(sk.average_precision_score(y, p), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, p)
    fpr_sk, tpr_sk, _ = sk.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk)
    np.testing.assert_allclose(tpr, tpr_sk)


def test_grouped_confusion_matches_per_group(scores):
    y, p = scores
    groups = np.arange(len(y)) % 7
    c = metrics.grouped_confusion_at(groups, y, p, 0.4)
    for g in range(7):
        sel = groups == g
        assert metrics.confusion_at(y[sel], p[sel], 0.4) == {k: int(v[g]) for k, v in c.items()}


def test_presets_reach_their_targets(scores):
    y, p = scores
    t = metrics.threshold_presets(y, p)
    assert t["default"] == 0.5
    assert metrics.metrics_at(y, p, t["sensitivity_95"])["sensitivity"] >= 0.95
    f1s = [metrics.metrics_at(y, p, u)["f1"] for u in np.unique(p)]
    assert metrics.metrics_at(y, p, t["f1_optimal"])["f1"] == pytest.approx(max(f1s))
    j = [sk.recall_score(y, p >= u) - (1 - sk.recall_score(1 - y, p < u)) for u in np.unique(p)]
    m = metrics.metrics_at(y, p, t["youden_j"])
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(max(j))


def test_calibration_bins_and_ece():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(int)   # perfectly calibrated by construction
    assert metrics.expected_calibration_error(y, p) < 0.01
    assert metrics.expected_calibration_error(y, p ** 3) > 0.1
    b = metrics.reliability_bins(y, p, 10)
    assert b["count"].sum() == p.size


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x"])
def test_threshold_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError):
        metrics.confusion_at([0, 1], [0.2, 0.8], bad)


def test_one_class_and_empty_inputs_do_not_crash():
    m = metrics.metrics_at(np.ones(5, int), np.full(5, 0.9), 0.5)
    # balanced accuracy needs both classes: undefined here, not the sensitivity alone (issue 9)
    assert m["sensitivity"] == 1.0 and np.isnan(m["specificity"]) and np.isnan(m["balanced_accuracy"])
    assert np.isnan(metrics.roc_auc(np.ones(5, int), np.linspace(0, 1, 5)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        metrics.confusion_at([0, 2], [0.1, 0.2], 0.5)


def test_per_patient_rates_and_roc_auc_match_sklearn_and_leave_undefined_as_nan(scores):
    y, p = scores
    y = y.copy()
    groups = np.arange(len(y)) % 5
    y[groups == 3] = 0                      # a patient without IDC: F1, sensitivity, ROC-AUC undefined there
    rates = metrics.per_group_rates_at(groups, y, p, 0.45)
    auc = metrics.per_group_roc_auc(groups, y, p)
    for g in range(5):
        sel = groups == g
        if g == 3:
            assert np.isnan(rates["f1"][g]) and np.isnan(rates["sensitivity"][g]) and np.isnan(auc[g])
            assert rates["specificity"][g] == pytest.approx(1 - (p[sel] >= 0.45).mean())
            continue
        assert rates["f1"][g] == pytest.approx(sk.f1_score(y[sel], p[sel] >= 0.45))
        assert rates["balanced_accuracy"][g] == pytest.approx(sk.balanced_accuracy_score(y[sel], p[sel] >= 0.45))
        assert auc[g] == pytest.approx(sk.roc_auc_score(y[sel], p[sel]), abs=1e-12)


def test_patient_macro_weighs_each_patient_once():
    import pandas as pd
    from pipeline import evaluate

    rng = np.random.default_rng(3)
    sizes = [2000, 30, 30, 30, 30]          # one dense patient dominates the patch counts
    pid = np.repeat([f"p{i}" for i in range(5)], sizes)
    y = rng.integers(0, 2, len(pid))
    # the dense patient is scored perfectly, the sparse ones at random
    p = np.where(pid == "p0", 0.2 + 0.6 * y, rng.random(len(pid)))
    rows = pd.DataFrame({"patient_id": pid, "label": y, "prob": p})
    macro = evaluate.patient_macro(rows, {"f1_optimal": 0.5}, n_boot=200)
    per_patient = [sk.roc_auc_score(y[pid == k], p[pid == k]) for k in sorted(set(pid))]
    assert macro["roc_auc"]["estimate"] == pytest.approx(np.mean(per_patient))
    assert macro["roc_auc"]["n_patients"] == 5
    assert macro["roc_auc"]["estimate"] < metrics.roc_auc(y, p) - 0.2   # the pooled figure hides the sparse ones
    f1 = macro["at"]["f1_optimal"]["f1"]
    assert f1["low"] <= f1["estimate"] <= f1["high"]
    assert "patient level" in "\n".join(evaluate.format_patient_macro(macro, "test"))
