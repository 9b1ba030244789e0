"""Faults of the run folder and of training (issue 9): no run overwrites another run or the user's files,
synth replaces only its own cohorts, interrupted training resumes only what it can and may, single-class
splits say which metrics are undefined, and every artifact gets the same file mode."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from model.config import TrainConfig
from pipeline import store
from pipeline.names import MASK_DIR, PATCH_SIZE, SYNTHETIC_MARKER

from .conftest import run_cli, tree_checksums

TINY_RUN_ARGS = ("--epochs", "2", "--seed", "1")  # what tests/conftest.py trained tiny_run with


def _copy_run(tiny_run: Path, dest: Path) -> Path:
    shutil.copytree(tiny_run, dest)
    return dest


# --------------------------------------------------------------------------- 1. run folder identity
def test_score_refuses_to_overwrite_another_finished_run(tiny_run, tiny_cohort, tmp_path, capsys):
    other = _copy_run(tiny_run, tmp_path / "other-run")
    before = tree_checksums(other)
    code, _, err = run_cli(capsys, "score", "--run", tiny_run, "--data", tiny_cohort, "--out", other)
    assert code == 2
    assert str(other) in err and "made by `pipeline run`" in err
    assert "--out a new folder" in err and "--force" in err
    assert tree_checksums(other) == before  # model, split and scores of the other run untouched


def test_run_refuses_a_folder_holding_the_users_files(tiny_cohort, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "slides").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "slides" / "a.csv").write_text("1,2,3")
    before = tree_checksums(mine)
    code, _, err = run_cli(capsys, "run", "--data", tiny_cohort, "--out", mine, *TINY_RUN_ARGS)
    assert code == 2
    assert str(mine) in err and "not a run folder" in err and "notes.txt" in err and "--force" in err
    assert tree_checksums(mine) == before and not (mine / store.RUN_META).exists()


def test_out_holding_the_data_is_refused_even_with_force(cohort_copy, capsys):
    # --force would move the data aside with the folder: refused whatever the flags.
    before = tree_checksums(cohort_copy)
    code, _, err = run_cli(capsys, "run", "--data", cohort_copy, "--out", cohort_copy, "--force", *TINY_RUN_ARGS)
    assert code == 2 and f"--out {cohort_copy} holds the data folder" in err
    assert tree_checksums(cohort_copy) == before


def test_run_refuses_a_run_folder_made_from_other_data(tiny_run, cohort_copy, tmp_path, capsys):
    # The same patches under another path are other data as far as the run folder can know.
    other = _copy_run(tiny_run, tmp_path / "other-data-run")
    before = tree_checksums(other)
    code, _, err = run_cli(capsys, "run", "--data", cohort_copy, "--out", other, *TINY_RUN_ARGS)
    assert code == 2
    assert str(other) in err and f"data {store.read_meta(tiny_run)['data_root']}" in err
    assert tree_checksums(other) == before


def test_force_moves_the_other_run_aside_and_keeps_it_whole(tiny_run, tiny_cohort, tmp_path, capsys):
    other = _copy_run(tiny_run, tmp_path / "other-run")
    before = tree_checksums(other)
    code, out, _ = run_cli(capsys, "score", "--run", tiny_run, "--data", tiny_cohort, "--out", other, "--force")
    assert code == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("other-run.replaced-")]
    assert len(aside) == 1 and "moved it aside to" in out and aside[0].name in out
    assert tree_checksums(aside[0]) == before  # nothing of the old run was deleted or changed
    made_by = store.read_meta(other)["made_by"]
    assert made_by == {"command": "score", "data_root": str(tiny_cohort.resolve()),
                       "source_run": str(tiny_run.resolve())}
    # The scored folder is now a `score` folder: `run` may not write into it either.
    code, _, err = run_cli(capsys, "run", "--data", tiny_cohort, "--out", other, *TINY_RUN_ARGS)
    assert code == 2 and "made by `pipeline score`" in err


def test_a_rerun_into_its_own_folder_still_resumes_even_one_written_before_identity_was_recorded(
        tiny_run, tiny_cohort, tmp_path, capsys):
    own = _copy_run(tiny_run, tmp_path / "own")
    meta = json.loads((own / store.RUN_META).read_text())
    meta.pop("made_by", None)  # as written by earlier versions (and by compare.share_ingest)
    (own / store.RUN_META).write_text(json.dumps(meta))
    model = (own / store.MODEL).read_bytes()
    code, out, _ = run_cli(capsys, "run", "--data", tiny_cohort, "--out", own, *TINY_RUN_ARGS)
    assert code == 0 and "train: unchanged inputs" in out
    assert (own / store.MODEL).read_bytes() == model
    assert store.read_meta(own)["made_by"]["command"] == "run"


@pytest.mark.parametrize("holds", ["users_files", "another_run"])
def test_compare_refuses_an_architecture_folder_that_is_not_its_own_before_writing_anything(
        tiny_run, tiny_cohort, tmp_path, capsys, holds):
    # The second architecture's folder: compare used to write the shared ingest into it before run claimed it.
    out = tmp_path / "compare"
    theirs = out / "separable"
    if holds == "users_files":
        theirs.mkdir(parents=True)
        (theirs / "notes.txt").write_text("my notes")
    else:
        _copy_run(tiny_run, theirs)  # a run of the same data, but made by `score`
        meta = json.loads((theirs / store.RUN_META).read_text())
        meta["made_by"] = {"command": "score", "data_root": str(tiny_cohort.resolve()), "source_run": "/elsewhere"}
        (theirs / store.RUN_META).write_text(json.dumps(meta))
    before = tree_checksums(out)
    code, _, err = run_cli(capsys, "compare", "--data", tiny_cohort, "--out", out, "--archs", "plain", "separable",
                           "--epochs", "1", "--minutes", "0.05")
    assert code == 2 and f"--out {theirs}" in err and "--force" in err
    assert ("not a run folder" in err and "notes.txt" in err) if holds == "users_files" else \
        "made by `pipeline score`" in err
    assert tree_checksums(out) == before and sorted(p.name for p in out.iterdir()) == ["separable"]  # nor plain/


def test_a_shared_ingest_claims_the_folder_before_writing_into_it(tiny_run, tmp_path):
    # compare and bench/report_real.py give each further run the first one's ingest: never into the user's folder.
    from pipeline.compare import share_ingest
    from pipeline.errors import UsageError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(UsageError, match=r"is not empty \(notes.txt\) and is not a run folder.*--force"):
        share_ingest(tiny_run, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


# --------------------------------------------------------------------------- 2. synth writes only its own cohorts
def _users_patients(root: Path) -> None:
    """A user's own dataset with ids in the synthetic range (>= 90001), and a file of theirs."""
    for pid in ("90001", "90002"):
        for label in ("0", "1"):
            d = root / pid / label
            d.mkdir(parents=True)
            (d / f"{pid}_idx5_x1_y1_class{label}.png").write_bytes(b"the user's patch " + pid.encode())
    (root / "README.txt").write_text("my cohort")


def test_synth_refuses_a_folder_of_user_patients_without_its_marker(tmp_path, capsys):
    users = tmp_path / "users"
    _users_patients(users)
    before = tree_checksums(users)
    code, _, err = run_cli(capsys, "synth", "--out", users, "--patients", "1")
    assert code == 2
    assert str(users) in err and SYNTHETIC_MARKER in err and "--out a new or empty folder" in err
    assert tree_checksums(users) == before


def test_synth_refuses_a_cohort_holding_what_it_did_not_write(tmp_path, capsys):
    from pipeline.synth import generate_cohort

    cohort = tmp_path / "cohort"
    generate_cohort(cohort, n_patients=1, seed=3, workers=1, progress=False)
    (cohort / "12345" / "0").mkdir(parents=True)
    (cohort / "12345" / "0" / "mine.png").write_bytes(b"user")
    before = tree_checksums(cohort)
    code, _, err = run_cli(capsys, "synth", "--out", cohort, "--patients", "2")
    assert code == 2 and str(cohort) in err and "12345" in err
    assert tree_checksums(cohort) == before


def test_synth_refuses_a_cohort_with_a_users_file_inside_its_own_folders(tmp_path, capsys):
    from pipeline.synth import generate_cohort

    cohort = tmp_path / "cohort"
    generate_cohort(cohort, n_patients=1, seed=3, workers=1, progress=False)
    patient = next(p for p in cohort.iterdir() if p.name.isdigit())
    (patient / "0" / "my notes.txt").write_text("seen under the microscope")
    before = tree_checksums(cohort)
    code, _, err = run_cli(capsys, "synth", "--out", cohort, "--patients", "2")
    assert code == 2 and str(cohort) in err and "my notes.txt" in err
    assert tree_checksums(cohort) == before


def test_synth_replaces_its_own_cohort_even_an_interrupted_one(tmp_path):
    from pipeline.synth import IN_PROGRESS, generate_cohort

    cohort = tmp_path / "cohort"
    generate_cohort(cohort, n_patients=2, seed=0, workers=1, progress=False)
    # Interrupted regeneration: the marker is gone, the in-progress record lists the folders.
    (cohort / SYNTHETIC_MARKER).unlink()
    (cohort / IN_PROGRESS).write_text(json.dumps({"patients": ["90001", "90002"]}))
    meta = generate_cohort(cohort, n_patients=1, seed=3, workers=1, progress=False)
    assert sorted(p.name for p in cohort.iterdir()) == ["90001", SYNTHETIC_MARKER, MASK_DIR]
    assert meta["n_patients"] == 1 and not (cohort / IN_PROGRESS).exists()


# --------------------------------------------------------------------------- 5./6. training resume state
@pytest.fixture
def untrained_copy(tiny_run, tmp_path) -> Path:
    """A copy of tiny_run to train again (ingest and split reused)."""
    return _copy_run(tiny_run, tmp_path / "retrain")


def _interrupt_after_first_epoch(monkeypatch):
    """Make the next train.train stop like a kill right after epoch 1's state is on disk.

    Raising as soon as the train stage has kept the epoch (its model.fit ``on_epoch_end``) leaves
    exactly what a kill between epochs leaves.
    """
    from pipeline import train

    keep = train._save_epoch

    def keep_then_die(*args, **kwargs):
        keep(*args, **kwargs)
        raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(train, "_save_epoch", keep_then_die)


def test_empty_history_and_garbage_backup_left_by_a_kill_are_discarded(untrained_copy, capsys):
    """The issue's state: a kill in epoch 1 left an empty .history.csv (Keras CSVLogger) and a broken backup."""
    from pipeline import train

    (untrained_copy / train.HISTORY_CSV).write_text("")
    (untrained_copy / train.BACKUP_DIR).mkdir()
    (untrained_copy / train.BACKUP_DIR / "latest.weights.h5").write_bytes(b"\x89HDF\r\n half a file")
    (untrained_copy / train.BACKUP_DIR / "training_metadata.json").write_text('{"epoch": ')
    result = train.train(untrained_copy, TrainConfig(epochs=1, seed=1), fingerprint="fp-a")
    out = capsys.readouterr().out
    assert "discarding the interrupted training's resume state" in out
    assert str(untrained_copy / train.BACKUP_DIR) in out and str(untrained_copy / train.HISTORY_CSV) in out
    assert result["epochs_run"] == 1
    assert json.loads((untrained_copy / store.HISTORY).read_text())["epoch"] == [0]
    for leftover in (train.HISTORY_CSV, train.BACKUP_DIR, train.RESUME, train.BEST):
        assert not (untrained_copy / leftover).exists(), leftover


@pytest.mark.parametrize("record", ["", '{"fingerprint": "fp-a", "epochs_done": 1, "hist', "[1, 2]",
                                    '{"fingerprint": "fp-a", "epochs_done": 3, "history": {"epoch": [0]}, '
                                    '"best_epoch": 0, "weights": "epoch-0001.weights.h5"}'])
def test_an_unreadable_resume_record_is_discarded_naming_it(untrained_copy, capsys, record):
    from pipeline import train

    (untrained_copy / train.RESUME).write_text(record)
    (untrained_copy / train.BEST).write_bytes(b"not a model")
    assert train._resume_state(untrained_copy, "fp-a", TrainConfig(epochs=2, patience=8)) is None
    out = capsys.readouterr().out
    assert f"{untrained_copy / train.RESUME} is unreadable" in out
    assert not (untrained_copy / train.RESUME).exists() and not (untrained_copy / train.BEST).exists()


@pytest.fixture(scope="module")
def interrupted_w8(tiny_run, tmp_path_factory) -> Path:
    """A copy of tiny_run holding the resume state of a width-8 training killed after epoch 1 of 2."""
    from pipeline import train

    run_dir = _copy_run(tiny_run, tmp_path_factory.mktemp("interrupted") / "run")
    with pytest.MonkeyPatch.context() as mp:
        _interrupt_after_first_epoch(mp)
        with pytest.raises(KeyboardInterrupt):
            train.train(run_dir, W8, fingerprint=W8_FP)
    assert json.loads((run_dir / train.RESUME).read_text())["epochs_done"] == 1
    return run_dir


# A time budget that never runs out: the time-budget callback is in the loop, as in `pipeline compare`.
W8, W8_FP = TrainConfig(epochs=2, seed=1, width=8, time_budget_s=1e9), "fp-w8"


def test_an_interrupted_training_resumes_with_its_own_fingerprint(interrupted_w8, tmp_path, capsys):
    from pipeline import train

    run_dir = _copy_run(interrupted_w8, tmp_path / "run")
    first = json.loads((run_dir / train.RESUME).read_text())["history"]
    result = train.train(run_dir, W8, fingerprint=W8_FP)
    out = capsys.readouterr().out
    assert "resuming from epoch 2" in out and "discarding" not in out
    assert result["epochs_run"] == 2 and result["width"] == 8
    history = json.loads((run_dir / store.HISTORY).read_text())
    assert history["epoch"] == [0, 1] and history["val_pr_auc"][0] == first["val_pr_auc"][0]


def test_an_interrupted_training_is_not_continued_by_other_settings(interrupted_w8, tmp_path, capsys):
    """The killed width-8 state must not be continued (or saved) as the default-width model."""
    import keras

    from pipeline import train

    run_dir = _copy_run(interrupted_w8, tmp_path / "run")
    result = train.train(run_dir, TrainConfig(epochs=1, seed=1), fingerprint="fp-default")
    out = capsys.readouterr().out
    assert f"{run_dir / train.RESUME} belongs to a training with other settings" in out
    assert "width=8" in out and "width=32" in out
    assert result["width"] == 32 and result["epochs_run"] == 1
    assert keras.models.load_model(run_dir / store.MODEL).count_params() == _separable_params()


def test_a_training_killed_after_its_last_epoch_only_saves_its_best_model(interrupted_w8, tmp_path, capsys):
    """Killed after the last epoch's record but before model.keras: nothing is trained again."""
    from pipeline import train

    run_dir = _copy_run(interrupted_w8, tmp_path / "run")
    (run_dir / store.MODEL).unlink()
    record = json.loads((run_dir / train.RESUME).read_text())
    result = train.train(run_dir, W8.replace(epochs=1), fingerprint=W8_FP)  # same fingerprint: its one epoch was the last
    out = capsys.readouterr().out
    assert "the interrupted training had finished" in out and "Epoch" not in out
    assert result["epochs_run"] == 1 and result["best_val_pr_auc"] == record["best_val_pr_auc"]
    assert (run_dir / store.MODEL).exists() and not (run_dir / train.BACKUP_DIR).exists()


def test_damaged_weights_named_by_a_valid_record_are_discarded(interrupted_w8, tmp_path, capsys):
    from pipeline import train

    run_dir = _copy_run(interrupted_w8, tmp_path / "run")
    weights = run_dir / train.BACKUP_DIR / json.loads((run_dir / train.RESUME).read_text())["weights"]
    weights.write_bytes(weights.read_bytes()[:200])  # as if the disk lost the end of it
    result = train.train(run_dir, W8.replace(epochs=1), fingerprint=W8_FP)  # one epoch is enough to show it starts afresh
    out = capsys.readouterr().out
    assert f"{weights} or" in out and "is unreadable" in out and "resuming" not in out
    assert result["epochs_run"] == 1


def test_run_passes_its_training_fingerprint_down(untrained_copy, tiny_cohort, monkeypatch, capsys):
    """`run --arch plain` killed, then the default run: it trains its own model, not the plain one."""
    _interrupt_after_first_epoch(monkeypatch)
    code, _, _ = _run_cli_interrupted(capsys, "run", "--data", tiny_cohort, "--out", untrained_copy,
                                      "--arch", "plain", *TINY_RUN_ARGS)
    monkeypatch.undo()
    assert code == "interrupted" and any(p.name.startswith(".") for p in untrained_copy.iterdir())  # state left
    code, out, _ = run_cli(capsys, "run", "--data", tiny_cohort, "--out", untrained_copy, "--epochs", "1",
                           "--seed", "1")
    assert code == 0 and "belongs to a training with other settings" in out and "arch=plain" in out
    meta = store.read_meta(untrained_copy)
    assert meta["arch"] == "separable" and meta["train"]["params"] == _separable_params()


def _run_cli_interrupted(capsys, *argv):
    try:
        return run_cli(capsys, *argv)
    except KeyboardInterrupt:
        out = capsys.readouterr()
        return "interrupted", out.out, out.err


def _separable_params() -> int:
    from model.architectures import build_model

    return build_model("separable", patch_size=PATCH_SIZE)[0].count_params()


# --------------------------------------------------------------------------- 10. one class: undefined metrics
def _one_class_table(n_per_patient: int = 40):
    import pandas as pd

    rng = np.random.default_rng(0)
    pids = [str(p) for p in range(1, 7)]
    return pd.DataFrame({
        "patient_id": np.repeat(pids, n_per_patient), "label": np.zeros(6 * n_per_patient, int),
        "prob": rng.random(6 * n_per_patient) * 0.4,  # every patch called negative at 0.5: all correct
        "split": np.repeat(["train", "train", "val", "val", "test", "test"], n_per_patient)})


def test_single_class_split_reports_undefined_metrics_not_a_perfect_score():
    from pipeline import evaluate

    report = evaluate.evaluate(_one_class_table())
    test = report["splits"]["test"]
    assert np.isnan(test["roc_auc"]) and np.isnan(test["at"]["default"]["balanced_accuracy"])
    assert np.isnan(test["at"]["default"]["sensitivity"])  # not 1.000 from the specificity alone
    assert test["undefined"]["roc_auc"] == "all 80 patches are IDC-negative"
    assert "balanced_accuracy" in test["undefined"]
    assert any("ROC-AUC" in w and "undefined on split test: all 80 patches are IDC-negative" in w
               for w in report["warnings"])
    assert any("only the 0.5 threshold preset" in w for w in report["warnings"])
    text = evaluate.format_report(report)
    assert "WARNING: ROC-AUC, PR-AUC, sensitivity and balanced accuracy are undefined on split test" in text
    assert "ROC-AUC n/a" in text and "nan" not in text
    row = next(line for line in text.splitlines() if line.strip().startswith("0.5 (default)")).split()
    thr, prec, sens, spec, f1, bacc = row[2:8]
    assert (sens, spec, bacc) == ("n/a", "1.000", "n/a")  # specificity is real; BAcc is not 1.000


def test_run_on_a_single_class_cohort_reports_and_records_why(tiny_run, tiny_cohort, tmp_path, capsys):
    copy = _copy_run(tiny_run, tmp_path / "one-class")
    manifest = store.read_manifest(copy)
    manifest["label"] = 0
    store.write_manifest(copy, manifest)
    (copy / store.EVALUATION).unlink()  # only the evaluation is redone; the scores are the run's own
    code, out, _ = run_cli(capsys, "run", "--data", tiny_cohort, "--out", copy, *TINY_RUN_ARGS)
    assert code == 0
    n_test = json.loads((copy / store.EVALUATION).read_text())["splits"]["test"]["n_patches"]
    assert f"undefined on split test: all {n_test:,} patches are IDC-negative" in out
    evaluation = json.loads((copy / store.EVALUATION).read_text())
    assert evaluation["splits"]["test"]["undefined"]["roc_auc"] == f"all {n_test:,} patches are IDC-negative"
    assert np.isnan(evaluation["splits"]["test"]["at"]["default"]["balanced_accuracy"])
    assert store.load_run(copy).evaluation["warnings"]  # the app reads it without error


# --------------------------------------------------------------------------- 17. one file mode for every artifact
def test_every_artifact_gets_the_users_umask_mode(tiny_run):
    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    # The review stores too (made by ReviewStore with this mode; SQLite gives -wal/-shm the same).
    from pipeline.reviews import ReviewStore, cohort_store_path

    ReviewStore(cohort_store_path(tiny_run))
    files = [*tiny_run.rglob("*"), *cohort_store_path(tiny_run).parent.glob("*")]
    modes = {str(p.relative_to(tiny_run.parent)): stat.S_IMODE(p.stat().st_mode) for p in files if p.is_file()}
    assert {f"{tiny_run.name}/{n}" for n in (store.RUN_META, store.PATCHES, store.MODEL, store.SCORES)} <= set(modes)
    assert any(n.endswith(f"/{store.REVIEWS}") and n.startswith("_cohorts/") for n in modes)
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != expected}
    assert not wrong, f"expected {oct(expected)} for every file"


def test_atomic_path_applies_the_mode_whatever_the_writer(tmp_path):
    target = tmp_path / "x.json"
    store.write_json(target, {"a": 1})
    with store.atomic_path(tmp_path / "copied.png") as tmp:
        shutil.copyfile(target, tmp)  # copyfile keeps mkstemp's 0600 on the temporary file
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE((tmp_path / "copied.png").stat().st_mode) \
        == store.file_mode()


# --------------------------------------------------------------------------- 5. a real kill -9 in epoch 1
def test_kill_9_in_the_first_epoch_then_the_same_command_recovers(tiny_run, tiny_cohort, tmp_path, capsys):
    """The issue's sequence for real: SIGKILL while epoch 1 trains, then the same command again.

    Keras prints "Epoch 1/2" after its callbacks' on_train_begin (where CSVLogger used to create
    the empty .history.csv that broke every later run), so killing on that line reproduces it.
    """
    import signal
    import subprocess
    import sys
    import time

    from pipeline import train

    run_dir = _copy_run(tiny_run, tmp_path / "killed")
    argv = ["run", "--data", str(tiny_cohort), "--out", str(run_dir), "--epochs", "2", "--seed", "1", "--width", "8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=Path(__file__).parents[2])
    seen = []
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Epoch 1/"):
                time.sleep(0.3)  # inside the epoch, before it can finish
                break
            assert time.monotonic() < deadline, "".join(seen)
        else:
            pytest.fail("training never started:\n" + "".join(seen))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / train.RESUME).exists()  # killed inside epoch 1: nothing finished to resume

    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "train: best epoch" in out and store.read_meta(run_dir)["train"]["width"] == 8
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no resume state left behind
