"""`run --reviews`: training with reviewed labels (pipeline/run.py, pipeline.agreement.reviewed_labels).

Flipped labels are trained on, unsure patches left out of training and validation, the reviews used
are recorded in run.json and the training's fingerprint (new reviews: a retrain), and the test
split is reported against both label sets.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from model.config import TrainConfig
from pipeline import evaluate, reviews, store, train
from pipeline.cli import main
from pipeline.run import run_pipeline


def test_a_run_without_reviews_keeps_todays_fingerprint(tiny_run):
    meta = store.read_meta(tiny_run)
    expected = store.fingerprint(meta["stages"]["split"]["fingerprint"],
                                 TrainConfig(epochs=2, seed=1).fingerprint_settings())
    assert meta["stages"]["train"]["fingerprint"] == expected and "reviews_used" not in meta


@pytest.fixture
def reviewed_setup(tmp_path, tiny_run):
    """A copy of the tiny run (the reviews are made on it) and the patches each review case uses."""
    runs = tmp_path / "runs"
    base = runs / "base"
    shutil.copytree(tiny_run, base, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    table = store.load_run(base).table
    rows = {s: table.index[table["split"] == s].tolist() for s in ("train", "val", "test")}
    case = {"flip": rows["train"][0], "tie": rows["train"][1], "all_unsure": rows["train"][2],
            "val_flip": rows["val"][0], "test_flip": rows["test"][0]}
    votes = {"flip": [("alice", "label_wrong")], "tie": [("alice", "agree"), ("bob", "label_wrong")],
             "all_unsure": [("alice", "unsure")], "val_flip": [("alice", "label_wrong"), ("bob", "label_wrong")],
             "test_flip": [("bob", "label_wrong")]}
    rs = reviews.open_for_run(base)
    for name, row in case.items():
        p = table.loc[row]
        for who, verdict in votes[name]:
            rs.add(patient_id=p["patient_id"], x=int(p["x"]), y=int(p["y"]), verdict=verdict, reviewer=who)
    return runs, base, table, case, rs


def test_training_with_reviews_uses_the_reviewed_labels(reviewed_setup, tiny_cohort, monkeypatch, capsys):
    runs, base, table, case, rs = reviewed_setup
    seen = []
    real = train.train

    def spy(run_dir, config, **kw):
        seen.append(kw)
        return real(run_dir, config, **kw)

    monkeypatch.setattr(train, "train", spy)
    out = runs / "reviewed"
    code = main(["run", "--data", str(tiny_cohort), "--out", str(out), "--epochs", "1", "--seed", "1",
                 "--reviews", str(base)])
    assert code == 0
    printed = capsys.readouterr().out

    # What train.train saw: the dataset labels, flipped where the consensus says so; unsure left out.
    assert len(seen) == 1
    labels, keep = seen[0]["labels"], seen[0]["keep"]
    manifest = store.read_manifest(out)
    assert manifest[["patient_id", "x", "y"]].astype(str).values.tolist() == \
        table[["patient_id", "x", "y"]].astype(str).values.tolist()
    dataset = manifest["label"].to_numpy()
    flipped = [case["flip"], case["val_flip"], case["test_flip"]]
    assert np.array_equal(labels[flipped], 1 - dataset[flipped])
    others = np.setdiff1d(np.arange(len(dataset)), flipped)
    assert np.array_equal(labels[others], dataset[others])
    assert np.flatnonzero(~keep).tolist() == sorted([case["tie"], case["all_unsure"]])

    meta = store.read_meta(out)
    used = meta["reviews_used"]
    assert used["store"] == str(reviews.cohort_store_path(base).resolve())
    assert used["n_reviews"] == 7 and used["max_id"] == int(rs.all()["id"].max())
    assert used["rule"] == {"rule": "majority", "min_reviewers": 1}
    assert used["counts"]["n_flipped"] == 3 and used["counts"]["n_unsure"] == 2
    n_train = int((table["split"] == "train").sum())
    assert meta["train"]["n_train"] == n_train - 2 and meta["train"]["labels"] == "reviewed"

    # Test metrics against both label sets, in evaluation.json and in the report.
    report = store.read_evaluation(out)
    test = report["splits"]["test"]
    assert test["n_patches"] == int((table["split"] == "test").sum())
    assert test["reviewed_labels"]["n_patches"] == test["n_patches"]
    assert report["reviewed_labels"]["test_labels_flipped"] == 1
    assert test["reviewed_labels"]["n_positive"] == test["n_positive"] + (1 if dataset[case["test_flip"]] == 0 else -1)
    assert "reviewed labels" in report["thresholds_chosen_on"]["split"]
    assert "Evaluation on the test split" in printed and "Against the reviewed labels (1 test labels flipped" in printed
    assert "Against the reviewed labels" in evaluate.format_report(report)

    # Unchanged reviews: nothing retrains. A new review: the fingerprint changes and it retrains.
    fp = meta["stages"]["train"]["fingerprint"]
    run_pipeline(tiny_cohort, out, TrainConfig(epochs=1, seed=1), reviews=reviews.cohort_store_path(base))
    assert len(seen) == 1 and store.read_meta(out)["stages"]["train"]["fingerprint"] == fp
    p = table.loc[case["tie"]]
    rs.add(patient_id=p["patient_id"], x=int(p["x"]), y=int(p["y"]), verdict="label_wrong", reviewer="carol")
    run_pipeline(tiny_cohort, out, TrainConfig(epochs=1, seed=1), reviews=base)
    assert len(seen) == 2 and store.read_meta(out)["stages"]["train"]["fingerprint"] != fp
    labels, keep = seen[1]["labels"], seen[1]["keep"]
    assert labels[case["tie"]] == 1 - dataset[case["tie"]] and keep[case["tie"]]  # 2 of 3 now say wrong
    assert store.read_meta(out)["reviews_used"]["n_reviews"] == 8


def test_a_missing_store_is_a_usage_error(tmp_path, tiny_cohort, capsys):
    code = main(["run", "--data", str(tiny_cohort), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--reviews", str(tmp_path / "nowhere.sqlite")])
    assert code == 2 and "no reviews store" in capsys.readouterr().err


def test_the_rule_decides_the_labels_and_is_part_of_the_fingerprint(reviewed_setup):
    from pipeline.agreement import ConsensusRule
    from pipeline.run import open_reviews, reviewed_training_labels

    runs, base, table, case, rs = reviewed_setup
    assert open_reviews(base).path == rs.path == open_reviews(rs.path).path == open_reviews(rs.path.parent).path
    majority, used_m = reviewed_training_labels(base, rs, ConsensusRule())
    anyone, used_a = reviewed_training_labels(base, rs, ConsensusRule("any"))
    two, used_2 = reviewed_training_labels(base, rs, ConsensusRule("majority", min_reviewers=2))
    t = {name: r.table for name, r in (("m", majority), ("a", anyone), ("2", two))}
    assert t["m"].loc[case["tie"], "unsure"] and not t["m"].loc[case["tie"], "flipped"]
    assert t["a"].loc[case["tie"], "flipped"] and not t["a"].loc[case["tie"], "unsure"]  # one 'wrong' is enough
    # with 2 reviewers needed, a lone 'label is wrong' flips nothing and leaves the patch out of training
    assert not t["2"].loc[case["flip"], "flipped"] and t["2"].loc[case["flip"], "unsure"]
    assert t["2"].loc[case["val_flip"], "flipped"]
    assert used_m["fingerprint"] == used_a["fingerprint"] and used_m["rule"] != used_a["rule"]
    assert used_2["rule"] == {"rule": "majority", "min_reviewers": 2}
