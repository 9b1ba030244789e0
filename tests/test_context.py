import numpy as np
import pytest

from pipeline import context, metrics


def _reference_context(pids, x, y, z, sigma):
    """The definition, one patch at a time: the patient's Gaussian-weighted mean logit, itself included."""
    out = np.zeros(len(z))
    for i in range(len(z)):
        num = den = 0.0
        for j in range(len(z)):
            if pids[j] == pids[i]:
                w = np.exp(-((x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2) / (2 * sigma ** 2))
                num, den = num + w * z[j], den + w
        out[i] = num / den
    return out


def test_neighbour_context_matches_the_definition_and_stays_within_each_patient():
    rng = np.random.default_rng(0)
    n = 60
    pids = rng.choice(["a", "b", "c"], n)
    x, y = rng.integers(0, 20, n) * 50 + 1, rng.integers(0, 20, n) * 50 + 1
    z = rng.normal(size=n)
    got = context.neighbour_context(pids, x, y, z, sigma_px=150.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _reference_context(pids, x, y, z, 150.0), rtol=1e-5, atol=1e-6)
    # Changing another patient's scores never changes a patient's context.
    z2 = z.copy()
    z2[pids == "b"] += 10
    again = context.neighbour_context(pids, x, y, z2, sigma_px=150.0)
    np.testing.assert_allclose(again[pids != "b"], got[pids != "b"], rtol=1e-6)


def test_neighbour_context_chunks_large_patients_exactly(monkeypatch):
    rng = np.random.default_rng(1)
    n = 300
    pids, x, y, z = np.zeros(n, int), rng.integers(0, 40, n) * 50, rng.integers(0, 40, n) * 50, rng.normal(size=n)
    whole = context.neighbour_context(pids, x, y, z, 200.0)
    monkeypatch.setattr(context, "ROW_CHUNK", 7)
    np.testing.assert_allclose(context.neighbour_context(pids, x, y, z, 200.0), whole, rtol=1e-5, atol=1e-6)


def test_a_patch_alone_keeps_its_score_and_sampling_density_alone_changes_nothing():
    got = context.neighbour_context(["p", "q"], [1, 1], [1, 1], [5.0, -3.0], sigma_px=100)
    np.testing.assert_array_equal(got, [5.0, -3.0])
    # A model that gives every patch the same score gets that score back, however dense the slide:
    # the context must not turn "how many neighbours" into evidence.
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 30, 200) * 50 + 1, rng.integers(0, 30, 200) * 50 + 1
    np.testing.assert_allclose(context.neighbour_context(np.zeros(200), x, y, np.full(200, 1.7), 200.0), 1.7, rtol=1e-6)


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="equal lengths"):
        context.neighbour_context(["a"], [1, 2], [1, 2], [0.0, 0.0], 100)
    with pytest.raises(ValueError, match="sigma_px must be positive"):
        context.neighbour_context(["a"], [1], [1], [0.0], 0)
    # Weights fitted for the first definition (no version key, patch left out, shrunk) are not reused.
    old = {"sigma_px": 200.0, "shrink": 0.5, "w_patch": 1.0, "w_context": 0.5, "bias": 0.0}
    with pytest.raises(ValueError, match="fitted for context version 1.*re-run `python -m pipeline run`"):
        context.apply_context(old, ["a"], [1], [1], [0.0])


def _regional_cohort(seed, n_patients=30, side=12):
    """Slides whose IDC is one disc, and a noisy 'patch model' that sees each patch alone."""
    rng = np.random.default_rng(seed)
    pids, xs, ys, labels = [], [], [], []
    for p in range(n_patients):
        cx, cy, r = rng.uniform(0, side, 2).tolist() + [rng.uniform(2, 5)]
        gx, gy = np.meshgrid(np.arange(side), np.arange(side))
        keep = rng.random(gx.size) < 0.4  # a sparse sample of the slide, like the real sample
        gx, gy = gx.ravel()[keep], gy.ravel()[keep]
        pids += [f"p{p}"] * len(gx)
        xs.append(gx * 50 + 1)
        ys.append(gy * 50 + 1)
        labels.append(((gx - cx) ** 2 + (gy - cy) ** 2 < r ** 2).astype(int))
    labels = np.concatenate(labels)
    logits = 2.0 * (labels - 0.5) + rng.normal(0, 1.5, len(labels))
    return np.array(pids), np.concatenate(xs), np.concatenate(ys), logits, labels


def test_context_fitted_on_validation_patients_lifts_unseen_patients():
    val, test = _regional_cohort(0), _regional_cohort(1)
    params = context.fit_context(*val)
    assert params["sigma_px"] in context.SIGMAS_PX and params["w_context"] > 0
    pids, x, y, z, labels = test
    final = context.apply_context(params, pids, x, y, z)
    assert metrics.roc_auc(labels, final) > metrics.roc_auc(labels, z) + 0.03
    # Calibrated as well: the mean prediction is close to the observed IDC rate.
    assert abs(final.mean() - labels.mean()) < 0.05


def test_fit_context_needs_both_classes():
    pids, x, y, z, labels = _regional_cohort(2)
    assert context.fit_context(pids, x, y, z, np.zeros_like(labels)) is None
