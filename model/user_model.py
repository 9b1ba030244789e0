"""A user's own Keras model, wrapped to the pipeline's contract: float 0..255 patches in, P(IDC) out.

The models trained here take (n, side, side, 3) float pixels in 0..255 and end in one sigmoid unit
(model/architectures.py); scoring (model/predict.py) and Grad-CAM (model/explain.py) rely on that.
A user's model may expect another input range (0-1, -1-1), output a logit instead of a
probability, or end in a two-class softmax. :func:`load_user_model` loads a ``.keras`` file, checks
its input shape, and builds one Functional model that

* scales 0..255 to the range the user's model expects (one ``Rescaling`` layer),
* runs the user's layers *in its own graph* (nested Functional and Sequential models are
  flattened), so Grad-CAM can read any of them by name,
* ends in the IDC logit followed by one ``Activation("sigmoid", name="p_idc")``: the Explainer's
  ``ReplaceToLinear`` turns that into the logit, as on the models trained here. Where the user's
  last layer applies a sigmoid or softmax itself, its pre-activation is used, so the logit is exact
  (a two-class softmax p_k is exactly sigmoid(z_k - z_other)); otherwise the logit is computed
  from the clipped probability.

Only Keras built-in layers are added, so the wrapped model saves and loads (safe mode) like any
other. :func:`check_on_patches` runs the wrapped and the user's model on a few real patches and
says what does not fit (``looks like logits: pass --output logit``). :func:`find_cam_layer` picks
the Grad-CAM layer: the one named, or the last Conv2D / SeparableConv2D / DepthwiseConv2D with a
(batch, h, w, channels) output, or the reason there is none.

This module imports nothing of pipeline/ or app/; TensorFlow is imported when a model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.link import EPS, sigmoid

# --input-range: the user's model's expected input as (scale, offset) applied to 0..255 pixels
INPUT_RANGES = {"0-255": (1.0, 0.0), "0-1": (1.0 / 255.0, 0.0), "-1-1": (1.0 / 127.5, -1.0)}
OUTPUT_KINDS = ("probability", "logit")
OUTPUT_NAME = "p_idc"  # the wrapped model's last layer: sigmoid of the IDC logit
CAM_LAYER_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")


class UserModelError(ValueError):
    """The user's model file cannot be used as given; the message names the file and the fix."""


@dataclass
class WrappedModel:
    """The user's model behind the pipeline's contract, with what was found out about it."""

    model: object  # keras.Model: (n, H, W, 3) float 0..255 -> (n, 1) P(IDC); last layer sigmoid
    user_model: object  # the model as loaded from the file
    path: Path
    input_range: str
    output: str
    idc_index: int  # the output column read as IDC (0 for one unit)
    units: int  # the user's model's output units (1 or 2)
    exact_logit: bool  # the logit is the model's own pre-activation (not the clipped probability's)
    cam_layer: str | None = None
    cam_unavailable: str | None = None  # why Grad-CAM cannot run on it, when cam_layer is None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """What run.json records about the wrapping."""
        return {"input_range": self.input_range, "output": self.output, "idc_index": self.idc_index,
                "units": self.units, "exact_logit": self.exact_logit, "cam_layer": self.cam_layer,
                "cam_unavailable": self.cam_unavailable}


# --------------------------------------------------------------------------- loading and checking
def load_user_model(path: Path | str, patch_size: int, input_range: str = "0-255", output: str = "probability",
                    idc_index: int = -1, cam_layer: str | None = None) -> WrappedModel:
    """Load ``path`` (.keras), check its input and output shapes, and wrap it (see the module docstring).

    Raises FileNotFoundError for a missing file and UserModelError for anything that does not fit
    (not a .keras file, unreadable, wrong input or output shape, a --cam-layer it does not have).
    """
    path = Path(path)
    if input_range not in INPUT_RANGES:
        raise UserModelError(f"--input-range must be one of {', '.join(INPUT_RANGES)}, got {input_range!r}")
    if output not in OUTPUT_KINDS:
        raise UserModelError(f"--output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} {'is not a file' if path.exists() else 'does not exist'}; "
                                "pass a Keras model saved with model.save('NAME.keras') to --model")
    if path.suffix != ".keras":
        raise UserModelError(f"model file {path} is not a .keras file; save the model with "
                             "model.save('NAME.keras') (Keras 3 format) and pass that file")
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        user = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the file's, said with its reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserModelError(f"cannot load {path} as a Keras model ({reason[:300]}); custom layers must be "
                             "registered with keras.saving.register_keras_serializable") from None
    if not isinstance(user, keras.Model):
        raise UserModelError(f"{path} holds a {type(user).__name__}, not a Keras model")
    _check_input(user, path, patch_size)
    units = _check_output(user, path)
    if units == 1 and idc_index not in (0, -1):
        raise UserModelError(f"{path} has one output unit; --idc-index {idc_index} does not apply (leave it out)")
    if units == 2 and idc_index not in (0, 1, -1):
        raise UserModelError(f"{path} has two output units; --idc-index must be 0 or 1 (or -1, the last), "
                             f"got {idc_index}")
    idc = 0 if units == 1 else idc_index % 2

    model, exact, flat = _wrap(user, patch_size, input_range, output, idc, units)
    wrapped = WrappedModel(model=model, user_model=user, path=path, input_range=input_range, output=output,
                           idc_index=idc, units=units, exact_logit=exact)
    if not flat:
        wrapped.notes.append(f"{path.name} is a subclassed Keras model: its layers cannot be read one by one")
    wrapped.cam_layer, wrapped.cam_unavailable = find_cam_layer(model, cam_layer, path, flat)
    return wrapped


def _check_input(user, path: Path, patch_size: int) -> None:
    want = (None, patch_size, patch_size, 3)
    try:
        inputs = user.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise UserModelError(f"{path} has no defined input; build it with keras.Input(shape=({patch_size}, "
                             f"{patch_size}, 3)) before saving")
    if len(inputs) != 1:
        raise UserModelError(f"{path} takes {len(inputs)} inputs; it must take one image batch of shape {want}")
    shape = tuple(inputs[0].shape)
    ok = len(shape) == 4 and shape[3] == 3 and all(s in (None, patch_size) for s in shape[1:3])
    if not ok:
        raise UserModelError(f"{path} takes input of shape {shape}, but the patches are {want} "
                             f"({patch_size} x {patch_size} RGB): retrain or rebuild it for that input")


def _check_output(user, path: Path) -> int:
    outputs = user.outputs
    if len(outputs) != 1:
        raise UserModelError(f"{path} has {len(outputs)} outputs; it must have one: P(IDC) or its logit")
    shape = tuple(outputs[0].shape)
    if len(shape) != 2 or shape[1] not in (1, 2):
        raise UserModelError(f"{path} outputs shape {shape}; expected one sigmoid unit (None, 1) or two "
                             "classes (None, 2)")
    return int(shape[1])


def _activation_name(layer) -> str | None:
    """'sigmoid' / 'softmax' when ``layer`` ends in that activation, else None."""
    import keras

    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", None)
    return name if name in ("sigmoid", "softmax") else None


def _output_operation(model):
    """The operation (layer) that produces the model's output, or None."""
    import keras

    if isinstance(model, keras.Sequential):
        return model.layers[-1] if model.layers else None
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history else None


def _linear_twin(layer):
    """A copy of ``layer`` (same weights) without its final activation, or an identity for an activation layer."""
    import keras

    if isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)):
        return lambda x, *args, **kwargs: x
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_logit"}
    twin = type(layer).from_config(config)

    def call(x, *args, **kwargs):
        out = twin(x)
        twin.set_weights(layer.get_weights())
        return out

    return call


def _flattenable(model) -> bool:
    import keras

    # Functional models run their graph with _run_through_graph; subclassed models have no graph to read.
    return isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")


def _flat_call(model, x, replace: dict):
    """Call ``model``'s layers on the symbolic tensor ``x`` so they join the caller's graph.

    Nested Functional and Sequential models are flattened too; ``replace`` maps an operation (by
    id) to what is called in its place.
    """
    import keras

    def operation(op):
        if id(op) in replace:
            return replace[id(op)]
        if isinstance(op, keras.Model) and _flattenable(op):
            return lambda inputs, *args, **kwargs: _flat_call(op, inputs, replace)
        return op

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = operation(layer)(x)
        return x
    out = model._run_through_graph(x, operation_fn=operation)
    return out[0] if isinstance(out, (list, tuple)) else out


def _wrap(user, patch_size: int, input_range: str, output: str, idc: int, units: int):
    """(wrapped model, exact logit?, flattened?) -- see the module docstring."""
    import keras
    from keras import layers

    scale, offset = INPUT_RANGES[input_range]
    inputs = keras.Input((patch_size, patch_size, 3), name="patch")
    x = inputs if (scale, offset) == (1.0, 0.0) else layers.Rescaling(scale, offset, name="user_input_range")(inputs)
    flat = _flattenable(user)
    last = _output_operation(user) if flat else None
    exact = output == "logit"
    replace = {}
    if output == "probability" and last is not None and (
            _activation_name(last) == "sigmoid" and units == 1 or _activation_name(last) == "softmax" and units == 2):
        replace[id(last)] = _linear_twin(last)  # the model's own logits, before its last activation
        exact = True
    y = _flat_call(user, x, replace) if flat else user(x)
    if exact:
        if units == 1:
            z = y
        else:  # two-class logits: p_k = softmax(z)_k = sigmoid(z_k - z_other)
            diff = layers.Dense(1, use_bias=False, trainable=False, name="idc_logit")
            z = diff(y)
            diff.set_weights([np.array([[-1.0], [1.0]] if idc == 1 else [[1.0], [-1.0]], np.float32)])
    else:  # a probability without a recognisable last activation: the logit of the clipped probability
        if units == 2:
            pick = layers.Dense(1, use_bias=False, trainable=False, name="idc_column")
            y = pick(y)
            pick.set_weights([np.array([[0.0], [1.0]] if idc == 1 else [[1.0], [0.0]], np.float32)])
        p = keras.ops.clip(y, EPS, 1.0 - EPS)  # the bound of model.link.logit
        z = keras.ops.log(p) - keras.ops.log(1.0 - p)
    outputs = layers.Activation("sigmoid", name=OUTPUT_NAME)(z)
    wrapped = keras.Model(inputs, outputs, name=f"user_{user.name}")
    # A fresh copy owns its layers alone (the user's model's layers also belong to the user's graph,
    # and a shared layer's .output is the user's graph's, which Grad-CAM cannot use).
    fresh = keras.models.clone_model(wrapped)
    fresh.set_weights(wrapped.get_weights())
    return fresh, exact, flat


def find_cam_layer(model, name: str | None, path: Path, flat: bool = True) -> tuple[str | None, str | None]:
    """(the Grad-CAM layer's name, None) or (None, why Grad-CAM is unavailable).

    ``name`` (--cam-layer) must be a layer of the wrapped model with a (batch, h, w, channels)
    output; UserModelError lists the candidates otherwise. Without a name, the last
    Conv2D / SeparableConv2D / DepthwiseConv2D layer with such an output is taken.
    """
    spatial = [lyr for lyr in model.layers if len(getattr(lyr.output, "shape", ())) == 4]
    if name:
        found = next((lyr for lyr in model.layers if lyr.name == name), None)
        if found is None or found not in spatial:
            what = "has no layer" if found is None else "has a layer without a (batch, h, w, channels) output named"
            shown = ", ".join(lyr.name for lyr in spatial[-8:]) or "none"
            raise UserModelError(f"{path} {what} {name!r} for --cam-layer; layers with a spatial output: {shown}")
        return name, None
    if not flat:
        return None, (f"{path.name} is a subclassed Keras model, whose layers Grad-CAM cannot reach; save it as a "
                      "Functional or Sequential model")
    convs = [lyr for lyr in spatial if type(lyr).__name__ in CAM_LAYER_TYPES]
    if not convs:
        return None, (f"{path.name} has no {', '.join(CAM_LAYER_TYPES[:-1])} or {CAM_LAYER_TYPES[-1]} layer with a "
                      "(batch, h, w, channels) output; pass --cam-layer NAME to name one")
    return convs[-1].name, None


def check_on_patches(wrapped: WrappedModel, patches: np.ndarray) -> list[str]:
    """Run the user's and the wrapped model on a few real uint8 patches; return warnings, raise what does not fit.

    UserModelError when the outputs are not finite, when ``probability`` was declared and the
    outputs lie outside [0, 1] (``looks like logits: pass --output logit``), or when the wrapped
    model's P(IDC) leaves [0, 1]. A warning when ``logit`` was declared and every output lies in
    [0, 1] (probabilities declared as logits would be squashed into 0.5-0.73).
    """
    x = np.asarray(patches, np.float32)
    scale, offset = INPUT_RANGES[wrapped.input_range]
    raw = np.asarray(wrapped.user_model(x * scale + offset, training=False), np.float64)
    path, warnings = wrapped.path, []
    if not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).any(axis=1).sum())
        raise UserModelError(f"{path} gives non-finite outputs (NaN or inf) on {bad} of {len(x)} patches checked; "
                             f"check --input-range (given: {wrapped.input_range}) and the model itself")
    lo, hi = float(raw.min()), float(raw.max())
    if wrapped.output == "probability" and (lo < 0.0 or hi > 1.0):
        raise UserModelError(f"{path} was declared to output probabilities, but on {len(x)} patches its outputs "
                             f"range from {lo:.3g} to {hi:.3g}, outside [0, 1]: looks like logits: pass --output logit")
    if wrapped.output == "logit" and lo >= 0.0 and hi <= 1.0:
        warnings.append(f"{path.name} was declared to output logits, but every output on {len(x)} patches lies in "
                        "[0, 1]; if it outputs probabilities, leave out --output logit")
    p = np.asarray(wrapped.model(x, training=False), np.float64)[:, 0]
    if not (np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0):
        raise UserModelError(f"{path}: the wrapped model's P(IDC) on {len(x)} patches is not in [0, 1] "
                             f"({np.nanmin(p):.3g} to {np.nanmax(p):.3g}); check --output and --idc-index")
    expected = expected_probability(raw, wrapped.output, wrapped.idc_index)
    if not np.allclose(p, expected, atol=1e-4):
        raise RuntimeError(f"wrapping {path} changed its outputs (largest difference "
                           f"{np.abs(p - expected).max():.3g}); this is a bug in model/user_model.py")
    if np.ptp(p) < 1e-6:
        warnings.append(f"{path.name} gives the same P(IDC) ({p[0]:.4f}) to all {len(x)} patches checked; "
                        f"check --input-range (given: {wrapped.input_range})")
    return warnings


def expected_probability(raw: np.ndarray, output: str, idc_index: int) -> np.ndarray:
    """P(IDC) from the user's model's raw outputs (n, units), computed in NumPy: what the wrapper must give."""
    raw = np.asarray(raw, np.float64)
    if output == "probability":
        return raw[:, 0] if raw.shape[1] == 1 else raw[:, idc_index]
    if raw.shape[1] == 1:
        return sigmoid(raw[:, 0])
    return sigmoid(raw[:, idc_index] - raw[:, 1 - idc_index])
