"""bench.learning_curve's patch subsets: a share of every training patient's patches, nested over shares."""
import numpy as np
import pytest

from bench.learning_curve import patch_subset


def test_patch_subset_keeps_a_share_of_each_patient_nested():
    pids = np.array(["a"] * 4 + ["b"] * 8 + ["c"] * 2 + ["d"] + ["z"] * 5)
    rows = np.arange(15)  # patient z's rows are not training rows: never chosen
    quarter, half, whole = (patch_subset(pids, rows, f, seed=3) for f in (0.25, 0.5, 1.0))
    counts = lambda chosen: {p: int((pids[chosen] == p).sum()) for p in "abcdz"}  # noqa: E731
    assert counts(quarter) == {"a": 1, "b": 2, "c": 1, "d": 1, "z": 0}  # ceil(share x count), at least one
    assert counts(half) == {"a": 2, "b": 4, "c": 1, "d": 1, "z": 0}
    assert whole.tolist() == rows.tolist()
    assert set(quarter) <= set(half) <= set(whole)
    assert list(quarter) == sorted(quarter)
    assert patch_subset(pids, rows, 0.5, seed=4).tolist() != half.tolist()  # another seed, another draw


def test_patch_subset_refuses_a_share_outside_0_1():
    with pytest.raises(ValueError, match="fraction"):
        patch_subset(np.array(["a"]), np.array([0]), 0.0, seed=0)
