"""A patch's position in its label's region, from its touching neighbours."""
import numpy as np
import pytest

from pipeline import borders


def _grid(labels: np.ndarray, pid: str = "1"):
    rows, cols = np.nonzero(labels >= 0)
    return [pid] * len(rows), cols * 50 + 1, rows * 50 + 1, labels[rows, cols]


def test_positions_on_a_known_region():
    # -1: no patch. A 3x3 IDC block in the left of a 3x5 slide, a gap, then one lone patch.
    labels = np.array([[1, 1, 1, 0, -1],
                       [1, 1, 1, 0, -1],
                       [1, 1, 1, 0, -1],
                       [-1, -1, -1, -1, -1],
                       [-1, -1, -1, -1, 0]])
    pid, x, y, lab = _grid(labels)
    present, differ = borders.touching_neighbours(pid, x, y, lab)
    where = dict(zip(zip(y, x), borders.positions(pid, x, y, lab)))
    assert where[(51, 1)] == borders.INTERIOR           # left column of the block: all neighbours IDC
    assert where[(51, 101)] == borders.BORDER           # touches the non-IDC column
    assert where[(51, 151)] == borders.BORDER
    assert where[(201, 201)] == borders.ISOLATED
    centre = list(zip(y, x)).index((51, 51))
    assert present[centre] == 8 and differ[centre] == 0
    right = list(zip(y, x)).index((51, 101))
    assert present[right] == 8 and differ[right] == 3


def test_patients_do_not_touch_each_other():
    a = _grid(np.array([[1]]), "1")
    b = _grid(np.array([[-1, 0]]), "2")                  # same slide coordinates next door, another patient
    pid, x, y, lab = (np.concatenate([np.asarray(u), np.asarray(v)]) for u, v in zip(a, b))
    assert list(borders.positions(pid, x, y, lab)) == [borders.ISOLATED, borders.ISOLATED]


def test_lengths_must_match():
    with pytest.raises(ValueError, match="equal lengths"):
        borders.touching_neighbours(["1"], [1, 51], [1], [0])
