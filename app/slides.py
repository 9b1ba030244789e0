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


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """The image as a base64 JPEG data URI: a slide goes to the browser once, compressed."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
