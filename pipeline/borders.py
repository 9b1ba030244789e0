"""Where a patch sits relative to its label's region: inside it, on its border, or alone.

The dataset's labels come from IDC regions outlined by a pathologist at low magnification, so a patch
on a region's border (a touching neighbour has the other label) may be half carcinoma, half not, and
its label is the least certain of all. Knowing how a model's errors split between borders and
interiors tells label noise from model error. Pure NumPy; the grid is the dataset's 50-px one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.names import PATCH_SIZE

INTERIOR, BORDER, ISOLATED = "interior", "border", "isolated"
POSITIONS = (INTERIOR, BORDER, ISOLATED)
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def touching_neighbours(patient_ids, x, y, labels) -> tuple[np.ndarray, np.ndarray]:
    """For each patch: how many of its 8 touching neighbours exist, and how many have the other label."""
    codes, _ = pd.factorize(pd.Series(np.asarray(patient_ids)).astype(str))
    gx = (np.asarray(x, np.int64) - 1) // PATCH_SIZE + 1   # +1: a neighbour at column -1 stays >= 0
    gy = (np.asarray(y, np.int64) - 1) // PATCH_SIZE + 1
    lab = np.asarray(labels, np.int64)
    if not (len(codes) == len(gx) == len(gy) == len(lab)):
        raise ValueError("patient_ids, x, y and labels must have equal lengths")
    if len(lab) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    side = int(max(gx.max(), gy.max())) + 2               # one patient's grid fits in side x side cells
    key = (codes.astype(np.int64) * side + gy) * side + gx
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    present = np.zeros(len(lab), np.int64)
    differ = np.zeros(len(lab), np.int64)
    for dy, dx in _OFFSETS:
        wanted = key + dy * side + dx
        at = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
        found = sorted_keys[at] == wanted
        present += found
        differ += found & (lab[order[at]] != lab)
    return present, differ


def positions(patient_ids, x, y, labels) -> np.ndarray:
    """'border' (a touching neighbour has the other label), 'interior' (neighbours, all alike) or 'isolated'."""
    present, differ = touching_neighbours(patient_ids, x, y, labels)
    return np.where(differ > 0, BORDER, np.where(present > 0, INTERIOR, ISOLATED))
