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
