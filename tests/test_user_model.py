"""`score --model`: a user's own Keras model scores the data as it would when called directly.

The models are built and saved here (tiny, untrained: the scores only have to be the model's own).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pipeline import store
from tests.faults.conftest import run_cli

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def conv_probability_model(path: Path) -> Path:
    """Takes 0..255 (rescales inside), a Conv2D, one sigmoid unit."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inputs = keras.Input((50, 50, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(6, 3, strides=2, activation="relu", name="my_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, activation="sigmoid", bias_initializer=keras.initializers.Constant(-0.5))(x)
    keras.Model(inputs, outputs, name="users_cnn").save(path)
    return path


def dense_logit_model(path: Path) -> Path:
    """Expects 0..1, no convolution, two class logits (IDC last)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(4)
    inputs = keras.Input((50, 50, 3))
    x = layers.AveragePooling2D(10)(inputs)
    x = layers.Flatten()(x)
    outputs = layers.Dense(2, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(x)
    keras.Model(inputs, outputs, name="users_dense").save(path)
    return path


def direct(path: Path, patches: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The user's model called directly, as its author would."""
    import keras

    return keras.models.load_model(path).predict(patches.astype(np.float32) * scale, batch_size=512, verbose=0)


def test_a_users_keras_model_scores_the_same_as_called_directly(tiny_cohort, tmp_path, capsys, monkeypatch):
    model = conv_probability_model(tmp_path / "users_cnn.keras")
    out = tmp_path / "runs" / "user"
    code, stdout, _ = run_cli(capsys, "score", "--model", model, "--data", tiny_cohort, "--out", out)
    assert code == 0
    assert "fitted on the val split and measured on the test split" in stdout
    assert "checked on 32 patches (input 0-255, output probability); Grad-CAM layer my_conv" in stdout
    run = store.load_run(out)
    expected = direct(model, np.asarray(run.patches))[:, 0]
    np.testing.assert_allclose(run.table["prob_uncalibrated"], expected, atol=1e-5)
    # Calibrated on val like a trained run; split by patient; no context unless asked.
    assert run.meta["calibration"] and run.meta["context"] is None and set(run.table["split"]) == set(store.SPLITS)
    assert run.evaluation["thresholds_chosen_on"]["split"] == "val"
    source = run.meta["source"]
    assert source["kind"] == "user_model" and Path(source["file"]).name == "users_cnn.keras"
    assert source["sha256"] == store.file_sha256(model) and run.meta["cam_layer"] == "my_conv"
    assert run.provenance == ("Scores: a user's Keras model, users_cnn.keras (input 0-255, output probability), not "
                              "trained here; calibrated on validation; Grad-CAM on layer my_conv.")
    # Grad-CAM reads the run's wrapped model, as the app does.
    import keras

    from model.explain import Explainer

    explainer = Explainer(keras.models.load_model(out / store.MODEL, compile=False), run.meta["cam_layer"])
    np.testing.assert_allclose(explainer.predict(np.asarray(run.patches[:8])), expected[:8], atol=1e-5)
    cams = explainer.cam(np.asarray(run.patches[:2]), target=1)
    assert cams.shape == (2, 50, 50) and np.isfinite(cams).all()

    # The app's inspector shows the map, and every page says where the scores came from.
    monkeypatch.setenv("IDC_RUNS", str(out.parent))
    at = AppTest.from_file(MAIN, default_timeout=180).run().switch_page("views/inspector.py").run()
    assert not at.exception and not at.error
    assert any("a user's Keras model, users_cnn.keras" in m.value for m in at.markdown)
    assert not any("unavailable" in i.value for i in at.info)


def test_input_range_and_logit_options_and_a_model_without_a_conv_layer(tiny_cohort, tmp_path, capsys):
    model = dense_logit_model(tmp_path / "users_dense.keras")
    out = tmp_path / "dense"
    # Declared (by default) as probabilities, its logits are refused with the fix.
    code, _, err = run_cli(capsys, "score", "--model", model, "--data", tiny_cohort, "--out", out,
                           "--input-range", "0-1")
    assert code == 2
    assert f"error: {model} was declared to output probabilities, but on 32 patches its outputs range from" in err
    assert "outside [0, 1]: looks like logits: pass --output logit" in err
    assert not (out / store.SCORES).exists()
    code, stdout, _ = run_cli(capsys, "score", "--model", model, "--data", tiny_cohort, "--out", out,
                              "--input-range", "0-1", "--output", "logit")
    assert code == 0
    run = store.load_run(out)
    z = direct(model, np.asarray(run.patches), scale=1 / 255).astype(np.float64)
    np.testing.assert_allclose(run.table["prob_uncalibrated"], 1 / (1 + np.exp(-(z[:, 1] - z[:, 0]))), atol=1e-5)
    reason = ("users_dense.keras has no Conv2D, SeparableConv2D or DepthwiseConv2D layer with a (batch, h, w, "
              "channels) output; pass --cam-layer NAME to name one")
    assert f"Grad-CAM unavailable: {reason}" in stdout
    assert run.cam_unavailable == reason and run.meta["cam_layer"] is None
    assert run.provenance.endswith(f"Grad-CAM unavailable ({reason}).")


@pytest.mark.parametrize("argv, message", [
    ([], "takes input of shape (None, 64, 64, 3), but the patches are (None, 50, 50, 3)"),
    (["--cam-layer", "nope"], "has no layer 'nope' for --cam-layer"),
])
def test_a_model_that_does_not_fit_is_refused_naming_the_file(tiny_cohort, tmp_path, capsys, argv, message):
    import keras
    from keras import layers

    side = 64 if not argv else 50
    inputs = keras.Input((side, side, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3)(inputs))
    path = tmp_path / "wrong.keras"
    keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x)).save(path)
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "score", "--model", path, "--data", tiny_cohort, "--out", out, *argv)
    assert code == 2 and f"error: {path} {message}" in err
    assert not out.exists()  # checked before anything is written


def test_model_options_apply_to_model_only(tmp_path, capsys):
    code, _, err = run_cli(capsys, "score", "--run", tmp_path, "--data", tmp_path, "--out", tmp_path / "o",
                           "--output", "logit")
    assert code == 2 and "--output apply to --model only" in err
    code, _, err = run_cli(capsys, "score", "--model", tmp_path / "missing.keras", "--data", tmp_path,
                           "--out", tmp_path / "o")
    assert code == 2 and f"model file {tmp_path / 'missing.keras'} does not exist" in err
