"""Grad-CAM, Grad-CAM++ and Score-CAM (model.explain) on the tiny run's real trained model, the pointing
game, the app's overlay (app.cam_overlay) and the run's region masks (pipeline.store).

How long a CAM takes is bench/bench_gradcam.py's to measure (timings on 2 shared cores are no test)."""
from __future__ import annotations

import numpy as np
import pytest

from app.cam_overlay import colormap_lut, overlay_cam
from model.explain import METHODS, Explainer, cam_peak, pointing_game
from pipeline import store
from pipeline.store import patch_region_masks


@pytest.fixture(scope="module")
def run(tiny_run):
    return store.load_run(tiny_run)


@pytest.fixture(scope="module")
def model(run):
    import keras

    return keras.models.load_model(run.path / store.MODEL)


@pytest.fixture(scope="module")
def explainer(run, model):
    return Explainer(model, run.meta["cam_layer"])


@pytest.fixture(scope="module")
def sample(run):
    """Six patches, three of each label, as (rows, uint8 patches)."""
    t = run.table
    rows = np.concatenate([np.flatnonzero(t["label"].to_numpy() == lab)[[0, 7, 19]] for lab in (0, 1)])
    return rows, np.asarray(run.patches[rows])


def _is_normalised(cams):
    """Every map is either flat zeros or scaled so its maximum is exactly 1 (min 0)."""
    peak = cams.max(axis=(1, 2))
    return np.isin(peak, (0.0, 1.0)).all() and (cams.min(axis=(1, 2)) == 0).all()


# ------------------------------------------------------------------------------------- the methods
@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_returns_normalised_maps(explainer, sample, method):
    _, patches = sample
    n = 3 if method == "Score-CAM" else len(patches)  # Score-CAM is ~0.2 s per patch on 2 cores
    cams = explainer.cam(patches[:n], method=method)
    assert cams.shape == (n, 50, 50) and cams.dtype == np.float32
    assert np.isfinite(cams).all()
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    assert _is_normalised(cams)
    if method == "Grad-CAM":
        # The tiny model's maps for one class may all be flat (ReLU of a negative sum), but a patch's
        # two Grad-CAMs are ReLU(S) and ReLU(-S): one of them has a peak unless S is zero.
        other = explainer.cam(patches[:n], method=method, target=(explainer.predict(patches[:n]) < 0.5).astype(int))
        assert (np.maximum(cams.max(axis=(1, 2)), other.max(axis=(1, 2))) == 1.0).all()


@pytest.mark.parametrize("method", ["Grad-CAM", "Grad-CAM++"])
def test_batch_equals_one_patch_at_a_time(explainer, sample, method):
    _, patches = sample
    batch = explainer.cam(patches, method=method, target=1)
    single = np.concatenate([explainer.cam(p, method=method, target=1) for p in patches])  # (50,50,3) -> n=1
    np.testing.assert_allclose(batch, single, atol=1e-4)


def test_misclassified_patch_gets_a_cam(explainer, run):
    t = run.table
    predicted = (t["prob_uncalibrated"].to_numpy() >= 0.5).astype(int)
    wrong = np.flatnonzero(predicted != t["label"].to_numpy())
    assert len(wrong), "the tiny model should make some mistakes"
    row = int(wrong[0])
    patch = np.asarray(run.patches[row:row + 1])
    label, pred = int(t["label"].iloc[row]), int(predicted[row])

    explain_pred = explainer.cam(patch)  # target None = the predicted class
    explain_true = explainer.cam(patch, target=label)
    for cam in (explain_pred, explain_true):
        assert cam.shape == (1, 50, 50) and np.isfinite(cam).all() and _is_normalised(cam)
    np.testing.assert_array_equal(explain_pred, explainer.cam(patch, target=pred))
    # the two classes' Grad-CAMs are ReLU(S) and ReLU(-S): they cannot coincide unless S = 0
    assert not np.allclose(explain_pred, explain_true)
    assert max(explain_pred.max(), explain_true.max()) == 1.0


def test_per_patch_targets(explainer, sample):
    _, patches = sample
    mixed = explainer.cam(patches[:2], target=[1, 0])
    np.testing.assert_allclose(mixed[0], explainer.cam(patches[:1], target=1)[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], explainer.cam(patches[1:2], target=0)[0], atol=1e-5)


@pytest.fixture(scope="module")
def brightness_explainer():
    """A model whose evidence is known exactly: logit = 3 x mean brightness - 1, CAM layer on a 10x10 grid.

    Its CAM (for IDC) is the local brightness, so every method must peak where the patch is bright;
    it predicts IDC for bright patches and 'not IDC' for dark ones.
    """
    import keras

    inputs = keras.Input((50, 50, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.AveragePooling2D(5)(x)  # 10 x 10
    x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones",
                             bias_initializer=keras.initializers.Constant(-1.0))(x)
    return Explainer(keras.Model(inputs, out), "last_conv")


@pytest.mark.parametrize("method", list(METHODS))
def test_target_none_explains_each_patchs_predicted_class(brightness_explainer, method):
    patches = np.full((2, 50, 50, 3), 30, np.uint8)
    patches[0, 10:20, 30:40] = 240          # dark patch, bright square: predicted not IDC
    patches[1] = 220
    patches[1, 35:45, 5:15] = 20            # bright patch, dark square: predicted IDC
    assert (brightness_explainer.predict(patches) >= 0.5).tolist() == [False, True]
    auto = brightness_explainer.cam(patches, method=method)
    np.testing.assert_allclose(auto, brightness_explainer.cam(patches, method=method, target=[0, 1]), atol=1e-5)
    if METHODS[method].gradient_based:  # the 'not IDC' map is ReLU(-S): here zero, unlike the IDC map
        assert auto[0].max() == 0.0
        assert brightness_explainer.cam(patches[:1], method=method, target=1)[0].max() == 1.0


@pytest.mark.parametrize("method", list(METHODS))
def test_cam_points_at_the_evidence_and_follows_the_input(brightness_explainer, method):
    """A bright square on a dark patch: the peak lies in the square, and the map moves with it.

    (The tiny run's 2-epoch model cannot show this: in inference mode its batch-norm moving
    statistics are still near their initial values and its output is constant to ~1e-7 over all
    patches, so its CAMs depend on position, not content.)
    """
    patches = np.full((2, 50, 50, 3), 30, np.uint8)
    masks = np.zeros((2, 50, 50), bool)
    masks[0, 10:20, 30:40] = True   # top right (rows 10-19, cols 30-39)
    masks[1, 35:45, 5:15] = True    # bottom left
    patches[masks] = 240
    cams = brightness_explainer.cam(patches, method=method, target=1)
    assert pointing_game(cams, masks)["hit_rate"] == 1.0
    # and the map is low away from the square
    assert cams[0][masks[1]].max() < 0.2 and cams[1][masks[0]].max() < 0.2
    assert np.abs(cams[0] - cams[1]).max() > 0.5
    # one patch edited: the map changes where the patch changed
    edited = patches[:1].copy()
    edited[0, 10:20, 30:40] = 30
    edited[0, 35:45, 5:15] = 240
    np.testing.assert_allclose(brightness_explainer.cam(edited, method=method, target=1), cams[1:2], atol=1e-5)


def test_constant_patch_gives_finite_maps(explainer):
    white = np.full((2, 50, 50, 3), 255, np.uint8)
    black = np.zeros((1, 50, 50, 3), np.uint8)
    for method in METHODS:
        for patch in (white[:1], black):
            cam = explainer.cam(patch, method=method)
            assert cam.shape == (1, 50, 50) and np.isfinite(cam).all() and _is_normalised(cam)
    assert explainer.cam(white[:0]).shape == (0, 50, 50)


def test_flat_cam_is_all_zeros_not_nan():
    """A model whose score ignores the CAM layer (zero head weights): zero gradients -> zeros, no NaN."""
    import keras

    inputs = keras.Input((50, 50, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros")(x)
    flat = Explainer(keras.Model(inputs, out), "last_conv")
    patches = np.random.default_rng(0).integers(0, 256, (2, 50, 50, 3), dtype=np.uint8)
    for method in ("Grad-CAM", "Grad-CAM++"):
        cam = flat.cam(patches, method=method, target=1)
        assert cam.shape == (2, 50, 50) and not np.isnan(cam).any()
        assert (cam == 0).all()


def test_explainer_leaves_the_model_alone_and_matches_the_scores(run, model, explainer, sample):
    rows, patches = sample
    probs = np.asarray(model(patches.astype(np.float32), training=False))[:, 0]
    assert (probs > 0).all() and (probs < 1).all()  # still a sigmoid: the linear clone is separate
    np.testing.assert_allclose(explainer.predict(patches), probs, atol=1e-5)
    np.testing.assert_allclose(explainer.predict(patches), run.table["prob_uncalibrated"].to_numpy()[rows], atol=1e-4)


def test_invalid_arguments(explainer, model, sample):
    _, patches = sample
    with pytest.raises(ValueError, match="Grad-CAM"):
        explainer.cam(patches[:1], method="LIME")
    with pytest.raises(ValueError, match="target"):
        explainer.cam(patches[:1], target=2)
    with pytest.raises(ValueError, match="target"):
        explainer.cam(patches[:2], target=[1])
    with pytest.raises(ValueError, match="shape"):
        explainer.cam(patches[:, :, :, :2])
    with pytest.raises(ValueError, match=r"\(n, 50, 50, 3\) \(the model's input\)"):
        explainer.cam(patches[:, :40, :40])  # the patch side is the model's input side
    with pytest.raises(ValueError, match="no_such_layer"):
        Explainer(model, "no_such_layer")
    with pytest.raises(ValueError, match="batch, h, w"):
        Explainer(model, "idc_probability")


# ------------------------------------------------------------------------------------- overlay
def test_overlay_cam(sample):
    _, patches = sample
    patch = patches[0]
    cam = np.tile(np.linspace(0, 1, 50, dtype=np.float32), (50, 1))
    out = overlay_cam(patch, cam)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert not np.array_equal(out, patch)
    np.testing.assert_array_equal(overlay_cam(patch, cam, alpha=0.0), patch)
    # alpha 1 shows only the colormap: jet runs dark blue -> dark red
    only = overlay_cam(patch, np.zeros((50, 50)), alpha=1.0)
    assert (only == np.array([0, 0, 128], np.uint8)).all()
    assert (overlay_cam(patch, np.ones((50, 50)), alpha=1.0) == np.array([128, 0, 0], np.uint8)).all()
    half = overlay_cam(patch, np.zeros((50, 50)), alpha=0.5).astype(int)
    assert np.abs(half - (patch.astype(int) + np.array([0, 0, 128])) / 2).max() <= 1
    # a batch of patches with a batch of maps
    assert overlay_cam(patches[:2], np.stack([cam, cam])).shape == (2, 50, 50, 3)
    with pytest.raises(ValueError):
        overlay_cam(patch, cam[:10])
    with pytest.raises(ValueError):
        overlay_cam(patch, cam, alpha=1.5)
    with pytest.raises(ValueError):
        overlay_cam(patch, cam, colormap="no-such-map")


def test_colormap_lut():
    jet = colormap_lut("jet")
    assert jet.shape == (256, 3) and jet.dtype == np.uint8
    assert tuple(jet[128]) == (125, 255, 122)  # matplotlib: jet(0.5) = (0.490, 1.0, 0.478)
    assert tuple(colormap_lut("gray")[200]) == (200, 200, 200)


# ------------------------------------------------------------------------------------- pointing game
def test_cam_peak_is_row_col():
    cam = np.zeros((50, 50))
    cam[12, 40] = 1.0
    assert cam_peak(cam) == (12, 40)
    with pytest.raises(ValueError):
        cam_peak(np.zeros((2, 50, 50)))


def test_pointing_game_exact():
    n = 4
    cams = np.zeros((n, 50, 50), np.float32)
    masks = np.zeros((n, 50, 50), bool)
    masks[:, 10:20, 30:40] = True             # the region: rows 10-19, cols 30-39 (4% of the patch)
    cams[0, 15, 35] = 1.0                      # inside -> hit
    cams[1, 35, 15] = 1.0                      # row/col swapped -> miss
    cams[2, 19, 39] = 0.9                      # inside corner -> hit
    cams[2, 0, 0] = 0.5
    # cams[3] is flat (all zeros): a miss even though a flat argmax would land on (0, 0)
    masks[3, 0, 0] = True
    res = pointing_game(cams, masks)
    assert res["n"] == 4
    assert res["hits"].tolist() == [True, False, True, False]
    assert res["hit_rate"] == 0.5
    assert res["flat"] == 1
    assert res["chance"] == pytest.approx((3 * 100 + 101) / (4 * 2500))
    assert res["peaks"].tolist() == [[15, 35], [35, 15], [19, 39], [0, 0]]
    with pytest.raises(ValueError):
        pointing_game(cams, masks[:2])
    assert pointing_game(cams[:0], masks[:0])["n"] == 0


def test_region_masks_line_up_with_patches(run, explainer):
    """Cropped true regions agree with the patch labels, and a CAM equal to the region always hits."""
    t = run.table
    rows = np.concatenate([np.flatnonzero(t["label"].to_numpy() == lab)[:40] for lab in (0, 1)])
    masks, known = patch_region_masks(run.path, t.iloc[rows])
    assert known.all() and masks.shape == (80, 50, 50) and masks.dtype == bool
    share = masks.mean(axis=(1, 2))
    assert share[40:].mean() > share[:40].mean() + 0.3  # IDC patches lie mostly inside the region
    sel = masks.any(axis=(1, 2)) & ~masks.all(axis=(1, 2))
    oracle = pointing_game(masks[sel].astype(np.float32), masks[sel])
    assert oracle["hit_rate"] == 1.0
    assert pointing_game((~masks[sel]).astype(np.float32), masks[sel])["hit_rate"] == 0.0
    # and the real CAMs go through the same check
    cams = explainer.cam(np.asarray(run.patches[rows[sel]]), target=1)
    res = pointing_game(cams, masks[sel])
    assert res["n"] == int(sel.sum()) and len(res["hits"]) == res["n"]
    # patients without a mask (real data) are reported as unknown, not as empty regions
    fake = t.iloc[rows[:2]].assign(patient_id="no-such-patient")
    assert not patch_region_masks(run.path, fake)[1].any()


def test_evidence_against_idc_differs_from_evidence_for_idc(explainer, sample):
    """The model's own call on a false or true negative is the map against IDC (target 0): on the real
    tiny model it is another map than the evidence for IDC, not the same one recoloured."""
    from model.explain import EVIDENCE_AGAINST_IDC, EVIDENCE_FOR_IDC

    _, patches = sample
    for_idc = explainer.cam(patches, target=EVIDENCE_FOR_IDC)
    against = explainer.cam(patches, target=EVIDENCE_AGAINST_IDC)
    assert for_idc.shape == against.shape == (len(patches), 50, 50)
    assert not np.allclose(for_idc, against)
    shown = np.maximum(for_idc.max(axis=(1, 2)), against.max(axis=(1, 2))) > 0  # patches with any evidence
    assert shown.any()
    assert (np.abs(for_idc - against).max(axis=(1, 2))[shown] > 0.5).all()
    # Where the evidence for IDC is strongest, the evidence against it is weak, and the other way round.
    for f, a in zip(for_idc[shown], against[shown]):
        if f.max() == 1.0:
            assert a[np.unravel_index(np.argmax(f), f.shape)] < 0.5
        if a.max() == 1.0:
            assert f[np.unravel_index(np.argmax(a), a.shape)] < 0.5
