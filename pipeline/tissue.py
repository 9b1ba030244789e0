"""Tissue detection and patch labelling for whole-slide images: pure NumPy, no slide I/O.

The slide reader (pipeline/wsi.py) hands these functions arrays; they know nothing of files.

* :func:`tissue_mask`: Otsu's threshold on HSV saturation of a thumbnail. Glass is bright and grey
  (saturation near 0) and H&E-stained tissue is pink-purple (saturation well above), so one global
  threshold on saturation separates them on any stain intensity; specks (dust, debris) and small
  holes (lumens, fat vacuoles, which are tissue for patching) are then removed.
* :func:`block_fraction`: the share of each patch cell a mask covers, for the tissue threshold
  (``--min-tissue``) and the IDC label (overlap with the annotated regions).
* :func:`rasterise_regions`: annotated polygons (holes included) drawn into a mask.
"""
from __future__ import annotations

import numpy as np

# Below this saturation nothing is tissue, whatever Otsu says: a slide of bare glass has a noise-only
# saturation histogram whose Otsu threshold would split the noise and call half the glass tissue.
MIN_SATURATION = 0.05
DEFAULT_MIN_TISSUE = 0.5  # a patch is kept when at least half of it is tissue
IDC_OVERLAP = 0.5  # a patch is IDC (label 1) when at least half of it lies in the annotated regions


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max of an (H, W, 3) uint8 image, float32 in 0..1 (0 for black)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    c = rgb[..., :3].astype(np.float32)
    hi, lo = c.max(axis=2), c.min(axis=2)
    return np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in 0..1: the cut maximising the between-class variance."""
    hist, edges = np.histogram(np.asarray(values, np.float64).ravel(), bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = np.divide(s0, w0, out=np.zeros(bins), where=w0 > 0)
    m1 = np.divide(s0[-1] - s0, w1, out=np.zeros(bins), where=w1 > 0)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def tissue_mask(rgb: np.ndarray, min_object_px: int = 64, min_hole_px: int = 64) -> np.ndarray:
    """Tissue (True) vs glass on an RGB thumbnail: Otsu on saturation, then specks and holes removed.

    ``min_object_px``: connected tissue pieces smaller than this (thumbnail pixels) are dropped as
    dust; ``min_hole_px``: holes smaller than this are filled. The caller turns an area in um^2
    into pixels at the thumbnail's scale. Pixels that are fully transparent in the slide (outside
    its scanned area) must already be white.
    """
    from skimage import morphology  # imported here: the rest of the module needs only NumPy

    sat = saturation(rgb)
    if not np.isfinite(sat).all() or sat.max(initial=0.0) < MIN_SATURATION:
        return np.zeros(sat.shape, bool)
    mask = sat >= max(otsu_threshold(sat), MIN_SATURATION)
    # max_size: objects / holes of at most this many pixels are removed (skimage >= 0.26 wording).
    if min_object_px > 1:
        mask = morphology.remove_small_objects(mask, max_size=int(min_object_px) - 1)
    if min_hole_px > 1:
        mask = morphology.remove_small_holes(mask, max_size=int(min_hole_px) - 1)
    return mask


def block_fraction(mask: np.ndarray, rows: int, cols: int, k: int) -> np.ndarray:
    """(rows, cols) share of each k x k block of ``mask`` that is True (block (r, c) covers
    mask[r*k:(r+1)*k, c*k:(c+1)*k]); parts of the grid beyond the mask count as False."""
    padded = np.zeros((rows * k, cols * k), bool)
    h, w = min(rows * k, mask.shape[0]), min(cols * k, mask.shape[1])
    padded[:h, :w] = mask[:h, :w]
    # A count, not a float mean: no float copy of a whole slide's mask.
    return padded.reshape(rows, k, cols, k).sum(axis=(1, 3), dtype=np.int32) / float(k * k)


def rasterise_regions(regions, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A bool (H, W) mask of the union of polygon regions, each with holes.

    ``regions``: objects with ``exterior`` and ``holes`` ((n, 2) arrays of x, y; e.g.
    pipeline.geojson.Region) in a frame ``scale`` times finer than the mask's (level-0 slide pixels
    for a mask in the resampled frame: scale = level-0 pixels per mask pixel). A mask pixel is
    inside when its centre is (skimage.draw.polygon); a position x maps to x / scale - 0.5 in the
    pixel-index frame, since mask pixel i spans [i, i + 1) and its centre is at i + 0.5.
    """
    from skimage.draw import polygon as fill

    out = np.zeros(shape, bool)
    for region in regions:
        ext = np.asarray(region.exterior, np.float64) / scale - 0.5
        # Drawn in the region's own window: a slide's many small annotations cost their size, not the slide's.
        r0, c0 = max(0, int(np.floor(ext[:, 1].min()))), max(0, int(np.floor(ext[:, 0].min())))
        r1, c1 = min(shape[0], int(np.ceil(ext[:, 1].max())) + 1), min(shape[1], int(np.ceil(ext[:, 0].max())) + 1)
        if r1 <= r0 or c1 <= c0:
            continue
        part = np.zeros((r1 - r0, c1 - c0), bool)
        for i, ring in enumerate((region.exterior, *region.holes)):
            ring = np.asarray(ring, np.float64) / scale - 0.5 - (c0, r0)
            rr, cc = fill(ring[:, 1], ring[:, 0], shape=part.shape)
            part[rr, cc] = i == 0  # the exterior fills, each hole clears
        out[r0:r1, c0:c1] |= part
    return out


def patch_labels(fraction: np.ndarray, threshold: float = IDC_OVERLAP) -> np.ndarray:
    """1 where the annotated share of a patch is at least ``threshold``, else 0 (int8)."""
    return (np.asarray(fraction) >= threshold).astype(np.int8)
