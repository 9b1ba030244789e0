"""Slide geometry and overlay composition (app.slides, app.overlays): pure NumPy, no Streamlit."""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app import overlays, slides

P = slides.PATCH


def naive_rebuild(patches, x, y, width, height):
    """The obvious per-patch loop, as the reference for the vectorised version."""
    h, w = slides.slide_shape(x, y, width, height)
    out = np.full((h, w, 3), 255, np.uint8)
    for patch, xi, yi, wi, hi in zip(patches, x, y, width, height):
        out[yi - 1:yi - 1 + hi, xi - 1:xi - 1 + wi] = patch[:hi, :wi]
    return out


@pytest.fixture
def small_slide():
    """Five patches on a 3 x 3 grid with holes; two edge patches are narrower/shorter than 50 px."""
    rng = np.random.default_rng(0)
    x = np.array([1, 51, 101, 1, 101])
    y = np.array([1, 1, 1, 101, 101])
    width = np.array([50, 50, 23, 50, 23])
    height = np.array([50, 50, 50, 17, 17])
    patches = rng.integers(0, 200, size=(5, P, P, 3), dtype=np.uint8)
    return patches, x, y, width, height


def test_rebuild_matches_a_per_patch_loop_and_whitens_padding(small_slide):
    patches, x, y, width, height = small_slide
    slide = slides.rebuild_slide(patches, x, y, width, height)
    assert slide.shape == (117, 123, 3)  # true extent: 100 + 17 rows, 100 + 23 columns
    np.testing.assert_array_equal(slide, naive_rebuild(*small_slide))
    assert (slide[50:100, 0:50] == 255).all()  # the missing patch (x 1, y 51) is white background
    np.testing.assert_array_equal(slide[0:50, 50:100], patches[1])


def test_rebuild_rejects_coordinates_off_the_grid(small_slide):
    patches, x, y, width, height = small_slide
    with pytest.raises(ValueError, match="multiple of 50"):
        slides.rebuild_slide(patches, x + 3, y, width, height)


def test_cell_grid_places_values_and_leaves_nan_elsewhere(small_slide):
    _, x, y, width, height = small_slide
    shape = slides.grid_shape(x, y, width, height)
    assert shape == (3, 3)
    grid = slides.cell_grid(x, y, np.arange(5, dtype=float), shape)
    expected = np.array([[0, 1, 2], [np.nan, np.nan, np.nan], [3, np.nan, 4]])
    np.testing.assert_array_equal(grid, expected)


def test_neighbourhood_is_a_white_padded_crop_of_the_slide(small_slide):
    slide = slides.rebuild_slide(*small_slide)
    around = slides.neighbourhood(slide, 1, 1)  # top-left patch: its upper and left neighbours are off-slide
    assert around.shape == (150, 150, 3)
    assert (around[:50] == 255).all() and (around[:, :50] == 255).all()
    np.testing.assert_array_equal(around[50:100, 50:100], small_slide[0][0])


def test_upscale_keeps_pixels_crisp():
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = slides.upscale_nearest(image, 3)
    assert big.shape == (6, 6, 3)
    np.testing.assert_array_equal(big[:3, :3], np.broadcast_to(image[0, 0], (3, 3, 3)))


def test_region_under_patch_outline_follows_the_region_not_the_patch_edge():
    mask = np.zeros((150, 150), bool)
    mask[:, :70] = True  # the region runs on above and below the middle patch and ends at column 70
    crop = slides.region_under_patch(mask, 51, 51, margin=1)
    assert crop.shape == (52, 52)
    border = slides.outline(crop)[1:-1, 1:-1]
    assert border[:, 19].all() and not border[:, :19].any()  # column 70 - 51 = 19 of the patch only
    assert slides.region_under_patch(None, 1, 1) is None


def test_region_contour_traces_a_square():
    mask = np.zeros((200, 200), bool)
    mask[40:120, 60:160] = True
    xs, ys = slides.region_contour(mask, step=4)
    assert np.nanmin(xs) == pytest.approx(58, abs=4) and np.nanmax(xs) == pytest.approx(158, abs=4)
    assert np.nanmin(ys) == pytest.approx(38, abs=4) and np.nanmax(ys) == pytest.approx(118, abs=4)


def rows_frame(x, y, label, prob):
    return pd.DataFrame({"x": x, "y": y, "label": label, "prob": prob})


def test_overlays_colour_cells_by_outcome_and_probability():
    rows = rows_frame([1, 51, 1, 51], [1, 1, 51, 51], [0, 0, 1, 1], [0.1, 0.9, 0.2, 0.8])
    errors = overlays.build("Errors (TP/FP/FN/TN)", rows, 0.5, (2, 2))
    np.testing.assert_array_equal(errors.grid, [[0, 1], [2, 3]])  # TN FP / FN TP
    rgb, visible = overlays.cell_colours(errors)
    assert visible.all()
    assert tuple(rgb[0, 1]) == overlays.hex_to_rgb(overlays.OUTCOME_COLOURS["FP"])
    truth = overlays.build("Ground truth", rows, 0.5, (2, 2))
    np.testing.assert_array_equal(np.isnan(truth.grid), [[True, True], [False, False]])
    prob = overlays.build("Probability", rows, 0.5, (2, 2))
    rgb, _ = overlays.cell_colours(prob)
    assert tuple(rgb[0, 0]) != tuple(rgb[0, 1])  # continuous ramp
    alone = overlays.build(overlays.PATCH_ALONE, rows.assign(prob_patch=[0.7, 0.3, 0.2, 0.8]), 0.5, (2, 2))
    np.testing.assert_allclose(alone.grid, [[0.7, 0.3], [0.2, 0.8]])  # the CNN's own scores, not prob
    reviews = overlays.build("Reviews", rows, 0.5, (2, 2), review_verdicts=["", "label_wrong", "", "agree"])
    assert np.isnan(reviews.grid[0, 0]) and reviews.grid[0, 1] == 1 and reviews.grid[1, 1] == 0
    with pytest.raises(ValueError, match="unknown overlay"):
        overlays.build("Nope", rows, 0.5, (2, 2))


def test_compose_blends_overlay_cells_over_their_pixels_and_exports_png(small_slide):
    patches, x, y, width, height = small_slide
    slide = slides.rebuild_slide(*small_slide)
    rows = rows_frame(x, y, [1, 0, 0, 0, 0], [0.9, 0.1, 0.1, 0.1, 0.1])
    truth = overlays.build("Ground truth", rows, 0.5, slides.grid_shape(x, y, width, height))
    out = overlays.compose(slide, [truth], opacity=1.0)
    assert out.shape == slide.shape and out.dtype == np.uint8
    assert (out[:50, :50] == overlays.hex_to_rgb(overlays.IDC_COLOUR)).all()  # opaque overlay on the IDC patch
    np.testing.assert_array_equal(out[:, 50:], slide[:, 50:])  # untouched elsewhere
    half = overlays.compose(slide, [truth], opacity=0.5)
    expected = np.rint(0.5 * slide[:50, :50] + 0.5 * np.array(overlays.hex_to_rgb(overlays.IDC_COLOUR)))
    np.testing.assert_allclose(half[:50, :50], expected, atol=1)
    mask = np.zeros(slide.shape[:2], bool)
    mask[10:40, 10:40] = True
    outlined = overlays.compose(slide, [], opacity=0.5, region_mask=mask)
    assert (outlined[10, 20] == overlays.hex_to_rgb(overlays.REGION_OUTLINE_COLOUR)).all()
    png = Image.open(io.BytesIO(slides.png_bytes(slides.side_by_side([out, half]))))
    assert png.size == (2 * slide.shape[1] + 20, slide.shape[0])


def test_heatmaps_stay_off_the_padding_of_edge_patches(small_slide):
    patches, _, _, width, height = small_slide
    tinted = np.zeros_like(patches)
    kept = slides.only_inside_patches(tinted, patches, width, height)
    assert (kept[2, :, :23] == 0).all() and (kept[2, :, 23:] == patches[2, :, 23:]).all()  # 23 px wide
    assert (kept[4, 17:] == patches[4, 17:]).all() and (kept[0] == 0).all()
