"""The CNNs the pipeline can train, each built with the Keras Functional API.

Every model takes float32 RGB patches in 0..255 of shape (patch_size, patch_size, 3) and ends in one
sigmoid unit (P(IDC)). The patch side is the dataset's, not the model's: ``build_model`` takes it as a
required keyword (the pipeline passes pipeline.names.PATCH_SIZE), so model/ holds no second copy of
it; a loaded model knows its own from its input shape. Architecture names and the default width
are model.config's (``ARCHITECTURES``, ``DEFAULT_WIDTH``), re-exported here.

The Functional API (not Sequential) and a named last convolution are what tf-keras-vis needs on
Keras 3: ``ReplaceToLinear`` fails on Sequential models, and its automatic layer search fails on
SeparableConv2D, so each builder names its Grad-CAM layer (``LAST_CONV`` for the CNNs built here;
build_model returns it). Nothing is downloaded: keras.applications models are built with ``weights=None``.
"""
from __future__ import annotations

import keras
from keras import layers

from model.config import ARCHITECTURES, DEFAULT_WIDTH, TrainConfig

__all__ = ["ARCHITECTURES", "BN_MOMENTUM", "DEFAULT_WIDTH", "LAST_CONV", "application_cnn", "build_model",
           "plain_cnn", "separable_cnn"]

LAST_CONV = "last_conv"  # name of the layer Grad-CAM reads in the models built here
# Keras' default 0.99 needs thousands of steps before the inference-time statistics settle; with a
# few thousand patches (tens of steps an epoch) validation would judge a model that doesn't exist yet.
BN_MOMENTUM = 0.9


def _input_shape(patch_size: int) -> tuple[int, int, int]:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a whole number of pixels >= 1, got {patch_size!r}")
    return patch_size, patch_size, 3


def separable_cnn(width: int = DEFAULT_WIDTH, dropout: float = 0.25, *, patch_size: int) -> keras.Model:
    """The default: a compact depthwise-separable CNN in the CancerNet lineage.

    A strided 3x3 stem first (depthwise convolutions at full patch resolution are the slowest
    part of a separable CNN on a CPU; the stem makes the model about 5x faster), then three
    stages of SeparableConv2D (1, 2, 2 convolutions, widths w, 2w, 4w) with batch norm and max
    pooling, then global average pooling (fewer weights than CancerNet's Flatten+Dense(256), which
    over-fits a few thousand patches) and a small dense head.
    """
    inputs = keras.Input(_input_shape(patch_size), name="patch")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    blocks = [(width, 1), (2 * width, 2), (4 * width, 2)]
    for b, (filters, n_convs) in enumerate(blocks, start=1):
        for c in range(1, n_convs + 1):
            last = b == len(blocks) and c == n_convs
            x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                                       name=LAST_CONV if last else f"b{b}_sepconv{c}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{b}_bn{c}")(x)
            x = layers.Activation("relu", name=f"b{b}_relu{c}")(x)
        if b < len(blocks):  # the last stage keeps its map (6x6 for 50 px patches) for Grad-CAM
            x = layers.MaxPooling2D(2, name=f"b{b}_pool")(x)
            x = layers.Dropout(dropout, name=f"b{b}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="gap_drop")(x)
    x = layers.Dense(2 * width, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="fc_drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="idc_probability")(x)
    return keras.Model(inputs, outputs, name="separable_cnn")


def plain_cnn(*, patch_size: int) -> keras.Model:
    """A plain 3-layer CNN like the first study on this dataset (Cruz-Roa et al. 2014); fixed widths 32, 64, 128."""
    inputs = keras.Input(_input_shape(patch_size), name="patch")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    for i, filters in enumerate((32, 64, 128), start=1):
        name = LAST_CONV if i == 3 else f"conv{i}"
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="fc_drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="idc_probability")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


# keras.applications backbones: (constructor name, Grad-CAM layer, least input side, rescale to 0..1?)
# Xception needs at least 71 px, so a smaller patch is resized to 75; EfficientNet rescales 0..255 itself.
_APPLICATIONS = {
    "efficientnetb0": ("EfficientNetB0", "top_activation", None, False),
    "vgg16": ("VGG16", "block5_conv3", None, True),
    "resnet50": ("ResNet50", "conv5_block3_out", None, True),
    "xception": ("Xception", "block14_sepconv2_act", 71, True),
}
_XCEPTION_SIDE = 75  # what a patch under Xception's 71 px is resized to


def application_cnn(key: str, *, patch_size: int) -> keras.Model:
    """A keras.applications backbone trained from scratch (weights=None) with a sigmoid head."""
    ctor_name, cam_layer, least_side, rescale = _APPLICATIONS[key]
    inputs = keras.Input(_input_shape(patch_size), name="patch")
    x = inputs
    if least_side is not None and patch_size < least_side:
        x = layers.Resizing(_XCEPTION_SIDE, _XCEPTION_SIDE, name="resize")(x)
    if rescale:
        x = layers.Rescaling(1.0 / 255, name="scale")(x)
    # input_tensor makes the backbone's layers part of this graph (not a nested model), so the
    # Grad-CAM layer can be found by name on the outer model.
    backbone = getattr(keras.applications, ctor_name)(include_top=False, weights=None, input_tensor=x)
    features = backbone.get_layer(cam_layer).output
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(0.3, name="head_drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="idc_probability")(x)
    return keras.Model(inputs, outputs, name=key)


assert set(ARCHITECTURES) == {"separable", "plain", *_APPLICATIONS}, "model.config.ARCHITECTURES is out of date"


def build_model(arch: str = "separable", width: int | None = None, *, patch_size: int) -> tuple[keras.Model, str]:
    """Return (model, name of its Grad-CAM layer) for one of ``ARCHITECTURES``.

    ``width`` (first-stage filters) applies to the separable CNN only and is resolved as
    TrainConfig resolves it (None is ``DEFAULT_WIDTH``; ignored for the other architectures), so
    ``build_model(c.arch, c.width, ...)`` of any ``TrainConfig`` c builds the model c describes.
    ``patch_size`` (required, keyword only) is the side of the square RGB patches the model takes.
    An unknown ``arch`` raises model.config.ConfigError (a ValueError) naming the choices.
    """
    key = arch.lower()
    width = TrainConfig(arch=key, width=width).width
    if key == "separable":
        return separable_cnn(width, patch_size=patch_size), LAST_CONV
    if key == "plain":
        return plain_cnn(patch_size=patch_size), LAST_CONV
    return application_cnn(key, patch_size=patch_size), _APPLICATIONS[key][1]
