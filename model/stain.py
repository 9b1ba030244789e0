"""The HED stain space (haematoxylin, eosin, DAB) as NumPy constants: no TensorFlow, no PyTorch.

Ruifrok & Johnston's matrix as scikit-image's ``rgb_from_hed`` (skimage.color.colorconv), with its
third row the cross product of the first two, and its inverse. model/augment.py turns them into
TensorFlow constants for the stain jitter; bench/capacity_torch.py into PyTorch tensors, so the two
augmentations use one definition.
"""
from __future__ import annotations

import numpy as np

RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
RGB_FROM_HED[2, :] = np.cross(RGB_FROM_HED[0, :], RGB_FROM_HED[1, :])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
RGB_FROM_HED.flags.writeable = False
HED_FROM_RGB.flags.writeable = False
# Optical density is log(rgb) / log(1e-6): rgb is clipped at 1e-6, which maps to density 1.
LOG_ADJUST = float(np.log(1e-6))
