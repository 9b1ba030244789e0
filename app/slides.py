"""Slide geometry: rebuild a patient's slide from its patches, and map patches to grid cells.

Pure NumPy, no Streamlit. A patch's x, y are the slide-pixel coordinates of its top-left corner,
starting at 1 and stepping by 50, so patch (x, y) covers pixels rows y-1 .. y+48, columns
x-1 .. x+48 and sits in grid cell (row (y-1) // 50, column (x-1) // 50). The slide frame starts at
pixel (0, 0) whatever the patient's smallest coordinate, so it lines up with the pipeline's
region masks (mask pixel (r, c) <-> slide coordinate (x = c + 1, y = r + 1)).
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from scipy import ndimage

from pipeline.names import PATCH_SIZE as PATCH

WHITE = 255  # background where no tissue patch was kept: the colour of glass


def slide_shape(x, y, width, height) -> tuple[int, int]:
    """(height, width) in pixels of the slide frame that holds every patch at its true size."""
    if len(x) == 0:
        return 0, 0
    return (int(np.max(np.asarray(y, np.int64) - 1 + np.asarray(height, np.int64))),
            int(np.max(np.asarray(x, np.int64) - 1 + np.asarray(width, np.int64))))


def grid_shape(x, y, width, height) -> tuple[int, int]:
    """(rows, columns) of the patch grid covering the slide frame."""
    h, w = slide_shape(x, y, width, height)
    return -(-h // PATCH), -(-w // PATCH)


def cell_index(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Grid (row, column) of each patch; raises if a coordinate is off the 50-pixel grid."""
    x0 = np.asarray(x, np.int64) - 1
    y0 = np.asarray(y, np.int64) - 1
    if ((x0 % PATCH) | (y0 % PATCH)).any() or (x0 < 0).any() or (y0 < 0).any():
        raise ValueError(f"patch coordinates must be 1 + a multiple of {PATCH} (the dataset's grid)")
    return y0 // PATCH, x0 // PATCH


def rebuild_slide(patches, x, y, width, height) -> np.ndarray:
    """The slide (H, W, 3) uint8 rebuilt from its patches at full resolution; white where no patch.

    Each patch's true width x height region is placed at (y-1, x-1). Vectorised: the canvas is
    viewed as a (rows, columns, 50, 50, 3) grid of cells and all patches are written in one
    fancy-indexed assignment; only edge patches (smaller than 50 px) get their padding whitened.
    """
    patches = np.asarray(patches)
    width = np.asarray(width, np.int64)
    height = np.asarray(height, np.int64)
    h, w = slide_shape(x, y, width, height)
    gy, gx = cell_index(x, y)
    gh, gw = -(-h // PATCH), -(-w // PATCH)
    canvas = np.full((gh, PATCH, gw, PATCH, 3), WHITE, np.uint8)
    cells = canvas.transpose(0, 2, 1, 3, 4)  # a view: cells[r, c] is the 50x50 block of cell (r, c)
    cells[gy, gx] = patches
    edge = np.flatnonzero((width < PATCH) | (height < PATCH))
    if edge.size:
        ramp = np.arange(PATCH)
        inside = (ramp[None, :, None] < height[edge, None, None]) & (ramp[None, None, :] < width[edge, None, None])
        cells[gy[edge], gx[edge]] = np.where(inside[..., None], cells[gy[edge], gx[edge]], WHITE)
    return canvas.reshape(gh * PATCH, gw * PATCH, 3)[:h, :w]


def cell_edges(n_cells: int, frame_px: int) -> np.ndarray:
    """Pixel-coordinate edges of ``n_cells`` grid cells along one axis of a frame ``frame_px`` long:
    cell i spans pixels 50i .. 50i + 49 (edges at +- 0.5), and the last cell ends where the frame
    does, so an overlay cell of an edge patch (smaller than 50 px) is its patch's true size."""
    edges = np.arange(n_cells + 1, dtype=np.float64) * PATCH - 0.5
    edges[-1] = min(edges[-1], frame_px - 0.5)
    return edges


def cell_grid(x, y, values, shape: tuple[int, int], fill=np.nan) -> np.ndarray:
    """A (rows, columns) grid holding each patch's value in its cell and ``fill`` elsewhere."""
    values = np.asarray(values)
    grid = np.full(shape, fill, dtype=np.result_type(values, fill))
    gy, gx = cell_index(x, y)
    grid[gy, gx] = values
    return grid


def crop(image: np.ndarray, top: int, left: int, height: int, width: int, fill=WHITE) -> np.ndarray:
    """image[top:top+height, left:left+width], padded with ``fill`` where the window leaves the image."""
    out = np.full((height, width, *image.shape[2:]), fill, dtype=image.dtype)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + height, image.shape[0]), min(left + width, image.shape[1])
    if t1 > t0 and l1 > l0:
        out[t0 - top:t1 - top, l0 - left:l1 - left] = image[t0:t1, l0:l1]
    return out


def neighbourhood(slide: np.ndarray, x: int, y: int, radius: int = 1) -> np.ndarray:
    """The (2r+1) x (2r+1) patches around patch (x, y) cut from the rebuilt slide, white off-slide."""
    side = (2 * radius + 1) * PATCH
    return crop(slide, int(y) - 1 - radius * PATCH, int(x) - 1 - radius * PATCH, side, side)


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge by an integer factor, repeating pixels, so a pathologist sees the real pixels crisply."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The inner border (``thickness`` pixels) of a boolean region."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    return mask & ~ndimage.binary_erosion(mask, iterations=thickness, border_value=0)


def paint(image: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """A copy of an RGB image with the pixels in ``where`` set to ``colour``."""
    out = image.copy()
    out[where] = colour
    return out


def square_outline(side: int, top: int, left: int, size: int, thickness: int) -> np.ndarray:
    """A (side, side) boolean mask of a square's border, ``size`` px wide at (top, left): marks a patch."""
    box = np.zeros((side, side), bool)
    box[top:top + size, left:left + size] = True
    return outline(box, thickness)


def only_inside_patches(blended: np.ndarray, patches: np.ndarray, width, height) -> np.ndarray:
    """``blended`` (n, 50, 50, 3) where each patch has tissue, the original padding elsewhere.

    An edge patch is padded to 50 x 50; a heatmap over its padding would show the model's
    response to blank glass, which only distracts.
    """
    ramp = np.arange(PATCH)
    width, height = np.atleast_1d(width), np.atleast_1d(height)
    inside = (ramp[None, :, None] < height[:, None, None]) & (ramp[None, None, :] < width[:, None, None])
    return np.where(inside[..., None], blended, patches)


def region_under_patch(region_mask: np.ndarray | None, x: int, y: int, margin: int = 0) -> np.ndarray | None:
    """The part of a slide's true-region mask under patch (x, y), ``margin`` px wider on every side.

    The margin lets an outline drawn on the crop follow the region's real border, not the patch's
    edges. None if the region is not known (every real, non-synthetic patient).
    """
    if region_mask is None:
        return None
    side = PATCH + 2 * margin
    return crop(region_mask, int(y) - 1 - margin, int(x) - 1 - margin, side, side, fill=False)


def region_contour(region_mask: np.ndarray, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The true region's outline as one polyline (x, y in pixel coordinates, NaN between pieces).

    Traced on every ``step``-th pixel: a few thousand points instead of a megapixel mask.
    """
    from skimage import measure  # only synthetic runs need it; keeps the import off the start-up path

    sampled = np.pad(np.asarray(region_mask, bool)[::step, ::step], 1).astype(np.float32)
    pieces = measure.find_contours(sampled, 0.5)
    if not pieces:
        return np.zeros(0), np.zeros(0)
    gap = np.array([[np.nan, np.nan]])
    joined = np.concatenate([part for piece in pieces for part in (piece, gap)])[:-1]
    return (joined[:, 1] - 1) * step, (joined[:, 0] - 1) * step


def side_by_side(images: list[np.ndarray], gap: int = 20) -> np.ndarray:
    """RGB images of equal height placed left to right with a white gap between them."""
    spacer = np.full((images[0].shape[0], gap, 3), WHITE, np.uint8)
    parts = [part for image in images for part in (image, spacer)][:-1]
    return np.concatenate(parts, axis=1)


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    """The image as JPEG: a slide goes to the browser once, compressed."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_data_uri_of(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """The image as a base64 JPEG data URI."""
    return jpeg_data_uri_of(jpeg_bytes(rgb, quality))


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# --------------------------------------------------------------------------- scale bar
SCALE_BAR_LENGTHS_UM = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
SCALE_BAR_MAX_SHARE = 1 / 5  # at most a fifth of the width, so the bar never dominates the image


def scale_bar_length(width_px: float, mpp: float) -> float:
    """A round scale-bar length in µm (1-2-5 steps): the largest not above 1/5 of an image ``width_px`` wide.

    ``mpp``: microns per pixel of the image as shown (a patch enlarged 6x has mpp / 6). 1-2-5 steps
    are at most 2.5 apart, so the bar is 1/12.5 to 1/5 of the width (1/8 to 1/5 for most widths).
    """
    if not (width_px > 0 and mpp > 0):
        raise ValueError(f"width_px and mpp must be positive, got {width_px} and {mpp}")
    most = width_px * mpp * SCALE_BAR_MAX_SHARE
    fitting = [um for um in SCALE_BAR_LENGTHS_UM if um <= most]
    return float(fitting[-1] if fitting else SCALE_BAR_LENGTHS_UM[0])


def length_text(um: float) -> str:
    """'200 µm', '1 mm', '2.5 mm': how a pathologist writes a length."""
    return f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"


def scale_bar(width_px: int, height_px: int, mpp: float) -> dict:
    """Where a scale bar sits on an image (pixel coordinates): bottom left, clear of the edges.

    Returns {"um", "px" (its length in image pixels), "x0", "x1", "y" (its row), "text"}.
    """
    um = scale_bar_length(width_px, mpp)
    px = um / mpp
    margin = max(2.0, 0.04 * min(width_px, height_px))
    return {"um": um, "px": px, "x0": margin, "x1": margin + px, "y": height_px - margin, "text": length_text(um)}


def draw_scale_bar(image: np.ndarray, mpp: float) -> tuple[np.ndarray, str]:
    """A copy of an RGB image with a black scale bar (white-edged, so it shows on dark tissue and on
    glass) at its bottom left, and the bar's length as text for the caption."""
    h, w = image.shape[:2]
    bar = scale_bar(w, h, mpp)
    thick = int(np.clip(min(h, w) // 80, 2, 12))
    x0, y1 = int(round(bar["x0"])), int(round(bar["y"]))
    x1 = x0 + int(round(bar["px"]))  # the bar is exactly its length, whatever the rounding of its start
    out = image.copy()
    out[max(y1 - thick - 1, 0):min(y1 + 2, h), max(x0 - 1, 0):min(x1 + 1, w)] = WHITE
    out[y1 - thick:y1 + 1, x0:x1] = 0
    return out, bar["text"]
