"""The whole pipeline on a tiny synthetic cohort, and on the real sample when it is present."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.config import TrainConfig
from pipeline import store
from pipeline.cli import main as cli


def test_run_writes_every_artifact_the_app_reads(tiny_run):
    for name in (store.RUN_META, store.MANIFEST, store.PATCHES, store.SPLIT, store.MODEL, store.HISTORY,
                 store.SCORES, store.EVALUATION, store.INGEST_REPORT):
        assert (tiny_run / name).exists(), name
    run = store.load_run(tiny_run)
    assert run.synthetic and run.meta["cam_layer"] == "last_conv"
    assert len(run.table) == len(run.patches) > 0
    assert run.table["prob"].between(0, 1).all()
    # no patient in two splits, and all three splits are used
    assert (run.table.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(run.table["split"]) == {"train", "val", "test"}
    # region masks travel with a synthetic run
    pid = run.table["patient_id"].iloc[0]
    assert store.read_region_mask(tiny_run, pid) is not None


def test_evaluation_says_split_and_counts(tiny_run):
    ev = json.loads((tiny_run / store.EVALUATION).read_text())
    test = ev["splits"]["test"]
    run = store.load_run(tiny_run)
    rows = run.table[run.table["split"] == "test"]
    assert test["n_patches"] == len(rows) and test["n_patients"] == rows["patient_id"].nunique()
    assert set(ev["thresholds"]) >= {"default", "f1_optimal", "youden_j", "sensitivity_95"}
    assert ev["thresholds_chosen_on"]["split"] == "val"
    at = test["at"]["default"]
    assert at["tp"] + at["fp"] + at["fn"] + at["tn"] == len(rows)


def test_scores_carry_the_neighbourhood_context_fitted_on_validation(tiny_run, tiny_cohort, tmp_path):
    import shutil

    from pipeline import context, logistic, score
    from pipeline.run import run_pipeline

    run = store.load_run(tiny_run)
    params = run.meta["context"]
    assert params["sigma_px"] in context.SIGMAS_PX and run.evaluation["context"] == params
    t = run.table
    # prob is exactly the context model applied to the model's own output; prob_patch is the patch alone.
    again = context.apply_context(params, t["patient_id"], t["x"], t["y"], logistic.logit(t["prob_uncalibrated"]))
    np.testing.assert_allclose(t["prob"], again, atol=1e-5)
    np.testing.assert_allclose(t["prob_patch"], score.apply_calibration(t["prob_uncalibrated"], run.meta["calibration"]),
                               atol=1e-5)
    assert {"roc_auc_patch", "pr_auc_patch"} <= set(run.evaluation["splits"]["test"])

    # --no-context re-scores without retraining, and then the score is the patch alone.
    copy = tmp_path / "no_context"
    shutil.copytree(tiny_run, copy)
    model_mtime = (copy / store.MODEL).stat().st_mtime_ns
    run_pipeline(tiny_cohort, copy, TrainConfig(epochs=2, seed=1), use_context=False)
    plain = store.load_run(copy)
    assert (copy / store.MODEL).stat().st_mtime_ns == model_mtime
    assert plain.meta["context"] is None
    np.testing.assert_allclose(plain.table["prob"], plain.table["prob_patch"])
    np.testing.assert_allclose(plain.table["prob"], t["prob_patch"], atol=1e-5)


def test_rerun_with_same_inputs_skips_every_stage(tiny_run, tiny_cohort, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run.iterdir() if p.is_file() and p.name != store.RUN_META}
    assert cli(["run", "--data", str(tiny_cohort), "--out", str(tiny_run), "--epochs", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "unchanged inputs" in out
    after = {p.name: p.stat().st_mtime_ns for p in tiny_run.iterdir() if p.is_file() and p.name != store.RUN_META}
    assert before == after


def test_a_changed_model_width_retrains(tiny_run, tiny_cohort, tmp_path):
    """The width is part of the training stage's inputs: a narrower model is trained, not the old one reused."""
    import shutil

    from model.architectures import DEFAULT_WIDTH
    from pipeline.run import run_pipeline

    assert store.read_meta(tiny_run)["train"]["width"] == DEFAULT_WIDTH
    copy = tmp_path / "narrow"
    shutil.copytree(tiny_run, copy)
    run_pipeline(tiny_cohort, copy, TrainConfig(epochs=2, seed=1, width=8))
    meta = store.read_meta(copy)
    assert meta["train"]["width"] == 8
    assert meta["train"]["params"] < store.read_meta(tiny_run)["train"]["params"]


def test_score_command_reproduces_the_runs_own_scores(tiny_run, tiny_cohort, tmp_path):
    new = tmp_path / "rescored"
    assert cli(["score", "--run", str(tiny_run), "--data", str(tiny_cohort), "--out", str(new)]) == 0
    a, b = store.load_run(tiny_run), store.load_run(new)
    np.testing.assert_allclose(a.table["prob"], b.table["prob"], atol=1e-5)
    assert b.evaluation["thresholds"] == a.evaluation["thresholds"]
    assert set(b.table["split"]) == {"test"} and b.synthetic


def test_score_refuses_context_weights_of_an_older_definition(tiny_run, tiny_cohort, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    meta = store.read_meta(old)
    store.update_meta(old, context={k: v for k, v in meta["context"].items() if k != "version"})
    assert cli(["score", "--run", str(old), "--data", str(tiny_cohort), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "context version 1" in err
    assert not (tmp_path / "new").exists()  # refused before any work


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert cli(["run", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["score", "--run", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "n")]) == 2
    assert "not a finished, trained run" in capsys.readouterr().err


def test_stale_scores_are_reported(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    store.write_scores(copy, np.zeros(3), np.zeros(3))
    with pytest.raises(store.ArtifactError, match="stale scores"):
        store.load_run(copy)


def test_compare_trains_each_architecture_on_the_same_split(tiny_cohort, tmp_path):
    from pipeline.compare import compare

    table = compare(tiny_cohort, tmp_path / "cmp", TrainConfig(epochs=1, seed=1), archs=("separable", "plain"), minutes=1)
    assert table["architecture"].tolist() == ["separable", "plain"]
    assert (table["params"] > 0).all() and (table["score_patches_per_s"] > 0).all()
    splits = [store.read_split(tmp_path / "cmp" / a)["patients"] for a in ("separable", "plain")]
    assert splits[0] == splits[1]
    # the patch store is shared, not copied
    assert (tmp_path / "cmp" / "plain" / store.PATCHES).stat().st_ino == (tmp_path / "cmp" / "separable" / store.PATCHES).stat().st_ino
    assert "| separable |" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_evaluation_records_the_mean_colour_baseline(tiny_run):
    """Both AUCs are recorded: the CNN's and a logistic regression's on mean patch colour."""
    test = store.load_run(tiny_run).evaluation["splits"]["test"]
    assert 0.0 <= test["mean_colour_baseline_roc_auc"] <= 1.0
    assert 0.0 <= test["roc_auc"] <= 1.0


def test_pipeline_on_real_patches(real_sample, tmp_path):
    """Real PNGs end to end with a short training: the sample's quirks are handled, not skipped."""
    from pipeline.run import run_pipeline

    out = tmp_path / "real"
    report = run_pipeline(real_sample, out, TrainConfig(epochs=1, seed=0))
    run = store.load_run(out)
    assert not run.synthetic
    assert len(run.table) == 8671 and run.table["patient_id"].nunique() == 209
    assert store.read_ingest_report(out).empty
    from PIL import Image

    small = sum(Image.open(p).size != (50, 50) for p in real_sample.glob("*/*/*.png"))
    edge = run.table[(run.table["width"] < 50) | (run.table["height"] < 50)]
    assert len(edge) == small > 0  # every edge patch kept, with its true size
    assert (run.patches[edge.index[0]][edge["height"].iloc[0]:] == store.PAD_VALUE).all()
    test = report["splits"]["test"]
    assert test["n_patients"] >= 25 and test["roc_auc"] > 0.6  # one epoch already learns something real


def test_shared_ingest_keeps_a_reruns_finished_stages(tiny_run, tmp_path):
    from pipeline.compare import share_ingest

    other = tmp_path / "other"
    share_ingest(tiny_run, other)
    assert set(store.read_meta(other)["stages"]) == {"ingest"}
    store.mark_stage(other, "split", "fp-split")
    share_ingest(tiny_run, other)  # a re-run, e.g. of bench/report_real.py: nothing is redone
    assert store.read_meta(other)["stages"]["split"]["fingerprint"] == "fp-split"
    assert (other / store.PATCHES).samefile(tiny_run / store.PATCHES)  # hard-linked, not copied


def test_the_compare_table_says_n_a_with_the_reason_never_nan():
    import pandas as pd

    from pipeline.compare import to_markdown

    row = dict(architecture="separable", f1=0.5, balanced_accuracy=float("nan"), roc_auc=float("nan"), pr_auc=0.4,
               roc_auc_patch=0.7, params=45601, epochs=2, train_patches_per_s=500.0, score_patches_per_s=2000.0,
               test_patients=3, test_patches=812)
    text = to_markdown(pd.DataFrame([row]), minutes=1)
    assert "nan" not in text.lower()
    assert "| separable | 0.500 | n/a | n/a | 0.400 | 0.700 | 45,601 | 2 | 500 | 2,000 |" in text
    assert "n/a: not defined on this test split" in text
    assert "n/a" not in to_markdown(pd.DataFrame([{**row, "balanced_accuracy": 0.6, "roc_auc": 0.8}]), minutes=1)
