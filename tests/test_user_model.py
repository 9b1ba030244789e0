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


def zero_logit_model(path: Path, nan: bool = False) -> Path:
    """Ignores its input: a Dense unit with zero weights, so its logit is 0 on every patch.

    As given, it ends in a sigmoid and outputs 0.5 everywhere (constant). With ``nan``, the zero
    logit is divided by itself instead (0 / 0, a division by zero in the model's own graph): NaN.
    """
    import keras
    from keras import layers

    inputs = keras.Input((50, 50, 3))
    x = layers.GlobalAveragePooling2D()(inputs)
    if nan:
        z = layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros", name="zero_logit")(x)
        outputs = keras.ops.divide(z, z)
    else:
        outputs = layers.Dense(1, activation="sigmoid", kernel_initializer="zeros", bias_initializer="zeros",
                               name="zero_logit")(x)
    keras.Model(inputs, outputs, name="users_flat").save(path)
    return path


def test_a_model_that_outputs_nan_is_refused_naming_the_file_and_input_range(tiny_cohort, tmp_path, capsys):
    model = zero_logit_model(tmp_path / "users_nan.keras", nan=True)
    assert np.isnan(direct(model, np.full((2, 50, 50, 3), 128, np.uint8))).all()  # NaN as its author calls it
    for argv, given in (([], "0-255"), (["--input-range", "0-1"], "0-1")):
        out = tmp_path / f"nan-{given}"
        code, stdout, err = run_cli(capsys, "score", "--model", model, "--data", tiny_cohort, "--out", out, *argv)
        assert code == 2, (stdout, err)
        assert (f"error: {model} gives non-finite outputs (NaN or inf) on 32 of 32 patches checked; "
                f"check --input-range (given: {given}) and the model itself") in err
        assert "Traceback" not in err and "checked on 32 patches" not in stdout
        # Refused after the check, before a model or a score is written.
        assert not (out / store.MODEL).exists() and not (out / store.SCORES).exists()
        assert not (out / store.EVALUATION).exists()


def test_a_model_with_constant_output_is_warned_about_naming_input_range(tiny_cohort, tmp_path, capsys):
    model = zero_logit_model(tmp_path / "users_flat.keras")
    out = tmp_path / "flat"
    code, stdout, err = run_cli(capsys, "score", "--model", model, "--data", tiny_cohort, "--out", out)
    warning = ("score: WARNING: users_flat.keras gives the same P(IDC) (0.5000) to all 32 patches checked; "
               "check --input-range (given: 0-255)")
    assert warning in stdout.splitlines(), (stdout, err)  # a line of its own, printed, not logged
    assert stdout.count("WARNING: users_flat.keras gives the same P(IDC)") == 1
    # A warning, not an error: the run is scored, and its scores are the model's own (all 0.5).
    assert code == 0, err
    assert "checked on 32 patches (input 0-255, output probability)" in stdout
    run = store.load_run(out)
    np.testing.assert_array_equal(run.table["prob_uncalibrated"], np.full(len(run.table), 0.5))


def test_nan_on_some_patches_is_counted_on_the_patches_checked(tiny_cohort, tmp_path, capsys):
    """0 / 0 only where a patch's mean red is below a cut: the error counts exactly those patches."""
    import keras
    from keras import layers

    from pipeline import ingest
    from pipeline.score import CHECK_PATCHES

    scratch = tmp_path / "scratch"
    ingest.ingest(tiny_cohort, scratch, progress=False)
    patches = np.asarray(store.read_patches(scratch))
    rows = np.unique(np.linspace(0, len(patches) - 1, min(CHECK_PATCHES, len(patches))).astype(int))  # as score does
    red = np.sort(patches[rows, :, :, 0].astype(np.float64).mean(axis=(1, 2)))
    k = max(range(len(red) // 4, 3 * len(red) // 4), key=lambda i: red[i + 1] - red[i])  # the widest gap mid-way
    assert red[k + 1] - red[k] > 1e-3
    cut = (red[k] + red[k + 1]) / 2

    inputs = keras.Input((50, 50, 3))
    mean = layers.GlobalAveragePooling2D()(inputs)
    red_only = layers.Dense(1, kernel_initializer=keras.initializers.Constant([[1.0], [0.0], [0.0]]),
                            bias_initializer=keras.initializers.Constant(-cut))
    z = layers.ReLU()(red_only(mean))  # 0 below the cut, positive above
    model = tmp_path / "users_half_nan.keras"
    keras.Model(inputs, keras.ops.divide(z, z)).save(model)  # NaN below the cut, 1 above
    capsys.readouterr()
    assert int(np.isnan(direct(model, patches[rows])).sum()) == k + 1  # as its author would see it

    out = tmp_path / "half"
    code, _, err = run_cli(capsys, "score", "--model", model, "--data", tiny_cohort, "--out", out)
    assert code == 2
    assert (f"error: {model} gives non-finite outputs (NaN or inf) on {k + 1} of {len(rows)} patches checked; "
            "check --input-range (given: 0-255) and the model itself") in err
    assert not (out / store.SCORES).exists()
