"""The CNNs the pipeline can train, each built with the Keras Functional API.

Every model takes float32 RGB patches in 0..255 of shape (50, 50, 3) and ends in one sigmoid unit
(P(IDC)). The Functional API (not Sequential) and a named last convolution are what tf-keras-vis
needs on Keras 3: ``ReplaceToLinear`` fails on Sequential models, and its automatic layer search
fails on SeparableConv2D, so each builder records its Grad-CAM layer in ``LAST_CONV``.
Nothing is downloaded: keras.applications models are built with ``weights=None``.
"""
from __future__ import annotations

import keras
from keras import layers

from pipeline.names import PATCH_SIZE

INPUT_SHAPE = (PATCH_SIZE, PATCH_SIZE, 3)
LAST_CONV = "last_conv"  # name of the layer Grad-CAM reads in the models built here
# Keras' default 0.99 needs thousands of steps before the inference-time statistics settle; with a
# few thousand patches (tens of steps an epoch) validation would judge a model that doesn't exist yet.
BN_MOMENTUM = 0.9
# Width 48 trained for up to 60 epochs did no better than width 32 for 30 on the real sample's three
# splits, at 2-3x the training time and 0.7x the scoring speed (README, "Compute or data?").
DEFAULT_WIDTH = 32


def separable_cnn(width: int = DEFAULT_WIDTH, dropout: float = 0.25) -> keras.Model:
    """The default: a compact depthwise-separable CNN in the CancerNet lineage.

    A strided 3x3 stem first (depthwise convolutions at full 50x50 resolution are the slowest
    part of a separable CNN on a CPU; the stem makes the model about 5x faster), then three
    stages of SeparableConv2D (1, 2, 2 convolutions, widths w, 2w, 4w) with batch norm and max
    pooling, then global average pooling (fewer weights than CancerNet's Flatten+Dense(256), which
    over-fits a few thousand patches) and a small dense head.
    """
    inputs = keras.Input(INPUT_SHAPE, name="patch")
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
        if b < len(blocks):  # the last stage keeps its 6x6 map for Grad-CAM
            x = layers.MaxPooling2D(2, name=f"b{b}_pool")(x)
            x = layers.Dropout(dropout, name=f"b{b}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="gap_drop")(x)
    x = layers.Dense(2 * width, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="fc_drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="idc_probability")(x)
    return keras.Model(inputs, outputs, name="separable_cnn")


def plain_cnn(width: int = 32) -> keras.Model:
    """A plain 3-layer CNN like the first study on this dataset (Cruz-Roa et al. 2014)."""
    inputs = keras.Input(INPUT_SHAPE, name="patch")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    for i, filters in enumerate((width, 2 * width, 4 * width), start=1):
        name = LAST_CONV if i == 3 else f"conv{i}"
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="fc_drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="idc_probability")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


# keras.applications backbones: (constructor name, Grad-CAM layer, input side, rescale to 0..1?)
# Xception needs at least 71 px, so its input is resized; EfficientNet rescales 0..255 itself.
_APPLICATIONS = {
    "efficientnetb0": ("EfficientNetB0", "top_activation", PATCH_SIZE, False),
    "vgg16": ("VGG16", "block5_conv3", PATCH_SIZE, True),
    "resnet50": ("ResNet50", "conv5_block3_out", PATCH_SIZE, True),
    "xception": ("Xception", "block14_sepconv2_act", 75, True),
}


def application_cnn(key: str) -> keras.Model:
    """A keras.applications backbone trained from scratch (weights=None) with a sigmoid head."""
    ctor_name, cam_layer, side, rescale = _APPLICATIONS[key]
    inputs = keras.Input(INPUT_SHAPE, name="patch")
    x = inputs
    if side != PATCH_SIZE:
        x = layers.Resizing(side, side, name="resize")(x)
    if rescale:
        x = layers.Rescaling(1.0 / 255, name="scale")(x)
    # input_tensor makes the backbone's layers part of this graph (not a nested model), so the
    # Grad-CAM layer can be found by name on the outer model.
    backbone = getattr(keras.applications, ctor_name)(include_top=False, weights=None, input_tensor=x)
    features = backbone.get_layer(cam_layer).output
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(0.3, name="head_drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="idc_probability")(x)
    model = keras.Model(inputs, outputs, name=key)
    model.cam_layer = cam_layer
    return model


ARCHITECTURES = ("separable", "plain", *_APPLICATIONS)


def model_width(arch: str, width: int | None = None) -> int | None:
    """The width a ``build_model(arch, width)`` model gets: None for architectures without one."""
    return (width or DEFAULT_WIDTH) if arch.lower() == "separable" else None


def build_model(arch: str = "separable", width: int | None = None) -> tuple[keras.Model, str]:
    """Return (model, name of its Grad-CAM layer) for one of ``ARCHITECTURES``.

    ``width`` (first-stage filters) applies to the separable CNN only; None is ``DEFAULT_WIDTH``.
    """
    key = arch.lower()
    if key == "separable":
        return separable_cnn(model_width(key, width)), LAST_CONV
    if key == "plain":
        return plain_cnn(), LAST_CONV
    if key in _APPLICATIONS:
        return application_cnn(key), _APPLICATIONS[key][1]
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
