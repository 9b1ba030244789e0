"""Class activation maps of a trained model: Grad-CAM, Grad-CAM++ and Score-CAM via tf-keras-vis.

One cacheable class (:class:`Explainer`, built once per model) and the pointing game that checks
where its maps point (``cam_peak``, ``pointing_game``); no Streamlit, no run folders. TensorFlow and
tf-keras-vis are imported only when an Explainer is built, so the NumPy helpers cost nothing to
import. Maps have the model's input side (read from its input shape), one value per patch pixel.
Drawing a map onto its patch is the app's (app/cam_overlay.py); reading the true regions of a
synthetic run is the pipeline's (pipeline.store.patch_region_masks).

How tf-keras-vis 0.8.7 is used on Keras 3, and why:

* The model is cloned once with ``ReplaceToLinear`` (the sigmoid becomes the identity), so the
  score is the logit z and its gradient does not vanish for confident patches. Grad-CAM and
  Grad-CAM++ share that one linear clone; the caller's model is never modified.
* The CAM layer is always passed by name with ``seek_penultimate_conv_layer=False``: the library's
  automatic search does not recognise SeparableConv2D.
* ``BinaryScore(True)`` scores z (IDC), ``BinaryScore(False)`` scores -z (not IDC); a list of
  booleans gives each patch of a batch its own target.
* Score-CAM weighs each activation map by ``softmax(model(masked input))``. With one sigmoid output
  that softmax is always 1 (a one-element softmax), and every map would get the same weight. So
  Score-CAM runs on a two-logit view of the linear clone, ``[0, z]``, whose softmax is exactly
  ``[1 - p, p]``, scored with ``CategoricalScore(target)``. Score-CAM is computed one patch at a
  time, because tf-keras-vis picks its top-``max_N`` channels over the whole batch and a patch's
  map would otherwise depend on which other patches share its batch.
* Everything runs in inference mode (``training=False``: dropout off, batch-norm moving statistics).
* Maps are normalised here per patch to [0, 1], not by tf-keras-vis: its ``normalize`` adds 1e-7
  to the range, which squashes the small-magnitude maps of weakly trained models. A flat map (all
  zeros, e.g. when ReLU removes every negative contribution) stays all zeros, never NaN.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

import numpy as np

from model.link import sigmoid


@dataclass(frozen=True)
class CamMethod:
    """One CAM method: the tf-keras-vis class that computes it, and a line for the app's help text."""

    module: str
    class_name: str
    gradient_based: bool
    help: str

    def load(self):
        """The tf-keras-vis class (imports TensorFlow on first use)."""
        return getattr(importlib.import_module(self.module), self.class_name)


METHODS: dict[str, CamMethod] = {
    "Grad-CAM": CamMethod(
        "tf_keras_vis.gradcam", "Gradcam", True,
        "Activation maps of the CAM layer weighted by the mean gradient of the score (Selvaraju et al. 2017). "
        "Fast: one forward and one backward pass."),
    "Grad-CAM++": CamMethod(
        "tf_keras_vis.gradcam_plus_plus", "GradcamPlusPlus", True,
        "Grad-CAM with per-location gradient weights (Chattopadhay et al. 2018); "
        "better when several separate regions drive the score."),
    "Score-CAM": CamMethod(
        "tf_keras_vis.scorecam", "Scorecam", False,
        "Gradient-free (Wang et al. 2020): each activation map masks the patch and is weighted by the "
        "model's probability for the masked patch. Slower: one forward pass per kept map."),
}

# What a map explains (Explainer.cam's ``target``): the IDC score z, or the score of "not IDC", -z.
# Grad-CAM's maps of the two are ReLU(S) and ReLU(-S) of one weighted activation sum S, so for a patch
# the model calls non-IDC (a false or true negative) the map for IDC is mostly empty by construction
# and the evidence for the model's own call is the map against IDC.
EVIDENCE_FOR_IDC, EVIDENCE_AGAINST_IDC = 1, 0

_GRAD_BATCH = 64  # patches per tf-keras-vis call for the gradient methods (bounds memory)


def _as_batch(patches, side: tuple[int | None, int | None] = (None, None)) -> np.ndarray:
    """(n, H, W, 3) float32 in 0..255 from uint8 patches; one (H, W, 3) patch becomes n = 1.

    ``side`` is the model's (H, W) (None where its input takes any size); other sizes are refused.
    """
    x = np.asarray(patches)
    if x.ndim == 3:
        x = x[None]
    expected = tuple("H" if s is None else s for s in side)
    if x.ndim != 4 or x.shape[-1] != 3 or any(s is not None and s != got for s, got in zip(side, x.shape[1:3])):
        raise ValueError(f"expected RGB patches of shape (n, {expected[0]}, {expected[1]}, 3) "
                         f"(the model's input), got {x.shape}")
    return x.astype(np.float32, copy=True)


def _normalise(raw: np.ndarray) -> np.ndarray:
    """Per-map min-max scaling to [0, 1]; flat or non-finite maps become zeros, never NaN."""
    cam = np.nan_to_num(np.asarray(raw, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    axes = tuple(range(1, cam.ndim))
    lo = cam.min(axis=axes, keepdims=True)
    hi = cam.max(axis=axes, keepdims=True)
    span = hi - lo
    # A range below float32 resolution of the values themselves is rounding noise, not a map.
    ok = span > 1e-6 * np.maximum(np.abs(hi), np.abs(lo))
    out = np.where(ok, (cam - lo) / np.where(ok, span, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _predicted_class_score(output):
    """z where the model predicts IDC (z >= 0, P >= 0.5), else -z: BinaryScore of the predicted class."""
    import tensorflow as tf

    z = tf.reshape(output, (-1,))
    return tf.where(tf.stop_gradient(z) >= 0.0, z, -z)


class Explainer:
    """Built once per model (the app caches it with st.cache_resource); holds the tf-keras-vis objects.

    Construction clones the model once (0.2-0.6 s for the small CNNs on 2 busy cores, longer for
    keras.applications backbones; importing TensorFlow first costs 5-12 s). Once warm, Grad-CAM of
    one patch takes about 0.1 s, Score-CAM about 0.3 s (bench/bench_gradcam.py). Calls are
    serialised by a lock, so one instance can be shared by every Streamlit session thread.
    """

    def __init__(self, model, layer: str, score_cam_max_n: int = 16):
        import keras
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        try:
            cam_layer = model.get_layer(layer)
        except ValueError as exc:
            convs = [lyr.name for lyr in model.layers if len(getattr(lyr.output, "shape", ())) == 4]
            raise ValueError(f"model {model.name!r} has no layer {layer!r} for Grad-CAM; layers with a "
                             f"spatial output: {', '.join(convs[-8:])}") from exc
        if len(cam_layer.output.shape) != 4:
            raise ValueError(f"Grad-CAM layer {layer!r} must output (batch, h, w, channels), "
                             f"got {cam_layer.output.shape}")
        if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) != (1,):
            raise ValueError("Explainer expects one sigmoid output of shape (batch, 1)")
        if int(score_cam_max_n) < 1:
            raise ValueError(f"score_cam_max_n must be >= 1, got {score_cam_max_n}")

        self.layer = layer
        # (H, W) of the model's input: the patches it takes and the maps it returns (None: any size).
        self.patch_shape: tuple[int | None, int | None] = tuple(model.inputs[0].shape[1:3])
        self.channels = int(cam_layer.output.shape[-1])
        self.score_cam_max_n = min(int(score_cam_max_n), self.channels)
        self._lock = threading.RLock()

        gradcam_cls = METHODS["Grad-CAM"].load()
        # One clone with a linear output; the other methods reuse it (no modifier = no clone).
        self._gradcam = gradcam_cls(model, model_modifier=ReplaceToLinear(), clone=True)
        self._linear = self._gradcam.model
        self._gradcampp = METHODS["Grad-CAM++"].load()(self._linear, clone=False)

        z = self._linear.outputs[0]
        two = keras.Model(self._linear.inputs[0],
                          keras.layers.Concatenate(name="not_idc_idc_logits")([keras.ops.zeros_like(z), z]),
                          name=f"{model.name}_two_logits")

        def quiet_predict(x, batch_size=256, **_ignored):
            # Scorecam calls model.predict(); a direct inference-mode call avoids Keras' predict loop
            # setup and its progress bar on stdout. Same numbers.
            x = x[0] if isinstance(x, (list, tuple)) else x
            return np.concatenate([np.asarray(two(x[i:i + batch_size], training=False))
                                   for i in range(0, len(x), batch_size)])

        two.predict = quiet_predict
        self._scorecam = METHODS["Score-CAM"].load()(two, clone=False)

    # ----------------------------------------------------------------------------------------
    def logits(self, patches_uint8: np.ndarray) -> np.ndarray:
        """The model's logit z (P(IDC) = sigmoid(z), before calibration) per patch, float32 (n,)."""
        x = _as_batch(patches_uint8, self.patch_shape)
        if len(x) == 0:
            return np.zeros(0, np.float32)
        with self._lock:
            return np.concatenate([np.asarray(self._linear(x[i:i + 256], training=False))[:, 0]
                                   for i in range(0, len(x), 256)]).astype(np.float32)

    def predict(self, patches_uint8: np.ndarray) -> np.ndarray:
        """P(IDC) per patch from the model (uncalibrated), float32 (n,)."""
        return sigmoid(self.logits(patches_uint8).astype(np.float64)).astype(np.float32)

    def _targets(self, x: np.ndarray, target) -> np.ndarray:
        if target is None:
            return self.logits(x) >= 0.0  # the model's own call (uncalibrated P >= 0.5), not the slider's
        t = np.asarray(target)
        if t.ndim == 0:
            t = np.full(len(x), t.item())
        if t.shape != (len(x),) or not np.isin(t, (0, 1)).all():
            raise ValueError(f"target must be None, 0, 1, or one 0/1 per patch; got {target!r}")
        return t.astype(bool)

    def cam(self, patches_uint8: np.ndarray, method: str = "Grad-CAM", target: int | None = None) -> np.ndarray:
        """(n, H, W) float32 in [0, 1] for (n, H, W, 3) uint8 patches (H, W: the model's input side).

        target: 1 explains the IDC score (BinaryScore(True)), 0 explains 'not IDC'
        (BinaryScore(False)), None explains the class the model predicts for each patch (at 0.5);
        a sequence of 0/1, one per patch, is also accepted. A single (H, W, 3) patch is treated
        as n = 1.
        """
        if method not in METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
        x = _as_batch(patches_uint8, self.patch_shape)
        if len(x) == 0:
            return np.zeros((0, *x.shape[1:3]), np.float32)
        from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

        common = dict(penultimate_layer=self.layer, seek_penultimate_conv_layer=False, normalize_cam=False)
        parts = []
        if method == "Score-CAM":
            targets = self._targets(x, target)
            with self._lock:
                for i in range(len(x)):
                    parts.append(self._scorecam(CategoricalScore([int(targets[i])]), x[i:i + 1],
                                                max_N=self.score_cam_max_n, **common))
        else:
            # For the predicted class, score the logit with the sign of its own value: the same as
            # BinaryScore(predicted) but without a separate forward pass to find the prediction.
            targets = None if target is None else self._targets(x, target)
            vis = self._gradcam if method == "Grad-CAM" else self._gradcampp
            with self._lock:
                for s in range(0, len(x), _GRAD_BATCH):
                    score = (_predicted_class_score if targets is None
                             else BinaryScore([bool(v) for v in targets[s:s + _GRAD_BATCH]]))
                    parts.append(vis(score, x[s:s + _GRAD_BATCH], training=False, **common))
        raw = np.concatenate([np.asarray(p, np.float32).reshape(-1, *x.shape[1:3]) for p in parts])
        return _normalise(raw)


# -------------------------------------------------------------------------------- localisation check
def cam_peak(cam: np.ndarray) -> tuple[int, int]:
    """(row, col) of the maximum of one (H, W) map (the first one in row-major order on ties)."""
    cam = np.nan_to_num(np.asarray(cam, np.float64), nan=-np.inf)
    if cam.ndim != 2:
        raise ValueError(f"cam_peak takes one (H, W) map, got shape {cam.shape}")
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(r), int(c)


def pointing_game(cams: np.ndarray, masks: np.ndarray) -> dict:
    """The pointing game (Zhang et al. 2016): does each CAM's peak pixel lie inside the true region?

    cams (n, H, W) and bool region masks (n, H, W) for the same patches. A flat map (no peak, e.g.
    all zeros) counts as a miss. Returns {"n", "hit_rate" (hits / n), "chance" (mean share of the
    patch the mask covers: the hit rate of a random peak), "hits" (bool per patch), "peaks"
    ((n, 2) row, col), "flat" (number of flat maps)}. Patches whose mask is empty can never be hit,
    so select patches with some true region first.
    """
    cams = np.asarray(cams, np.float64)
    masks = np.asarray(masks, bool)
    if cams.ndim != 3 or cams.shape != masks.shape:
        raise ValueError(f"cams {cams.shape} and masks {masks.shape} must both be (n, H, W)")
    n = len(cams)
    if n == 0:
        return {"n": 0, "hit_rate": float("nan"), "chance": float("nan"),
                "hits": np.zeros(0, bool), "peaks": np.zeros((0, 2), int), "flat": 0}
    peaks = np.array([cam_peak(c) for c in cams], dtype=int)
    finite = np.nan_to_num(cams, nan=0.0)
    flat = finite.max(axis=(1, 2)) <= finite.min(axis=(1, 2))
    hits = masks[np.arange(n), peaks[:, 0], peaks[:, 1]] & ~flat
    return {"n": n, "hit_rate": float(hits.mean()), "chance": float(masks.mean(axis=(1, 2)).mean()),
            "hits": hits, "peaks": peaks, "flat": int(flat.sum())}
