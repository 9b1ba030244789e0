import numpy as np
import pandas as pd
import pytest

from pipeline.split import split_patients


def _cohort(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    pids, labels = [], []
    for i in range(n_patients):
        n = rng.integers(20, 200)
        pids += [f"{1000 + i}"] * n
        labels += list((rng.random(n) < rng.beta(1, 2.5)).astype(int))
    return np.array(pids), np.array(labels)


def test_every_patient_in_exactly_one_split_with_target_shares():
    pids, labels = _cohort()
    a = split_patients(pids, labels, seed=3)
    assert set(a) == set(pids)  # a dict: one split per patient, so no patient can leak across splits
    counts = pd.Series(a).value_counts()
    assert counts["train"] == 42 and counts["val"] == 9 and counts["test"] == 9


def test_split_is_stratified_on_positive_fraction():
    pids, labels = _cohort(90, seed=1)
    a = split_patients(pids, labels, seed=0)
    frac = pd.DataFrame({"pid": pids, "y": labels}).groupby("pid")["y"].mean()
    by_split = frac.groupby(frac.index.map(a)).mean()
    assert by_split.max() - by_split.min() < 0.08


def test_seeded_and_seed_sensitive():
    pids, labels = _cohort()
    assert split_patients(pids, labels, seed=5) == split_patients(pids, labels, seed=5)
    assert split_patients(pids, labels, seed=5) != split_patients(pids, labels, seed=6)


def test_bad_arguments():
    pids, labels = _cohort(10)
    with pytest.raises(ValueError, match="sum"):
        split_patients(pids, labels, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="at least 3 patients"):
        split_patients(["1", "2"], [0, 1])
