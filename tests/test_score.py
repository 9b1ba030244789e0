import numpy as np

from pipeline import metrics, score


def test_calibration_fixes_overconfidence_and_prior_shift_without_moving_the_ranking():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-1.0, 2.0, 40_000)
    y = (rng.random(true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(int)
    # an over-confident model trained with class weights: logits scaled up and shifted towards IDC
    raw = 1 / (1 + np.exp(-(2.5 * true_logit + 1.5)))
    val, test = slice(0, 20_000), slice(20_000, None)
    cal = score.fit_calibration(raw[val], y[val])
    assert abs(cal["temperature"] - 2.5) < 0.2 and abs(cal["bias"] + 1.5 / 2.5) < 0.15
    fixed = score.apply_calibration(raw[test], cal)
    assert metrics.expected_calibration_error(y[test], raw[test]) > 0.08
    assert metrics.expected_calibration_error(y[test], fixed) < 0.02
    # float32 storage can merge a few near-ties; the ranking is otherwise untouched
    assert abs(metrics.roc_auc(y[test], fixed) - metrics.roc_auc(y[test], raw[test])) < 1e-6


def test_single_class_validation_gives_identity():
    assert score.fit_calibration(np.array([0.2, 0.9]), np.array([1, 1])) == score.IDENTITY
