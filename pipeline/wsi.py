"""Whole-slide images through OpenSlide: scale, pyramid level, resampled reads. Owns slide I/O.

Frames. *Level 0* is the slide at full resolution (its own ``openslide.mpp-x`` microns per pixel).
The *resampled frame* is the slide at the dataset's scale, ``DATASET_MPP`` (4 um/px): one of its
pixels is ``scale = DATASET_MPP / slide_mpp`` level-0 pixels across. Patches are cut on that frame's
grid (patch (row r, column c) is resampled pixels [50 r, 50 r + 50) x [50 c, 50 c + 50), manifest
x = 1 + 50 c, y = 1 + 50 r, as the dataset numbers its patches), so the app rebuilds a slide from
them as it rebuilds a dataset patient. Pixels are read from the coarsest pyramid level that still
has at least the resampled frame's resolution (downsample <= scale) and brought down to it with
area interpolation (cv2.INTER_AREA: each output pixel the mean of the input pixels it covers, no
aliasing), in strips, so a slide whose only level is full resolution is read in bounded memory.

OpenSlide is imported inside the functions that need it, so the command line starts without it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.names import DATASET_MPP, PATCH_SIZE

STRIP_PIXELS = 16 << 20  # level pixels read per read_region call (64 MiB of RGBA)


class SlideError(ValueError):
    """A slide that cannot be tiled as given; the message names the file and the fix."""


@dataclass(frozen=True)
class SlideGeometry:
    """How one slide maps onto the dataset's patch grid (see the module docstring)."""

    width0: int  # level-0 size in pixels
    height0: int
    slide_mpp: float  # microns per level-0 pixel
    mpp_source: str  # "slide" (openslide.mpp-x) or "--mpp"
    scale: float  # level-0 pixels per resampled pixel: DATASET_MPP / slide_mpp
    level: int  # the pyramid level patches are read from
    level_downsample: float
    rows: int  # whole patches down and across the resampled frame (a last partial row/column is not tiled)
    cols: int

    @property
    def level_per_output(self) -> float:
        """Pixels of the read level per resampled pixel (>= 1: the level is at least as fine)."""
        return self.scale / self.level_downsample

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- pure geometry
def pick_level(downsamples, scale: float) -> int:
    """The coarsest level whose downsample is at most ``scale`` (1% slack for rounded downsamples):
    the nearest level at or above the resolution wanted. Level 0 when every level is coarser."""
    fit = [i for i, d in enumerate(downsamples) if d <= scale * 1.01]
    return max(fit, key=lambda i: downsamples[i]) if fit else 0


def slide_geometry(width0: int, height0: int, slide_mpp: float, downsamples, mpp_source: str = "slide",
                   target_mpp: float = DATASET_MPP) -> SlideGeometry:
    """The patch grid of a slide of ``width0`` x ``height0`` level-0 pixels at ``slide_mpp``."""
    scale = target_mpp / slide_mpp
    level = pick_level(downsamples, scale)
    cols = int(math.floor(width0 / scale + 1e-9)) // PATCH_SIZE
    rows = int(math.floor(height0 / scale + 1e-9)) // PATCH_SIZE
    return SlideGeometry(int(width0), int(height0), float(slide_mpp), mpp_source, float(scale), level,
                         float(downsamples[level]), rows, cols)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGB of an (H, W, 4) uint8 RGBA read: transparent pixels (outside the scanned area) become white glass."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3]
    partial = alpha < 255
    if partial.any():  # only those pixels in float: a strip of a slide is mostly opaque
        a = alpha[partial].astype(np.float32)[:, None] / 255.0
        rgb[partial] = np.clip(rgb[partial] * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
    return rgb


# --------------------------------------------------------------------------- OpenSlide
def openslide_error() -> type[Exception]:
    """OpenSlide's error class (imported only when a slide is read)."""
    import openslide

    return openslide.OpenSlideError


def open_slide(path: Path | str):
    """An openslide.OpenSlide, or SlideError naming the file and what to do."""
    import openslide

    path = Path(path)
    if not path.is_file():
        raise SlideError(f"{path}: not found or not a file; check the path")
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise SlideError(f"{path}: unreadable, not a slide format OpenSlide knows, or a truncated or damaged "
                         "file; re-copy it from the scanner, or convert it to pyramidal TIFF") from None
    except (openslide.OpenSlideError, OSError) as exc:
        raise SlideError(f"{path}: unreadable ({exc}); re-copy it from the scanner") from None


def slide_mpp(slide, path: Path | str, override: float | None) -> tuple[float, str]:
    """The slide's microns per level-0 pixel and where it came from ("slide" or "--mpp").

    The slide's own scale wins: --mpp is for slides that record none (a plain TIFF export).
    Anisotropic pixels (mpp-x and mpp-y more than 1% apart) are refused: a square patch would not
    be square in the tissue.
    """
    props = slide.properties
    try:
        mx, my = float(props.get("openslide.mpp-x", "nan")), float(props.get("openslide.mpp-y", "nan"))
    except ValueError:
        mx = my = math.nan
    if math.isfinite(mx) and mx > 0:
        my = my if math.isfinite(my) and my > 0 else mx
        if abs(mx - my) > 0.01 * mx:
            raise SlideError(f"{path}: pixels are not square (mpp-x {mx:g}, mpp-y {my:g} um/px); resample the slide "
                             "to square pixels first")
        return (mx + my) / 2, "slide"
    if override is not None:
        return float(override), "--mpp"
    raise SlideError(f"{path}: the slide records no scale (no openslide.mpp-x: microns per pixel); pass --mpp M with "
                     "its microns per pixel at full resolution (e.g. 0.25 for a 40x scan, 0.5 for 20x)")


def geometry_of(slide, path: Path | str, mpp_override: float | None) -> SlideGeometry:
    mpp, source = slide_mpp(slide, path, mpp_override)
    if mpp > DATASET_MPP * 1.01:  # patches would be upsampled: blurrier than anything the model was trained on
        where = "--mpp" if source == "--mpp" else "its recorded scale (openslide.mpp-x)"
        raise SlideError(f"{path}: {mpp:g} um/px ({where}) is coarser than the dataset's {DATASET_MPP:g} um/px; "
                         "scan at higher magnification, or check the scale")
    w, h = slide.dimensions
    g = slide_geometry(w, h, mpp, slide.level_downsamples, source)
    if g.rows == 0 or g.cols == 0:
        raise SlideError(f"{path}: {w}x{h} px at {mpp:g} um/px is smaller than one {PATCH_SIZE * DATASET_MPP:g} um "
                         "patch; check --mpp or the file")
    return g


def read_resampled(slide, level: int, downsample: float, unit: float, r0: int, r1: int, c0: int,
                   c1: int) -> np.ndarray:
    """Output pixels [r0, r1) x [c0, c1) of a frame whose pixel is ``unit`` level-0 pixels across,
    read from ``level`` (its ``downsample``) and area-resized: (r1 - r0, c1 - c0, 3) uint8 RGB.

    Read in horizontal strips of at most STRIP_PIXELS level pixels, each resized on its own (strip
    borders fall on output pixel borders, so the result is the same as one read).
    """
    import cv2

    f = unit / downsample  # level pixels per output pixel
    width_level = max(1, round(c1 * f) - round(c0 * f))
    step = max(1, int(STRIP_PIXELS // max(1.0, width_level * f)))
    out = np.empty((r1 - r0, c1 - c0, 3), np.uint8)
    lx0, lx1 = round(c0 * f), round(c1 * f)
    for s in range(r0, r1, step):
        e = min(r1, s + step)
        ly0, ly1 = round(s * f), round(e * f)
        size = (max(1, lx1 - lx0), max(1, ly1 - ly0))
        rgba = np.asarray(slide.read_region((int(round(lx0 * downsample)), int(round(ly0 * downsample))), level, size))
        rgb = composite_on_white(rgba)
        if rgb.shape[:2] != (e - s, c1 - c0):
            rgb = cv2.resize(rgb, (c1 - c0, e - s), interpolation=cv2.INTER_AREA)
        out[s - r0:e - r0] = rgb
    return out


def read_thumbnail(slide, g: SlideGeometry, k: int) -> np.ndarray:
    """The patch grid's area at k pixels per patch side: (rows * k, cols * k, 3) uint8, from the
    coarsest level fine enough for it (tissue detection runs on this)."""
    unit = g.scale * PATCH_SIZE / k
    level = pick_level(slide.level_downsamples, unit)
    return read_resampled(slide, level, slide.level_downsamples[level], unit, 0, g.rows * k, 0, g.cols * k)


def read_patch_run(slide, g: SlideGeometry, row: int, c0: int, c1: int) -> np.ndarray:
    """Patches (row, c0 .. c1 - 1) of the grid, read in one go: (c1 - c0, 50, 50, 3) uint8."""
    band = read_resampled(slide, g.level, g.level_downsample, g.scale, row * PATCH_SIZE, (row + 1) * PATCH_SIZE,
                          c0 * PATCH_SIZE, c1 * PATCH_SIZE)
    return band.reshape(PATCH_SIZE, c1 - c0, PATCH_SIZE, 3).transpose(1, 0, 2, 3)


def max_run_columns(g: SlideGeometry) -> int:
    """Patches per read so one read stays within STRIP_PIXELS level pixels."""
    return max(1, int(STRIP_PIXELS // (PATCH_SIZE * g.level_per_output) ** 2))


def consecutive_runs(columns: np.ndarray, longest: int) -> list[tuple[int, int]]:
    """Sorted column indices -> [(c0, c1)] half-open runs of consecutive columns, each at most ``longest``."""
    runs: list[tuple[int, int]] = []
    for c in np.asarray(columns, int):
        if runs and runs[-1][1] == c and c - runs[-1][0] < longest:
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((int(c), int(c) + 1))
    return runs


def slide_scales(run_meta: dict) -> dict[str, float]:
    """patient -> its slide's level-0 pixels per run pixel, from run.json ``slides`` ({} for a dataset run)."""
    return {str(pid): float(info["scale"]) for pid, info in (run_meta.get("slides") or {}).items()
            if isinstance(info, dict) and "scale" in info}


# --------------------------------------------------------------------------- the app's inspector
def read_region_at_full_resolution(run_meta: dict, patient_id: str, x: int, y: int,
                                   margin: int = 0) -> np.ndarray:
    """The patch (x, y) of an ingest-slides run read live from its slide at level 0: (h, w, 3) uint8 RGB.

    ``run_meta``: the run's run.json (Run.meta), whose ``slides`` record each patient's slide file and
    scale; x, y: the manifest's 1-based resampled-frame coordinates. ``margin``: resampled pixels of
    context around the patch on every side (clipped at the slide's edge). At 0.25 um/px a patch is
    800 x 800 pixels. Raises SlideError when the run has no slide for the patient (a dataset run) or
    the slide file has moved.
    """
    info = (run_meta.get("slides") or {}).get(str(patient_id))
    if not info:
        raise SlideError(f"patient {patient_id}: this run records no whole-slide image for it (only ingest-slides "
                         "runs do)")
    path = Path(info["path"])
    slide = open_slide(path)
    try:
        scale = float(info["scale"])
        x0, y0 = (int(x) - 1 - margin) * scale, (int(y) - 1 - margin) * scale
        x1, y1 = (int(x) - 1 + PATCH_SIZE + margin) * scale, (int(y) - 1 + PATCH_SIZE + margin) * scale
        w0, h0 = slide.dimensions
        x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        x1, y1 = min(w0, int(math.ceil(x1))), min(h0, int(math.ceil(y1)))
        if x1 <= x0 or y1 <= y0:
            raise SlideError(f"{path}: patch x={x}, y={y} lies outside the slide ({w0}x{h0} px)")
        return composite_on_white(np.asarray(slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0))))
    finally:
        slide.close()
