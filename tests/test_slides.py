"""Slide geometry and overlay composition (app.slides, app.overlays): pure NumPy, no Streamlit."""
import io
from pathlib import Path

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
    errors = overlays.build("Errors (TP/FP/FN/TN)", rows, 0.5, (2, 2), show_tn=True)
    np.testing.assert_array_equal(errors.grid, [[0, 1], [2, 3]])  # TN FP / FN TP
    rgb, visible = overlays.cell_colours(errors)
    assert visible.all()
    assert tuple(rgb[0, 1]) == overlays.hex_to_rgb(overlays.OUTCOME_COLOURS["FP"])
    assert tuple(rgb[0, 0]) == overlays.hex_to_rgb(overlays.OUTCOME_COLOURS["TN"])
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


def test_true_negatives_are_clear_by_default_and_the_legend_says_so(small_slide):
    rows = rows_frame([1, 51, 1, 51], [1, 1, 51, 51], [0, 0, 1, 1], [0.1, 0.9, 0.2, 0.8])
    errors = overlays.build(overlays.ERRORS, rows, 0.5, (2, 2))
    np.testing.assert_array_equal(errors.grid, [[np.nan, 1], [2, 3]])  # TN transparent, codes unchanged
    _, visible = overlays.cell_colours(errors)
    np.testing.assert_array_equal(visible, [[False, True], [True, True]])
    assert errors.labels[0] == overlays.TN_CLEAR_LABEL and "clear" in errors.labels[0]
    assert errors.colours[0] == overlays.CLEAR_COLOUR  # its legend square is white: the glass shows
    assert [lab.split(":")[0] for lab in errors.labels] == ["TN", "FP", "FN", "TP"]
    # and the PNG export leaves a TN cell's pixels as they are
    patches, x, y, width, height = small_slide
    slide = slides.rebuild_slide(*small_slide)
    tn_only = overlays.build(overlays.ERRORS, rows_frame(x, y, [0] * 5, [0.1] * 5), 0.5, (3, 3))
    np.testing.assert_array_equal(overlays.compose(slide, [tn_only], opacity=1.0), slide)


@pytest.mark.parametrize("width_px, mpp, expected", [
    (2000, 4.0, 1000),   # an 8 mm slide: 1 mm (1/8)
    (1000, 4.0, 500),    # 4 mm: 0.5 mm (1/8)
    (300, 4.0 / 6, 20),  # one 50-px patch enlarged 6x (200 µm): 20 µm (1/10)
    (150 * 2, 4.0 / 2, 100),  # 3 x 3 patches (600 µm): 100 µm
    (5000, 4.0, 2000),   # 20 mm: 2 mm (1/10: the 1-2-5 steps cannot always land in 1/5 to 1/8)
])
def test_scale_bar_length_is_the_largest_round_length_within_a_fifth_of_the_width(width_px, mpp, expected):
    assert slides.scale_bar_length(width_px, mpp) == expected
    share = expected / (width_px * mpp)
    assert 1 / 12.5 <= share <= 1 / 5


def test_scale_bar_lengths_stay_near_the_aim_over_every_width():
    for width_px in np.geomspace(20, 100_000, 200):
        um = slides.scale_bar_length(width_px, 4.0)
        assert um in slides.SCALE_BAR_LENGTHS_UM
        assert 1 / 12.5 <= um / (width_px * 4.0) <= 1 / 5  # 1-2-5 steps are at most 2.5 apart
    assert slides.length_text(1000) == "1 mm" and slides.length_text(200) == "200 µm"
    assert slides.length_text(2500) == "2.5 mm"
    with pytest.raises(ValueError, match="positive"):
        slides.scale_bar_length(100, 0)


def test_drawn_scale_bar_has_its_exact_length_in_pixels():
    image = np.full((300, 300, 3), 128, np.uint8)
    out, text = slides.draw_scale_bar(image, 4.0 / 6)  # a patch enlarged 6x
    black = (out == 0).all(axis=-1)
    rows = np.flatnonzero(black.any(axis=1))
    lengths = black[rows].sum(axis=1)
    um = slides.scale_bar_length(300, 4.0 / 6)
    assert text == slides.length_text(um)
    assert (lengths == round(um / (4.0 / 6))).all()  # every row of the bar: its length / (µm per pixel)
    assert rows.min() > 250 and black[:, :5].sum() == 0  # bottom left, clear of the edge
    assert (image == 128).all()  # a copy: the input is untouched


# ------------------------------------------------------------------------------------- issue 11: the viewer
DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "idc_dev"
DENSE = "9078"  # a near-complete real slide (../shared/data/idc_dev/README.md) with edge patches at its corner
WINDOW = (2501, 1501)  # its bottom-right corner: the 285 patches with x and y at least these


def read_dense_corner():
    """The real patches of the dense patient's bottom-right corner as the store holds them: padded to
    50 x 50 with white, their true size beside (what ingest writes)."""
    from pipeline.names import parse_patch_name

    if not (DEV / DENSE).is_dir():
        pytest.skip(f"real dense patient {DENSE} not found under {DEV} (../shared/data/idc_dev beside the project)")
    found = []
    for path in sorted((DEV / DENSE).glob("*/*.png")):
        name = parse_patch_name(path.name)
        if name.x >= WINDOW[0] and name.y >= WINDOW[1]:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            padded = np.full((P, P, 3), 255, np.uint8)
            padded[:rgb.shape[0], :rgb.shape[1]] = rgb
            found.append((name.x, name.y, rgb.shape[1], rgb.shape[0], name.label, padded, rgb))
    x, y, width, height, label, patches, originals = zip(*found)
    return (np.array(x), np.array(y), np.array(width), np.array(height), np.array(label), np.stack(patches),
            list(originals))


@pytest.fixture(scope="module")
def dense_corner():
    return read_dense_corner()


def test_real_dense_slide_patches_and_overlay_cells_line_up_pixel_exactly(dense_corner):
    x, y, width, height, label, patches, originals = dense_corner
    assert len(x) > 50 and ((width < P) | (height < P)).sum() >= 2  # the corner holds real edge patches
    slide = slides.rebuild_slide(patches, x, y, width, height)
    # The frame ends where the edge patches end: at their true size, not padded to 50 px.
    assert slide.shape[:2] == (int((y - 1 + height).max()), int((x - 1 + width).max()))
    assert slide.shape[0] % P and slide.shape[1] % P
    shape = slides.grid_shape(x, y, width, height)
    cells = slides.cell_grid(x, y, np.arange(len(x), dtype=float), shape)
    for i, original in enumerate(originals):
        # the patch's pixels sit at (y-1, x-1) at their true size, exactly as scanned ...
        np.testing.assert_array_equal(slide[y[i] - 1:y[i] - 1 + height[i], x[i] - 1:x[i] - 1 + width[i]], original)
        # ... and its overlay cell (row, col) maps to that same block
        r, c = (y[i] - 1) // P, (x[i] - 1) // P
        assert cells[r, c] == i
        np.testing.assert_array_equal(slide[r * P:(r + 1) * P, c * P:(c + 1) * P], original)
    # The far corner of the grid is as exact as the near one: no drift to the bottom right.
    rows = pd.DataFrame({"x": x, "y": y, "label": label, "prob": np.where(label == 1, 0.9, 0.1)})
    truth = overlays.build("Ground truth", rows, 0.5, shape)
    painted = overlays.compose(slide, [truth], opacity=1.0)
    idc = (painted == overlays.hex_to_rgb(overlays.IDC_COLOUR)).all(axis=-1)
    expected = np.zeros(slide.shape[:2], bool)
    for xi, yi, wi, hi, li in zip(x, y, width, height, label):
        expected[yi - 1:yi - 1 + hi, xi - 1:xi - 1 + wi] |= bool(li)
    np.testing.assert_array_equal(idc, expected)


def test_slide_figure_places_image_overlays_and_patches_on_one_pixel_grid(dense_corner):
    from app import charts, selection, ui

    x, y, width, height, label, patches, _ = dense_corner
    slide = slides.rebuild_slide(patches, x, y, width, height)
    h, w = slide.shape[:2]
    shape = slides.grid_shape(x, y, width, height)
    rows = pd.DataFrame({"x": x, "y": y, "label": label, "prob": np.linspace(0, 1, len(x))},
                        index=np.arange(100, 100 + len(x)))
    uri = slides.jpeg_data_uri(slide)
    assert Image.open(io.BytesIO(__import__("base64").b64decode(uri.split(",", 1)[1]))).size == (w, h)
    errors = overlays.build(overlays.ERRORS, rows, 0.5, shape)
    fig = charts.slide_figure(uri, (h, w), rows, selection.outcome_names(label, rows["prob"], 0.5),
                              [("", [errors])], 0.4, selected_xy=(int(x[0]), int(y[0])))
    ui.add_scale_bar(fig, (h, w), 4.0)
    image = next(t for t in fig.data if t.type == "image")
    assert (image.x0, image.dx, image.y0, image.dy) == (0, 1, 0, 1)  # pixel i centred at i: spans i +- 0.5
    heat = next(t for t in fig.data if t.type == "heatmap")
    assert np.asarray(heat.z).shape == shape
    # cell (r, c) spans [50c - 0.5, 50c + 49.5]: exactly the pixels 50c .. 50c + 49 of its patch
    assert (heat.x0 - heat.dx / 2, heat.dx, heat.y0 - heat.dy / 2, heat.dy) == (-0.5, P, -0.5, P)
    # Edge patches: the overlay's last column and row end where the slide ends (their true size).
    ui.fit_overlays_to_slide(fig, (h, w))
    heat = next(t for t in fig.data if t.type == "heatmap")
    assert heat.x0 is None and heat.dx is None
    np.testing.assert_array_equal(heat.x[:-1], np.arange(shape[1]) * P - 0.5)
    np.testing.assert_array_equal(heat.y[:-1], np.arange(shape[0]) * P - 0.5)
    assert (heat.x[-1], heat.y[-1]) == (w - 0.5, h - 0.5)
    edge = int(np.argmax(width < P))
    assert heat.x[-1] - heat.x[-2] == width[edge] and (x[edge] - 1) // P == shape[1] - 1  # the 12-px column
    markers = next(t for t in fig.data if t.name == "patches")
    np.testing.assert_array_equal(markers.x, x - 1 + (P - 1) / 2)  # each patch's centre pixel
    np.testing.assert_array_equal(markers.y, y - 1 + (P - 1) / 2)
    highlight = next(t for t in fig.data if t.name == "selected patch")
    assert (min(highlight.x), max(highlight.x)) == (x[0] - 1.5, x[0] - 1.5 + P)
    # The slide fits the view on open: the axes span exactly the slide, y downwards, square pixels.
    assert tuple(fig.layout.xaxis.range) == (-0.5, w - 0.5)
    assert tuple(fig.layout.yaxis.range) == (h - 0.5, -0.5)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.constrain == "domain"
    assert charts.SLIDE_HEIGHT_RANGE_PX[0] <= fig.layout.height <= charts.SLIDE_HEIGHT_RANGE_PX[1]
    # The scale bar lies on the slide, a fifth of its width at most, its length true in µm.
    bar = [s for s in fig.layout.shapes if s.name == "scale bar"]
    assert bar and all(0 <= s.x0 < s.x1 <= w and 0 <= s.y0 <= h for s in bar)
    um = slides.scale_bar_length(w, 4.0)
    assert bar[0].x1 - bar[0].x0 == pytest.approx(um / 4.0) and um <= w * 4.0 / 5
    assert any(a.text == f"<b>{slides.length_text(um)}</b>" for a in fig.layout.annotations)
