"""Class activation maps drawn onto their patches: colour lookup tables and the blend the app shows.

The maps themselves come from model.explain (Explainer); this module only colours them, in NumPy
(no matplotlib needed for the built-in colormaps).
"""
from __future__ import annotations

import numpy as np

from model.explain import EVIDENCE_AGAINST_IDC, EVIDENCE_FOR_IDC


# matplotlib's colormaps as piecewise-linear segments (x, value) per channel; no matplotlib needed.
_SEGMENTS = {
    "jet": (((0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)),
            ((0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)),
            ((0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0))),
    "hot": (((0, 0.0416), (0.365079, 1), (1, 1)),
            ((0, 0), (0.365079, 0), (0.746032, 1), (1, 1)),
            ((0, 0), (0.746032, 0), (1, 1))),
    "gray": (((0, 0), (1, 1)),) * 3,
}
_LUTS: dict[str, np.ndarray] = {}


def colormap_lut(name: str = "jet") -> np.ndarray:
    """(256, 3) uint8 lookup table of a colormap ('jet', 'hot', 'gray'; others via matplotlib if installed)."""
    if name not in _LUTS:
        t = np.linspace(0.0, 1.0, 256)
        if name in _SEGMENTS:
            lut = np.stack([np.interp(t, *np.asarray(seg, float).T) for seg in _SEGMENTS[name]], axis=1)
        else:
            try:
                import matplotlib

                lut = np.asarray(matplotlib.colormaps[name](t))[:, :3]
            except (ImportError, KeyError) as exc:
                raise ValueError(f"unknown colormap {name!r}; built in: {', '.join(_SEGMENTS)}") from exc
        _LUTS[name] = np.round(lut * 255).astype(np.uint8)
    return _LUTS[name]


def overlay_cam(rgb_uint8: np.ndarray, cam: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """uint8 RGB blend of a patch (H, W, 3) with its heatmap (H, W); alpha 0 = patch only, 1 = heatmap only.

    Also works on a batch: (n, H, W, 3) patches with (n, H, W) maps.
    """
    rgb = np.asarray(rgb_uint8)
    cam = np.asarray(cam, np.float64)
    if rgb.shape[-1] != 3 or cam.shape != rgb.shape[:-1]:
        raise ValueError(f"patch {rgb.shape} and CAM {cam.shape} do not match (expected (..., H, W, 3) and (..., H, W))")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return rgb.astype(np.uint8, copy=True)
    idx = np.round(np.clip(np.nan_to_num(cam), 0.0, 1.0) * 255).astype(np.intp)
    heat = colormap_lut(colormap)[idx].astype(np.float64)
    out = (1.0 - alpha) * rgb.astype(np.float64) + alpha * heat
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- which evidence a map shows
# A Grad-CAM map is ReLU of the score's gradient-weighted activations: the map "for IDC" of a patch
# the model calls non-IDC (a false or true negative) is mostly empty by construction, so the default
# map is the evidence for the model's own call (model.explain: target 1 = the IDC score z, 0 = -z).
CAM_TARGETS = {EVIDENCE_FOR_IDC: "Evidence for IDC", EVIDENCE_AGAINST_IDC: "Evidence against IDC"}


def own_call_target(outcome: str, predicted_idc: bool | None = None) -> int:
    """The CAM target of the model's own call at the threshold: 1 (IDC) for TP/FP, 0 for FN/TN; for an
    'unlabelled' patch (no outcome) the call itself decides: 1 when ``predicted_idc``, else 0."""
    if outcome == "unlabelled" and predicted_idc is not None:
        return EVIDENCE_FOR_IDC if predicted_idc else EVIDENCE_AGAINST_IDC
    if outcome not in ("TP", "FP", "FN", "TN"):
        raise ValueError(f"unknown outcome {outcome!r}" + (" (an unlabelled patch needs predicted_idc)"
                                                           if outcome == "unlabelled" else ""))
    return EVIDENCE_FOR_IDC if outcome in ("TP", "FP") else EVIDENCE_AGAINST_IDC


def target_text(target: int, outcome: str, predicted_idc: bool | None = None) -> str:
    """What the shown map is, in words, saying whether it is the model's own call."""
    own = own_call_target(outcome, predicted_idc) == target
    what = "evidence " + CAM_TARGETS[target].split(" ", 1)[1]  # 'evidence for IDC', keeping IDC in capitals
    if own:
        return f"{what} (the model's own call: {'IDC' if target else 'not IDC'})"
    return f"{what} (not the model's call, which is {'IDC' if not target else 'not IDC'} here)"
