"""The slide renderer: one patient's synthetic H&E slide, pixel-level IDC region and patch grid.

Each slide is rendered whole (Beer-Lambert mix of a haematoxylin and an eosin optical-density map)
and only then cut into patches, so tissue runs on across patch borders and a rebuilt slide looks
like a slide. Structure, not colour, separates IDC (see the package docstring). Everything drawn
comes from the one ``rng`` given to ``render_slide``, in a fixed order: the same generator state
gives the same slide, byte for byte.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.names import PATCH_SIZE

LOWRES = 5  # slide pixels per node of the grid on which smooth (low-frequency) fields are built
TISSUE_FILL = 0.56  # share of a slide's bounding frame covered by tissue
MIN_TISSUE_IN_PATCH = 0.25  # a grid cell becomes a patch when this much of it is tissue
ANNOTATION_MARGIN_PX = 10  # how far the pathologist's coarse outline runs outside the IDC region
BORDER_FLIP = 0.05  # share of patches at a label border whose label is wrong
CLUSTERED_HOLES, SCATTERED_HOLES = 0.025, 0.012  # tissue cells left out, in clumps / one by one
HOLE_RATE = CLUSTERED_HOLES + SCATTERED_HOLES
STAMP_CHUNK = 8192  # ellipses per bincount in _stamp
STRIP = 150  # rows painted at a time (whole patch rows, a multiple of LOWRES)

# Stain directions in optical density, jittered per patient: haematoxylin as in Ruifrok &
# Johnston; eosin absorbing more blue than their vector, for the pink-red of the public scans.
HAEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
EOSIN_OD = np.array([0.10, 0.85, 0.50])

# Tissue compartments and, per compartment, the eosin level, the collagen-fibre texture
# amplitude and the diffuse haematoxylin (cytoplasm, out-of-focus nuclei) of the tissue.
# Cellular compartments get a purple haze; stroma is pink and fibrous.
COMPARTMENTS = ("tumour", "desmoplasia", "stroma", "fat", "lymphoid", "lobule")
EOSIN_LEVEL = np.array([0.40, 0.55, 0.65, 0.0, 0.15, 0.30], np.float32)
FIBRE_AMPLITUDE = np.array([0.15, 0.35, 0.55, 0.0, 0.10, 0.20], np.float32)
DIFFUSE_H = np.array([0.10, 0.06, 0.04, 0.0, 0.25, 0.15], np.float32)

# --------------------------------------------------------------------------------------------
# Small field helpers
# --------------------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Unit-variance Gaussian-correlated noise on the low-res grid, correlation length in slide px.

    Large scales are filtered on a coarser grid and interpolated up: the filter cost then stays
    small whatever the scale, and the result is just as smooth.
    """
    sigma = scale_px / LOWRES
    step = max(1, int(sigma / 3))
    coarse = rng.standard_normal((shape[0] // step + 3, shape[1] // step + 3), dtype=np.float32)
    field = ndimage.gaussian_filter(coarse, sigma / step)
    if step > 1:
        field = ndimage.zoom(field, step, order=1)
    field = field[: shape[0], : shape[1]]
    return field / max(float(field.std()), 1e-6)


def _upsample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation from the low-res grid (node i sits at pixel i*LOWRES) to pixels.

    Works on the last two axes, so a stack of fields is interpolated in one call. Thresholding
    an interpolated smooth field, rather than interpolating a thresholded one, is what gives
    outlines that are smooth at pixel level. The integer factor lets each axis be done by
    broadcasting LOWRES interpolation weights, without gathers.
    """
    t = np.arange(LOWRES, dtype=np.float32) / LOWRES
    lead = field.shape[:-2]
    lo = field[..., :-1]
    step = field[..., 1:] - lo
    rows = (lo[..., None] + step[..., None] * t).reshape(*field.shape[:-1], -1)[..., : shape[1]]
    lo = rows[..., :-1, :]
    step = rows[..., 1:, :] - lo
    out = lo[..., :, None, :] + step[..., :, None, :] * t[:, None]
    return out.reshape(*lead, -1, shape[1])[..., : shape[0], :]


def _block_mean(field: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean of a low-res field over each patch cell (PATCH_SIZE // LOWRES nodes per side)."""
    k = PATCH_SIZE // LOWRES
    padded = np.zeros((rows * k, cols * k), np.float32)
    h, w = min(rows * k, field.shape[0]), min(cols * k, field.shape[1])
    padded[:h, :w] = field[:h, :w]
    return padded.reshape(rows, k, cols, k).mean(axis=(1, 3))


def _sample_points(rng: np.random.Generator, density: np.ndarray, shape: tuple[int, int]):
    """Poisson point process with intensity ``density`` (points per pixel, on the low-res grid).

    Returns pixel coordinates and the low-res node each point came from, so callers can read
    other low-res fields (fibre orientation) at the point.
    """
    counts = rng.poisson(density * LOWRES**2)
    node = np.repeat(np.arange(counts.size), counts.ravel())
    iy, ix = np.divmod(node, density.shape[1])
    y = ((iy + rng.random(node.size) - 0.5) * LOWRES).astype(np.float32)
    x = ((ix + rng.random(node.size) - 0.5) * LOWRES).astype(np.float32)
    keep = (y >= 0) & (y < shape[0]) & (x >= 0) & (x < shape[1])
    return y[keep], x[keep], node[keep]


def _stamp(shape, y, x, a, b, angle, amplitude, hollow) -> np.ndarray:
    """Sum of soft-edged ellipses (nuclei, lumens) drawn into an (H, W) float map.

    Every (ellipse, window offset) pair becomes one weighted pixel index and ``np.bincount``
    adds them up, on a canvas padded by the largest window so no bounds checks are needed.
    Ellipses go in row order, in chunks, so each bincount covers a narrow band of rows and all
    temporaries stay small (large fresh arrays cost more in page faults than in arithmetic).
    ``hollow`` pales the centre: the vesicular chromatin of tumour nuclei.
    """
    a, b = np.maximum(a, b), np.minimum(a, b)
    radius = np.ceil(a * (1.0 + 0.35 / b) + 0.5).astype(np.intp)
    pad = int(radius.max(initial=0))
    height, width = shape[0] + 2 * pad, shape[1] + 2 * pad
    iy, ix = np.floor(y), np.floor(x)
    base = (iy.astype(np.intp) + pad) * width + ix.astype(np.intp) + pad
    # Per ellipse: pixel-centre offset of the centre, rotation folded into the axes, and an
    # edge ramp of ~0.7 px written on the squared radius.
    cos, sin = np.cos(angle), np.sin(angle)
    per_ellipse = np.stack([0.5 - (y - iy), 0.5 - (x - ix), cos / a, sin / a, cos / b, sin / b,
                            b / 1.4, amplitude, hollow], axis=1).astype(np.float32)
    canvas = np.zeros(height * width, np.float32)
    order = np.argsort(base, kind="stable")
    for start in range(0, order.size, STAMP_CHUNK):
        chunk = order[start:start + STAMP_CHUNK]
        indices, weights = [], []
        for r in np.unique(radius[chunk]):
            sel = chunk[radius[chunk] == r]
            d = np.arange(-r, r + 1, dtype=np.float32)
            dy, dx = (g.ravel() for g in np.meshgrid(d, d, indexing="ij"))
            oy, ox, ua, ub, va, vb, soft, amp, hol = per_ellipse[sel].T[:, :, None]
            ry, rx = dy + oy, dx + ox
            u, v = ry * ua + rx * ub, rx * va - ry * vb
            rho2 = u * u + v * v
            value = np.clip((1.0 - rho2) * soft + 0.5, 0.0, 1.0) * amp
            if hol.any():
                value *= 1.0 - hol * np.clip(1.0 - rho2 / 0.3, 0.0, 1.0)
            weights.append(value.ravel())
            indices.append((base[sel][:, None] + (dy * width + dx).astype(np.intp)).ravel())
        flat = np.concatenate(indices)
        lo = int(flat.min())
        band = np.bincount(flat - lo, np.concatenate(weights))
        canvas[lo:lo + band.size] += band
    return canvas.reshape(height, width)[pad:height - pad, pad:width - pad]


@dataclass(frozen=True)
class _Adipocytes:
    """Fat cells as a jittered-grid Voronoi tessellation: one seed per ``spacing`` px cell."""

    seed_y: np.ndarray  # flat (gh * gw), in cell units
    seed_x: np.ndarray
    grid_width: int
    spacing: float

    @classmethod
    def draw(cls, rng, shape, spacing: float) -> "_Adipocytes":
        gh, gw = int(shape[0] / spacing) + 3, int(shape[1] / spacing) + 3
        seed_y = np.arange(-1, gh - 1)[:, None] + rng.random((gh, gw))
        seed_x = np.arange(-1, gw - 1)[None, :] + rng.random((gh, gw))
        return cls(seed_y.astype(np.float32).ravel(), seed_x.astype(np.float32).ravel(), gw,
                   spacing)

    def walls(self, py: np.ndarray, px: np.ndarray) -> np.ndarray:
        """Cell-wall strength (0..1) at pixels (py, px).

        A pixel is on a wall when its two nearest seeds are about equally far; the two nearest
        are always among the seeds of the 3x3 cells around the pixel's cell.
        """
        fy = (py / self.spacing).astype(np.float32)
        fx = (px / self.spacing).astype(np.float32)
        cell = (fy.astype(np.intp) + 1) * self.grid_width + fx.astype(np.intp) + 1
        nearest = np.full(py.size, np.inf, np.float32)  # squared distances to the two nearest
        second = np.full(py.size, np.inf, np.float32)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                seed = cell + (di * self.grid_width + dj)
                d2 = (fy - self.seed_y.take(seed)) ** 2 + (fx - self.seed_x.take(seed)) ** 2
                np.minimum(second, np.maximum(nearest, d2), out=second)
                np.minimum(nearest, d2, out=nearest)
        gap = (np.sqrt(second) - np.sqrt(nearest)) * self.spacing  # in pixels
        return np.exp(-((gap / 1.3) ** 2))


# --------------------------------------------------------------------------------------------
# One slide
# --------------------------------------------------------------------------------------------

@dataclass
class RenderedSlide:
    """A rendered slide: RGB pixels, pixel-level IDC region and the patch grid it is cut into."""

    rgb: np.ndarray  # (H, W, 3) uint8
    region: np.ndarray  # (H, W) bool, IDC tissue
    present: np.ndarray  # (rows, cols) bool, cells written as patches
    labels: np.ndarray  # (rows, cols) int, 0/1 patch labels


def _slide_geometry(rng: np.random.Generator, n_target: int):
    """Grid size and pixel extent; some slides end mid-cell at the right/bottom (short patches)."""
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))  # rows / cols
    cells = n_target / TISSUE_FILL
    rows = max(4, round(math.sqrt(cells * aspect)))
    cols = max(4, round(cells / rows))
    cut = rng.random(2) < 0.5  # does the slide end mid-cell at the bottom / on the right?
    height = PATCH_SIZE * rows - (int(rng.integers(1, PATCH_SIZE)) if cut[0] else 0)
    width = PATCH_SIZE * cols - (int(rng.integers(1, PATCH_SIZE)) if cut[1] else 0)
    return rows, cols, (height, width), cut


def _tissue(rng, lr_shape, shape, cut, rows, cols, n_cells):
    """Tissue as the part of a lobed, ragged blob above a threshold.

    Returns the low-res field, the threshold and the mask of low-res nodes inside the scan.

    The threshold is bisected so that about ``n_cells`` grid cells hold enough tissue to be
    patches, which keeps slide sizes on plan. Where the slide ends mid-cell the blob is pushed
    over that edge, so tissue really reaches the short edge patches, as in real scans.
    """
    yy = np.arange(lr_shape[0], dtype=np.float32)[:, None] * LOWRES / shape[0]
    xx = np.arange(lr_shape[1], dtype=np.float32)[None, :] * LOWRES / shape[1]
    cy, cx = (0.6 if cut[0] else 0.5), (0.6 if cut[1] else 0.5)
    radial = 1.0 - ((yy - cy) / 0.6) ** 2 - ((xx - cx) / 0.6) ** 2
    field = (1.4 * radial + 0.5 * _smooth_noise(rng, lr_shape, 0.2 * min(shape))
             + 0.2 * _smooth_noise(rng, lr_shape, 40.0) + 0.08 * _smooth_noise(rng, lr_shape, 12.0))
    in_frame = np.zeros(lr_shape, bool)
    in_frame[: (shape[0] - 1) // LOWRES + 1, : (shape[1] - 1) // LOWRES + 1] = True
    lo, hi = float(field.min()), float(field.max())
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        n = int((_tissue_share(field > mid, in_frame, rows, cols) >= MIN_TISSUE_IN_PATCH).sum())
        lo, hi = (mid, hi) if n > n_cells else (lo, mid)
    return field, hi, in_frame


def _tissue_share(tissue_lr, in_frame, rows, cols) -> np.ndarray:
    """Share of each grid cell's scanned area that is tissue (edge cells are partly scanned)."""
    scanned = _block_mean(in_frame.astype(np.float32), rows, cols)
    tissue = _block_mean((tissue_lr & in_frame).astype(np.float32), rows, cols)
    return tissue / np.maximum(scanned, 1e-6)


def _blobs(rng, lr_shape, scale_px: float, share: float) -> np.ndarray:
    """Soft mask (0..1) of irregular blobs of about ``scale_px`` covering ``share`` of the slide."""
    field = _smooth_noise(rng, lr_shape, scale_px)
    cut = np.quantile(field, 1.0 - share)
    return 1.0 / (1.0 + np.exp(-6.0 * (field - cut)))


def _compartment_weights(rng, lr_shape, idc_soft) -> np.ndarray:
    """(6, h, w) soft shares of COMPARTMENTS; the normal tissue mix varies per patient.

    Normal tissue is collagenous stroma holding compact lymphoid aggregates, lobules and fat
    lobules, in shares drawn per patient; inside the IDC region it is tumour nests in
    desmoplastic stroma, with the same lymphoid aggregates (infiltrating lymphocytes) and some
    entrapped fat. Lymphoid aggregates and lobules give normal tissue as much haematoxylin as
    tumour, which keeps mean colour from giving the label away.
    """
    lymph = _blobs(rng, lr_shape, 22.0, rng.uniform(0.06, 0.25))
    lobule = _blobs(rng, lr_shape, 45.0, rng.uniform(0.15, 0.45))
    fat = _blobs(rng, lr_shape, 70.0, rng.uniform(0.05, 0.25))
    nest = _blobs(rng, lr_shape, rng.uniform(7.0, 14.0), rng.uniform(0.5, 0.85))
    zero = np.zeros_like(nest)
    lobule_n = (1.0 - lymph) * lobule
    fat_n = (1.0 - lymph) * (1.0 - lobule) * fat
    stroma = (1.0 - lymph) * (1.0 - lobule) * (1.0 - fat)
    normal = [zero, zero, stroma, fat_n, lymph, lobule_n]
    til, fat_t = 0.5 * lymph, 0.8 * (1.0 - 0.5 * lymph) * fat
    rest = 1.0 - til - fat_t
    idc = [rest * nest, rest * (1.0 - nest), zero, fat_t, til, zero]
    return np.stack([(1.0 - idc_soft) * n + idc_soft * t for n, t in zip(normal, idc)])


def _rings(rng, cy, cx, lumen_r, shape):
    """Epithelium around lumens: per lumen, a ring of small regular nuclei just outside it."""
    ring_r = lumen_r + 1.0
    per_ring = np.maximum(4, np.round(2 * np.pi * ring_r / 1.9)).astype(np.intp)
    owner = np.repeat(np.arange(cy.size), per_ring)
    k = np.arange(owner.size) - np.repeat(np.cumsum(per_ring) - per_ring, per_ring)
    phi = (2 * np.pi * (k / per_ring[owner] + rng.random(cy.size)[owner])
           + rng.normal(0, 0.25, owner.size))
    dist = ring_r[owner] + rng.normal(0, 0.3, owner.size)
    y = (cy[owner] + dist * np.sin(phi)).astype(np.float32)
    x = (cx[owner] + dist * np.cos(phi)).astype(np.float32)
    ok = (y >= 0) & (y < shape[0]) & (x >= 0) & (x < shape[1])
    n = int(ok.sum())
    return (y[ok], x[ok], rng.uniform(0.85, 1.1, n).astype(np.float32),
            rng.uniform(0.7, 0.9, n).astype(np.float32), (phi[ok] + np.pi / 2).astype(np.float32),
            rng.uniform(0.85, 1.1, n).astype(np.float32), np.zeros(n, np.float32))


def _nuclei(rng, weights, along, shape, grade):
    """Nuclei of every compartment, drawn in one ``_stamp`` call; also returns the lumen map.

    Sizes are in pixels at the dataset's low magnification, where a nucleus is 1.5-6 px across.
    Tumour nuclei are the largest, crowded, varied in size, shape and darkness, with pale
    (vesicular) centres, around small irregular tubules; lymphocytes are tiny, round and dark;
    stromal nuclei are thin spindles along the collagen; lobules are acini, rings of small
    regular nuclei around a round lumen, with a few larger ducts. Tumour density and darkness
    are set so that IDC carries about as much haematoxylin per area as lymphoid aggregates and
    lobules: what sets it apart is size, crowding and pleomorphism, not colour.
    """
    tumour, desmo, stroma, fat, lymph, lobule = weights
    size, spread = grade
    parts = []

    def uniform(lo, hi, n):
        return rng.uniform(lo, hi, n).astype(np.float32)

    y, x, _ = _sample_points(rng, tumour / 9.0, shape)
    n = y.size
    a = np.clip(rng.lognormal(math.log(size), spread, n), 0.8, 3.5).astype(np.float32)
    parts.append((y, x, a, np.maximum(a / uniform(1.0, 1.8, n), 0.7), uniform(0, np.pi, n),
                  uniform(0.5, 0.9, n), uniform(0.15, 0.45, n)))

    y, x, _ = _sample_points(rng, lymph / 3.5, shape)
    n = y.size
    parts.append((y, x, uniform(0.7, 0.9, n), uniform(0.65, 0.85, n), uniform(0, np.pi, n),
                  uniform(1.1, 1.4, n), np.zeros(n, np.float32)))

    y, x, node = _sample_points(rng, (stroma + desmo) / 45.0 + fat / 300.0, shape)
    n = y.size
    spindle = np.pi / 2 * (along.ravel()[node] > 0.5) + rng.normal(0, 0.25, n)
    parts.append((y, x, uniform(1.2, 2.0, n), uniform(0.45, 0.6, n), spindle.astype(np.float32),
                  uniform(0.8, 1.1, n), np.zeros(n, np.float32)))

    # Acini and a few ducts: round lumens ringed by epithelium.
    cy, cx, _ = _sample_points(rng, lobule / 28.0, shape)
    acinus_r = np.where(rng.random(cy.size) < 0.03, rng.uniform(3.0, 7.0, cy.size),
                        rng.uniform(0.3, 0.9, cy.size)).astype(np.float32)
    parts.append(_rings(rng, cy, cx, acinus_r, shape))

    # Tumour tubules: irregular, elongated lumens inside the nests.
    ty, tx, _ = _sample_points(rng, tumour / 120.0, shape)
    tubule_a = uniform(0.8, 2.5, ty.size)
    tubule_b = np.maximum(tubule_a / uniform(1.0, 2.2, ty.size), 0.6)

    nuclei = _stamp(shape, *(np.concatenate(column) for column in zip(*parts)))
    # Small acini are mostly filled with secretion and out-of-focus cells: only partly empty.
    depth = np.where(acinus_r > 2.0, 1.0, 0.7).astype(np.float32)
    lumen = _stamp(shape, np.concatenate([cy, ty]), np.concatenate([cx, tx]),
                   np.concatenate([acinus_r, tubule_a]), np.concatenate([acinus_r, tubule_b]),
                   np.concatenate([np.zeros(cy.size, np.float32), uniform(0, np.pi, ty.size)]),
                   np.concatenate([depth, np.ones(ty.size, np.float32)]),
                   np.zeros(cy.size + ty.size, np.float32))
    return nuclei, np.minimum(lumen, 1.0)


def _cracks(rng, lr_shape, along) -> np.ndarray:
    """Low-res field whose zero level set draws the thin retraction cracks of collagen.

    Noise stretched along the fibre direction (blended between the horizontal and vertical
    version like the fibres themselves) crosses zero in long slits some 10-20 px apart.
    """
    noise = rng.standard_normal(lr_shape, dtype=np.float32)
    horizontal = ndimage.gaussian_filter(noise, (1.2, 6.0))
    vertical = ndimage.gaussian_filter(noise, (6.0, 1.2))
    horizontal /= horizontal.std() + 1e-6
    vertical /= vertical.std() + 1e-6
    return vertical + along * (horizontal - vertical)


def _labels(rng, idc_lr, present, rows, cols) -> np.ndarray:
    """Patch labels as a pathologist's coarse annotation gives them.

    The outline is the IDC region grown by ANNOTATION_MARGIN_PX and rounded; a patch is class 1
    when more than half of it lies inside. Then BORDER_FLIP of the patches at a label border
    (a 4-neighbour has the other label) get the wrong label.
    """
    grow = round(ANNOTATION_MARGIN_PX / LOWRES)
    outline = ndimage.binary_dilation(idc_lr, iterations=grow) if idc_lr.any() else idc_lr
    outline = ndimage.gaussian_filter(outline.astype(np.float32), 1.5) > 0.5
    labels = (_block_mean(outline.astype(np.float32), rows, cols) > 0.5) & present
    padded = np.pad(labels, 1, mode="edge")
    border = present & ((padded[:-2, 1:-1] != labels) | (padded[2:, 1:-1] != labels)
                        | (padded[1:-1, :-2] != labels) | (padded[1:-1, 2:] != labels))
    flip = border & (rng.random(labels.shape) < BORDER_FLIP)
    return (labels ^ flip).astype(np.int64)


@dataclass(frozen=True)
class _Paint:
    """Everything the window painter needs: low-res fields, pixel-level maps and stains."""

    low: np.ndarray  # (len(LOW_FIELDS), h, w) low-res fields, see LOW_FIELDS
    tissue_thr: float
    idc_thr: float
    nuclei: np.ndarray  # (H, W) haematoxylin OD of nuclei before stain strength
    lumen: np.ndarray  # (H, W) 0..1, empty space of acini, ducts and cribriform tumour
    white: np.ndarray  # (H, W) white noise: collagen fibres, chromatin grain, glass
    adipocytes: _Adipocytes
    h_vec: np.ndarray  # (3,) haematoxylin OD direction
    e_vec: np.ndarray  # (3,) eosin OD direction
    white_level: np.ndarray  # (3,) brightness of empty glass


LOW_FIELDS = ("tissue", "idc", "eosin", "fibre", "fat_wall", "h_strength", "diffuse_h", "along",
              "crack", "crack_amp")
FIBRE_HALO = 8  # pixels of context the fibre filter (sigma 3, truncate 2.5) needs around a window
OPTICAL_BLUR = 0.6  # px, Gaussian blur of the nuclei: the scanner's optics at this magnification


def _paint_window(p: _Paint, rows: slice, cols: slice, rgb: np.ndarray) -> None:
    """Compose one window of the slide: Beer-Lambert mix of haematoxylin and eosin.

    Eosin = stroma level x collagen fibre texture + fat cell walls; haematoxylin = nuclei
    (through a slight optical blur) x chromatin grain + the diffuse tint of cytoplasm; lumens,
    fat and retraction cracks are empty. Painting window by
    window keeps every temporary small and skips the background no patch shows; the pixels are
    the same as if the whole slide were painted at once. Window edges are multiples of LOWRES.
    """
    height, width = p.nuclei.shape
    r0, r1, c0, c1 = rows.start, rows.stop, cols.start, cols.stop
    low = p.low[:, r0 // LOWRES:(r1 - 1) // LOWRES + 2, c0 // LOWRES:(c1 - 1) // LOWRES + 2]
    up = dict(zip(LOW_FIELDS, _upsample(low, (r1 - r0, c1 - c0))))
    tissue = up["tissue"] > p.tissue_thr

    h0, h1 = max(0, r0 - FIBRE_HALO), min(height, r1 + FIBRE_HALO)
    w0, w1 = max(0, c0 - FIBRE_HALO), min(width, c1 + FIBRE_HALO)
    noise = p.white[h0:h1, w0:w1]
    inner = (slice(r0 - h0, r1 - h0), slice(c0 - w0, c1 - w0))
    along = ndimage.gaussian_filter(noise, (0.6, 3.0), truncate=2.5)[inner]
    across = ndimage.gaussian_filter(noise, (3.0, 0.6), truncate=2.5)[inner]
    fibre = across + up["along"] * (along - across)
    nuclei = ndimage.gaussian_filter(p.nuclei[h0:h1, w0:w1], OPTICAL_BLUR, truncate=3.0)[inner]
    white = p.white[rows, cols]
    crack = up["crack_amp"] * np.exp(-((up["crack"] / 0.12) ** 2))
    empty = tissue * (1.0 - p.lumen[rows, cols]) * (1.0 - crack)  # stainable tissue, 0..1

    e_od = up["eosin"] * (1.0 + 2.2 * up["fibre"] * fibre)
    fy, fx = np.nonzero(tissue & (up["fat_wall"] > 0.01))
    e_od[fy, fx] += up["fat_wall"][fy, fx] * p.adipocytes.walls(fy + r0, fx + c0)
    e_od *= empty
    np.maximum(e_od, 0.0, out=e_od)
    h_od = np.minimum(nuclei, 1.6) * (1.0 + 0.15 * white) * up["h_strength"]
    h_od *= tissue
    h_od += up["diffuse_h"] * empty
    glass = 0.04 + 0.01 * white  # unstained glass and mounting medium: off-white with noise
    for c in range(3):
        od = h_od * np.float32(p.h_vec[c]) + e_od * np.float32(p.e_vec[c]) + glass
        rgb[rows, cols, c] = np.clip(np.float32(p.white_level[c]) * np.exp(-od) + 0.5, 0, 255)


def _region(p: _Paint) -> np.ndarray:
    """Pixel-level IDC mask over the whole frame (also under holes and background cells)."""
    height, width = p.nuclei.shape
    region = np.empty((height, width), bool)
    for r0 in range(0, height, STRIP):
        r1 = min(r0 + STRIP, height)
        tissue, idc = _upsample(p.low[:2, r0 // LOWRES:(r1 - 1) // LOWRES + 2], (r1 - r0, width))
        region[r0:r1] = (idc > p.idc_thr) & (tissue > p.tissue_thr)
    return region


def render_slide(rng: np.random.Generator, n_target: int, idc_fraction: float) -> RenderedSlide:
    """Render one patient's slide and decide which grid cells become patches, with labels."""
    rows, cols, shape, cut = _slide_geometry(rng, n_target)
    lr_shape = (shape[0] // LOWRES + 2, shape[1] // LOWRES + 2)
    tissue_f, tissue_thr, in_frame = _tissue(rng, lr_shape, shape, cut, rows, cols,
                                             n_target / (1.0 - HOLE_RATE))
    tissue_lr = (tissue_f > tissue_thr) & in_frame

    # IDC: blobs of thresholded smooth noise, sized to the planned share of the tissue.
    idc_f = _smooth_noise(rng, lr_shape, 130.0) + 0.35 * _smooth_noise(rng, lr_shape, 30.0)
    idc_thr = np.inf  # no IDC at all
    if idc_fraction > 0:
        idc_thr = float(np.quantile(idc_f[tissue_lr], 1.0 - idc_fraction))
    idc_lr = (idc_f > idc_thr) & tissue_lr
    idc_soft = 1.0 / (1.0 + np.exp(-np.clip(8.0 * (idc_f - idc_thr), -30, 30)))

    weights = (_compartment_weights(rng, lr_shape, idc_soft) * tissue_lr).astype(np.float32)
    along = 1.0 / (1.0 + np.exp(-3.0 * _smooth_noise(rng, lr_shape, 40.0)))  # 1: fibres along x
    grade = (rng.uniform(1.6, 2.1), rng.uniform(0.25, 0.38))  # tumour nucleus size, pleomorphism
    nuclei, lumen = _nuclei(rng, weights, along, shape, grade)

    # Stain: per-patient strength and hue, plus smooth drift across the slide (uneven staining,
    # section thickness), which also varies the colour from patch to patch.
    h_strength = math.exp(rng.uniform(math.log(0.6), math.log(1.5)))
    e_strength = math.exp(rng.uniform(math.log(0.5), math.log(1.6)))
    thickness = np.exp(0.15 * _smooth_noise(rng, lr_shape, 200.0)
                       + 0.10 * _smooth_noise(rng, lr_shape, 40.0))
    h_field = h_strength * thickness * np.exp(0.12 * _smooth_noise(rng, lr_shape, 120.0))
    e_field = e_strength * thickness * np.exp(0.12 * _smooth_noise(rng, lr_shape, 120.0))
    fat = weights[3]
    low = np.stack([
        tissue_f,
        idc_f,
        np.tensordot(EOSIN_LEVEL, weights, 1) * (1.0 - fat) * e_field,
        np.tensordot(FIBRE_AMPLITUDE, weights, 1),
        0.3 * fat * e_field,
        h_field,
        np.tensordot(DIFFUSE_H, weights, 1) * h_field,
        along,
        _cracks(rng, lr_shape, along),
        rng.uniform(0.3, 0.9) * (weights[1] + weights[2]),
    ]).astype(np.float32)
    h_vec = np.clip(HAEMATOXYLIN_OD + rng.normal(0, 0.07, 3), 0.05, None)
    e_vec = np.clip(EOSIN_OD + rng.normal(0, 0.07, 3), 0.02, None)
    paint = _Paint(
        low=low, tissue_thr=tissue_thr, idc_thr=idc_thr, nuclei=nuclei, lumen=lumen,
        white=rng.standard_normal(shape, dtype=np.float32),
        adipocytes=_Adipocytes.draw(rng, shape, rng.uniform(14.0, 20.0)),
        h_vec=h_vec / np.linalg.norm(h_vec), e_vec=e_vec / np.linalg.norm(e_vec),
        white_level=255.0 * rng.uniform(0.93, 1.0) * rng.uniform(0.97, 1.0, 3),
    )
    # Cells with enough tissue become patches, minus holes: clustered and scattered drops.
    present = _tissue_share(tissue_lr, in_frame, rows, cols) >= MIN_TISSUE_IN_PATCH
    holes = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), 1.0)
    present &= holes < np.quantile(holes, 1.0 - CLUSTERED_HOLES)
    present &= rng.random((rows, cols)) >= SCATTERED_HOLES

    # Paint only what patches will show: per band of patch rows, the span of present cells.
    rgb = np.zeros((*shape, 3), np.uint8)
    band = STRIP // PATCH_SIZE
    for top in range(0, rows, band):
        used = np.flatnonzero(present[top:top + band].any(axis=0))
        if used.size:
            _paint_window(paint, slice(top * PATCH_SIZE, min((top + band) * PATCH_SIZE, shape[0])),
                          slice(used[0] * PATCH_SIZE, min((used[-1] + 1) * PATCH_SIZE, shape[1])), rgb)
    labels = _labels(rng, idc_lr, present, rows, cols)
    return RenderedSlide(rgb, _region(paint), present, labels)

