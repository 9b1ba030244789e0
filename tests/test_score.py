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


def test_predict_probabilities_rows_tta_and_release():
    """model.predict: the model's own output for any rows (contiguous or not), TTA = the mean of the 8 views."""
    import keras

    from model import predict

    inputs = keras.Input((6, 6, 3))
    # Position-dependent on purpose, so that each flip/rotation gives another probability.
    x = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(inputs))
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(seed=0))(x)
    model = keras.Model(inputs, out)
    patches = np.random.default_rng(0).integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)

    def direct(batch):
        return np.asarray(model(batch.astype(np.float32), training=False))[:, 0]

    predict.release_compiled()  # other tests' models may be cached already
    rows = np.array([7, 2, 3, 9])
    np.testing.assert_allclose(predict.predict_probabilities(model, patches, rows, batch_size=3), direct(patches[rows]),
                               atol=1e-6)
    np.testing.assert_allclose(predict.predict_probabilities(model, patches, batch_size=4), direct(patches), atol=1e-6)
    views = [np.rot90(patches, k, axes=(1, 2)) for k in range(4)]
    views += [v[:, :, ::-1] for v in views]
    tta = predict.predict_probabilities(model, patches, tta=True)
    np.testing.assert_allclose(tta, np.mean([direct(np.ascontiguousarray(v)) for v in views], axis=0), atol=1e-6)
    assert not np.allclose(tta, direct(patches), atol=1e-4)
    assert predict._compiled.cache_info().currsize == 2  # one compiled function per (model, tta)
    predict.release_compiled()
    assert predict._compiled.cache_info().currsize == 0


def test_a_missing_or_garbage_model_is_named_with_the_fix(tmp_path, tiny_run):
    import shutil

    import pytest

    from pipeline import store

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    assert store.read_model(run, compile=False).input_shape == (None, 50, 50, 3)
    (run / store.MODEL).write_bytes(b"not a keras archive")
    with pytest.raises(store.ArtifactError, match=r"model\.keras is unreadable .*move it aside and re-run"):
        store.read_model(run, why="Grad-CAM needs the trained model")
    (run / store.MODEL).unlink()
    with pytest.raises(store.ArtifactError, match=r"^Grad-CAM needs the trained model: .*model\.keras is missing"):
        store.read_model(run, why="Grad-CAM needs the trained model")
