"""Training-time augmentation that keeps tissue meaning, as batched TensorFlow ops.

Tissue has no canonical orientation, so the 8 flips/rotations (the dihedral group) are free
augmentation; stain varies between labs and slides, so colour is jittered in HED stain space
(haematoxylin, eosin, DAB; Ruifrok & Johnston's matrix, as scikit-image's rgb2hed: model/stain.py) plus mild
brightness. Nothing that changes morphology (no scaling, no elastic warps).
"""
from __future__ import annotations

import tensorflow as tf

from model import stain
from model.config import TrainConfig

# The HED matrices (model/stain.py, NumPy float64) as float32 graph constants.
RGB_FROM_HED = tf.constant(stain.RGB_FROM_HED, tf.float32)
HED_FROM_RGB = tf.constant(stain.HED_FROM_RGB, tf.float32)
_LOG_ADJUST = stain.LOG_ADJUST


def dihedral(x: tf.Tensor, k: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Rotate each image of a square batch by k[i]*90 degrees and flip it left-right where flip[i]."""
    rots = tf.stack([tf.image.rot90(x, r) for r in range(4)], axis=0)  # (4, B, H, W, C)
    x = tf.gather_nd(rots, tf.stack([k, tf.range(tf.shape(x)[0])], axis=1))
    return tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)


def hed_jitter(rgb01: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """Scale (alpha) and shift (beta) each stain's concentration; rgb in 0..1, (B, H, W, 3)."""
    stains = tf.math.log(tf.maximum(rgb01, 1e-6)) / _LOG_ADJUST @ HED_FROM_RGB
    stains = tf.maximum(stains, 0.0) * alpha[:, None, None, :] + beta[:, None, None, :]
    log_rgb = -(stains * -_LOG_ADJUST) @ RGB_FROM_HED
    return tf.clip_by_value(tf.exp(log_rgb), 0.0, 1.0)


def augment_batch(x_uint8: tf.Tensor, seed_pair: tf.Tensor,
                  stain_sigma: float = TrainConfig.stain_sigma) -> tf.Tensor:
    """A batch of uint8 patches -> augmented float32 patches in 0..255 (the models' input range)."""
    b = tf.shape(x_uint8)[0]
    seeds = tf.random.experimental.stateless_split(seed_pair, 5)
    k = tf.random.stateless_uniform([b], seeds[0], 0, 4, dtype=tf.int32)
    flip = tf.random.stateless_uniform([b], seeds[1]) < 0.5
    x = dihedral(tf.cast(x_uint8, tf.float32) / 255.0, k, flip)
    if stain_sigma > 0:
        alpha = tf.random.stateless_uniform([b, 3], seeds[2], 1 - stain_sigma, 1 + stain_sigma)
        beta = tf.random.stateless_uniform([b, 3], seeds[3], -stain_sigma, stain_sigma)
        x = hed_jitter(x, alpha, beta)
        brightness = tf.random.stateless_uniform([b, 1, 1, 1], seeds[4], 0.95, 1.05)
        x = tf.clip_by_value(x * brightness, 0.0, 1.0)
    return x * 255.0


def dihedral_views(x: tf.Tensor) -> list[tf.Tensor]:
    """The 8 flips/rotations of a batch, for test-time augmentation."""
    views = [tf.image.rot90(x, r) for r in range(4)]
    return views + [tf.reverse(v, axis=[2]) for v in views]
