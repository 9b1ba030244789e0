"""Overlays on a slide: one value per 50-px patch cell, drawn in the browser and in the PNG export.

Pure NumPy, no Streamlit or Plotly. An :class:`Overlay` is a (rows, columns) grid (NaN where
transparent) plus its colours, so the interactive view (``app.charts``) and the server-side PNG
export (:func:`compose`) draw exactly the same thing. Categorical colours come from the Okabe-Ito
palette, which stays distinguishable with the common colour-vision deficiencies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app import slides
from app.selection import OUTCOMES, outcome_codes
from pipeline.compare_runs import AGREEMENT, agreement_outcomes

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73", "yellow": "#F0E442",
    "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7", "black": "#000000",
}
OUTCOME_COLOURS = {  # errors in the warm colours, correct calls in the cool ones
    "TN": OKABE_ITO["sky_blue"], "FP": OKABE_ITO["orange"],
    "FN": OKABE_ITO["reddish_purple"], "TP": OKABE_ITO["bluish_green"],
}
IDC_COLOUR = OKABE_ITO["vermillion"]
REGION_OUTLINE_COLOUR = OKABE_ITO["black"]
REVIEW_COLOURS = {"agree": OKABE_ITO["blue"], "label_wrong": OKABE_ITO["yellow"], "unsure": OKABE_ITO["black"]}
# Cividis: perceptually uniform and readable with colour-vision deficiencies (Nuñez et al. 2018).
PROBABILITY_RAMP = ("#00224e", "#123570", "#3b496c", "#575d6d", "#707173",
                    "#8a8678", "#a59c74", "#c3b369", "#e1cc55", "#fee838")

# Two runs on one slide (the Compare runs page): which run's call is right where they disagree, in
# the two colours Okabe & Ito pair for contrast; where they agree, green (both right) or purple (both wrong).
AGREEMENT_COLOURS = {
    "A only right": OKABE_ITO["orange"], "B only right": OKABE_ITO["blue"],
    "both right": OKABE_ITO["bluish_green"], "both wrong": OKABE_ITO["reddish_purple"],
}
DISAGREEMENT = "Disagreement (A vs B)"

OVERLAY_NAMES = ("Ground truth", "Prediction", "Probability", "Errors (TP/FP/FN/TN)", "Reviews")
ERRORS = OVERLAY_NAMES[3]
# True negatives are most of a slide and need no attention: by default they stay clear (no colour),
# so the eye goes to the errors and the IDC found. Their legend entry says so, in white (= clear).
CLEAR_COLOUR = "#FFFFFF"
OUTCOME_LABELS = {"TN": "TN: correct non-IDC", "FP": "FP: false positive", "FN": "FN: false negative",
                  "TP": "TP: IDC found"}
TN_CLEAR_LABEL = "TN: left clear (correct non-IDC)"
# Runs with neighbourhood context also offer the CNN's own view, to see what the context changed.
PATCH_ALONE = "Probability, patch alone"


@dataclass(frozen=True)
class Overlay:
    """A patch-resolution layer: ``grid`` holds a category index (categorical) or a value in [0, 1]."""

    name: str
    grid: np.ndarray  # (rows, columns) float, NaN = transparent
    colours: tuple[str, ...]  # categorical: colour of category i; continuous: ramp from 0 to 1
    labels: tuple[str, ...] = ()  # legend text of each category (categorical only)
    categorical: bool = True


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def build(name: str, rows, threshold: float, shape: tuple[int, int], review_verdicts=None,
          show_tn: bool = False) -> Overlay:
    """The overlay called ``name`` (one of OVERLAY_NAMES) for one patient's rows at ``threshold``.

    rows: the patient's table rows (x, y, label, prob); review_verdicts: the latest verdict per
    row (aligned with ``rows``, '' where not reviewed), needed only for "Reviews". ``show_tn``:
    colour the true negatives in the errors overlay too (by default they are left clear).
    """
    x, y = rows["x"].to_numpy(), rows["y"].to_numpy()
    label, prob = rows["label"].to_numpy(), rows["prob"].to_numpy()

    def only(flag):  # category 0 where flagged, transparent elsewhere
        return slides.cell_grid(x, y, np.where(flag, 0.0, np.nan), shape)

    if name == "Ground truth":
        return Overlay(name, only(label == 1), (IDC_COLOUR,), ("IDC (label)",))
    if name == "Prediction":
        return Overlay(name, only(prob >= threshold), (IDC_COLOUR,), (f"IDC predicted (P ≥ {threshold:.3f})",))
    if name in ("Probability", PATCH_ALONE):
        values = rows["prob_patch" if name == PATCH_ALONE else "prob"].to_numpy(np.float64)
        return Overlay(name, slides.cell_grid(x, y, values, shape), PROBABILITY_RAMP, categorical=False)
    if name == ERRORS:
        codes = outcome_codes(label, prob, threshold).astype(np.float64)
        codes[codes < 0] = np.nan  # unlabelled patches have no outcome: transparent
        colours = [OUTCOME_COLOURS[o] for o in OUTCOMES]
        labels = [OUTCOME_LABELS[o] for o in OUTCOMES]
        if not show_tn:  # codes keep their meaning (0 = TN); only the TN cells become transparent
            codes[codes == OUTCOMES.index("TN")] = np.nan
            colours[OUTCOMES.index("TN")], labels[OUTCOMES.index("TN")] = CLEAR_COLOUR, TN_CLEAR_LABEL
        return Overlay(name, slides.cell_grid(x, y, codes, shape), tuple(colours), tuple(labels))
    if name == "Reviews":
        verdicts = tuple(REVIEW_COLOURS)
        lookup = {v: float(i) for i, v in enumerate(verdicts)}
        codes = np.array([lookup.get(v, np.nan) for v in review_verdicts], np.float64)
        return Overlay(name, slides.cell_grid(x, y, codes, shape), tuple(REVIEW_COLOURS.values()),
                       tuple(f"review: {v}" for v in verdicts))
    raise ValueError(f"unknown overlay {name!r}; choose from {', '.join((*OVERLAY_NAMES, PATCH_ALONE))}")


def disagreement(rows, prob_a, prob_b, threshold_a: float, threshold_b: float, shape: tuple[int, int],
                 agreeing: bool = True) -> Overlay:
    """The "Disagreement (A vs B)" overlay: per patch, which of two runs' calls is right (A at
    ``threshold_a``, B at ``threshold_b``; pipeline.compare_runs.agreement_outcomes).

    rows: one patient's table rows (x, y, label); prob_a, prob_b: the runs' probabilities aligned
    with them (NaN where a run did not score the patch: transparent). ``agreeing=False`` leaves the
    patches where both runs make the same call transparent, so only the disagreements are coloured.
    """
    codes = agreement_outcomes(rows["label"].to_numpy(), prob_a, prob_b, threshold_a, threshold_b).astype(np.float64)
    codes[codes < 0] = np.nan
    if not agreeing:
        codes[codes >= AGREEMENT.index("both right")] = np.nan
    return Overlay(DISAGREEMENT, slides.cell_grid(rows["x"].to_numpy(), rows["y"].to_numpy(), codes, shape),
                   tuple(AGREEMENT_COLOURS[a] for a in AGREEMENT), AGREEMENT)


def cell_colours(overlay: Overlay) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns, 3) float RGB of every cell and the (rows, columns) mask of visible cells."""
    grid = overlay.grid
    visible = ~np.isnan(grid)
    palette = np.array([hex_to_rgb(c) for c in overlay.colours], np.float64)
    values = np.where(visible, grid, 0.0)
    if overlay.categorical:
        rgb = palette[np.clip(values.astype(np.int64), 0, len(palette) - 1)]
    else:
        stops = np.linspace(0.0, 1.0, len(palette))
        v = np.clip(values, 0.0, 1.0)
        rgb = np.stack([np.interp(v, stops, palette[:, ch]) for ch in range(3)], axis=-1)
    return rgb, visible


def compose(slide_rgb: np.ndarray, overlays: list[Overlay], opacity: float,
            region_mask: np.ndarray | None = None) -> np.ndarray:
    """The slide with overlays blended in (each cell upsampled to its 50x50 pixels) as uint8 RGB.

    Overlays are blended in order at ``opacity``; the true-region outline (synthetic runs) is drawn
    last, opaque, 3 px wide, so it stays visible over every overlay.
    """
    h, w = slide_rgb.shape[:2]
    gh, gw = -(-h // slides.PATCH), -(-w // slides.PATCH)
    # Overlays are constant over a cell, so blending them all reduces to one per-cell affine map
    # pixel -> keep * pixel + add, applied to the slide in a single broadcast pass.
    keep = np.ones((gh, gw, 1), np.float32)
    add = np.zeros((gh, gw, 3), np.float32)
    for overlay in overlays:
        rgb, visible = cell_colours(overlay)
        alpha = (visible * opacity)[:gh, :gw, None].astype(np.float32)
        keep *= 1 - alpha
        add = add * (1 - alpha) + alpha * rgb[:gh, :gw]
    padded = slides.crop(slide_rgb, 0, 0, gh * slides.PATCH, gw * slides.PATCH)
    blended = padded.reshape(gh, slides.PATCH, gw, slides.PATCH, 3).astype(np.float32)
    blended *= keep[:, None, :, None]  # in place: a full slide is ~100 MB as float32
    blended += add[:, None, :, None]  # a convex combination of 0..255 values, so no clipping needed
    out = np.rint(blended, out=blended).astype(np.uint8).reshape(padded.shape)[:h, :w]
    if region_mask is not None:
        border = slides.crop(slides.outline(region_mask, thickness=3), 0, 0, h, w, fill=False)
        out = slides.paint(out, border, hex_to_rgb(REGION_OUTLINE_COLOUR))
    return out
