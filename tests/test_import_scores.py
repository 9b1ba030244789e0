"""import-scores: any model's scores as a run folder; every row that is not used is reported, never dropped.

The round trip exports the session's tiny trained run's final scores and imports them again: the
same patches, the same split and probabilities give the same metrics at the same thresholds.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pipeline import evaluate, store
from tests.faults.conftest import run_cli, tree_checksums

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def exported(run_dir: Path, split: bool = True) -> pd.DataFrame:
    """A run's final scores as another model's output would come: one row per patch."""
    t = store.load_run(run_dir).table
    return t[["patient_id", "x", "y", "prob"] + (["split"] if split else [])].reset_index(drop=True)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def import_bad(capsys, data: Path, scores: pd.DataFrame, path: Path):
    """Import ``scores`` written to ``path`` (exit 0 expected); (run folder, stdout, the whole report, its
    row-level lines, all of them naming ``path``'s file)."""
    out = path.with_name(f"imported-{path.stem}")
    code, stdout, err = run_cli(capsys, "import-scores", "--data", data, "--scores", write(scores, path), "--out", out)
    assert code == 0, err
    report = store.read_score_import_report(out)
    with_row = report[report["row"] != ""]
    assert set(with_row["file"]) == {path.name}
    return out, stdout, report, with_row


@pytest.fixture(scope="module")
def imported_csv(tiny_run, tiny_cohort, tmp_path_factory) -> Path:
    """tiny_run's scores exported to CSV (with split) and imported into a runs folder of its own."""
    base = tmp_path_factory.mktemp("imported")
    scores = write(exported(tiny_run), base / "scores.csv")
    out = base / "runs" / "imported-csv"
    from pipeline.cli import main

    assert main(["import-scores", "--data", str(tiny_cohort), "--scores", str(scores), "--out", str(out),
                 "--name", "my model"]) == 0
    return out


def assert_same_metrics(imported: Path, original: Path) -> None:
    a, b = store.load_run(imported), store.load_run(original)
    pd.testing.assert_frame_equal(a.table[["patient_id", "x", "y", "label", "split"]],
                                  b.table[["patient_id", "x", "y", "label", "split"]])
    np.testing.assert_array_equal(a.table["prob"], b.table["prob"])
    # Used as given: no calibration, no context.
    np.testing.assert_array_equal(a.table["prob_uncalibrated"], a.table["prob"])
    np.testing.assert_array_equal(a.table["prob_patch"], a.table["prob"])
    ea, eb = a.evaluation, b.evaluation
    assert ea["thresholds"] == eb["thresholds"] and ea["thresholds_chosen_on"] == eb["thresholds_chosen_on"]
    for split in ("test", "val", "train", "all"):
        sa, sb = ea["splits"][split], eb["splits"][split]
        for key in ("n_patients", "n_patches", "n_positive", "roc_auc", "pr_auc", "ece", "at"):
            assert sa[key] == sb[key], (split, key)
    # ... and the same at any other threshold, computed afresh from the two tables.
    again = evaluate.evaluate(a.table, {"t": 0.37})["splits"]["test"]["at"]
    assert again == evaluate.evaluate(b.table, {"t": 0.37})["splits"]["test"]["at"]


def test_round_trip_csv_with_split_gives_the_same_metrics(imported_csv, tiny_run):
    assert_same_metrics(imported_csv, tiny_run)
    run = store.load_run(imported_csv)
    source = run.meta["source"]
    assert source["kind"] == "imported" and source["name"] == "my model" and source["split_from"] == "file"
    assert Path(source["file"]).name == "scores.csv" and len(source["sha256"]) == 64
    assert run.provenance == ("Scores: imported from scores.csv ('my model'), not trained here; Grad-CAM unavailable "
                              "(scores were imported from scores.csv; there is no model to explain).")
    assert not (imported_csv / store.MODEL).exists()
    assert store.read_score_import_report(imported_csv).empty
    assert store.read_split(imported_csv)["patients"] == store.read_split(tiny_run)["patients"]


def test_round_trip_parquet_without_split_uses_the_project_split(tiny_run, tiny_cohort, tmp_path, capsys):
    scores = write(exported(tiny_run, split=False), tmp_path / "scores.parquet")
    out = tmp_path / "imported-parquet"
    seed = store.read_split(tiny_run)["seed"]  # the trained run's split is the project's split with its seed
    code, stdout, _ = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", scores, "--out", out,
                              "--seed", seed)
    assert code == 0
    assert f"the project's patient split (seed {seed}; scores.parquet has no split column)" in stdout
    assert "no calibration, no neighbourhood context" in stdout
    assert_same_metrics(out, tiny_run)
    # The same import again is skipped; another file into the same folder is refused like another run.
    before = tree_checksums(out)
    code, stdout, _ = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", scores, "--out", out,
                              "--seed", seed)
    assert code == 0 and "unchanged data and scores.parquet" in stdout
    other = write(exported(tiny_run), tmp_path / "other.csv")
    code, _, err = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", other, "--out", out)
    assert code == 2 and f"--out {out} holds another run (scores imported from {scores.resolve()})" in err
    assert tree_checksums(out) == before


def test_every_bad_row_is_reported_with_file_row_and_reason(tiny_run, tiny_cohort, tmp_path, capsys):
    good = exported(tiny_run).astype(str)
    run = store.load_run(tiny_run)
    manifest = store.read_manifest(tiny_run)
    n = len(good)
    # Row numbers below are 1-based data rows of the file (a CSV's line number minus its header line).
    unscored = 5  # this patch's row is left out of the file: a patch without a score
    bad = good.drop(index=unscored).reset_index(drop=True)
    edits = {
        0: ("patient_id", "12a"),
        1: ("x", "10.5"),
        2: ("prob", "1.5"),
        3: ("prob", "nan"),
        4: ("split", "validation"),
    }
    for i, (col, value) in edits.items():
        bad.loc[i, col] = value
    pid = good.loc[10, "patient_id"]
    extra = pd.DataFrame([
        {**good.loc[7].to_dict()},  # an exact duplicate of a row: the first copy is used
        {**good.loc[8].to_dict(), "prob": "0.123"},  # the same patch with another prob: neither is used
        {"patient_id": pid, "x": "999999", "y": "1", "prob": "0.5", "split": good.loc[10, "split"]},  # no such patch
        {"patient_id": "424242", "x": "1", "y": "1", "prob": "0.5", "split": "test"},  # no such patient
    ])
    bad = pd.concat([bad, extra], ignore_index=True)
    scores = write(bad, tmp_path / "bad.csv")
    out = tmp_path / "imported-bad"
    code, stdout, _ = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", scores, "--out", out)
    assert code == 0

    report = store.read_score_import_report(out)
    rows = dict(zip(report["row"], report["reason"]))
    assert set(report.loc[report["row"] != "", "file"]) == {"bad.csv"}
    assert rows["1"] == "patient_id '12a' is not a patient number (ASCII digits 0-9)"
    assert rows["2"] == "x '10.5' is not a whole number (ASCII digits 0-9)"
    assert rows["3"] == "prob 1.5 is outside [0, 1]"
    assert rows["4"] == "prob 'nan' is not a finite number"
    assert rows["5"] == "split 'validation' is not one of train, val, test"
    first_dup = str(7 - (7 > unscored) + 1)  # where good row 7 landed once row 5 was left out
    key = f"patient {good.loc[7, 'patient_id']}, x {good.loc[7, 'x']}, y {good.loc[7, 'y']}"
    assert rows[str(n)] == f"duplicate of row {first_dup} ({key}, same score): row {first_dup} is used"
    conflict = str(8 - 1 + 1)
    assert rows[conflict].startswith(f"patient {good.loc[8, 'patient_id']}, x {good.loc[8, 'x']}, y "
                                     f"{good.loc[8, 'y']} is scored 2 times with different values (rows {conflict}, "
                                     f"{n + 1}): none of them is used")
    assert rows[str(n + 1)] == rows[conflict]
    assert rows[str(n + 2)] == f"score without a patch: patient {pid} has no patch at x 999999, y 1 under synthetic/"
    assert rows[str(n + 3)] == "score without a patch: patient 424242 has no patches under synthetic/"
    # Patches without a score are named by their file, with no row.
    patches = report[report["row"] == ""].set_index("file")["reason"]
    dropped = [unscored, 0, 1, 2, 3, 4, 8]  # left out, bad rows (their patch is unscored), the conflicting pair
    assert set(patches.index) == set(manifest.loc[dropped, "source"])
    m = manifest.loc[unscored]
    assert patches[m["source"]] == (f"patch without a score: bad.csv has no usable row for patient {m['patient_id']}, "
                                    f"x {m['x']}, y {m['y']}")
    assert len(report) == 5 + 1 + 2 + 2 + len(dropped)

    # The run holds the scored patches only, each with its own score; the CLI summary counts everything.
    imported = store.load_run(out)
    assert len(imported.table) == len(imported.patches) == len(manifest) - len(dropped)
    keep = np.setdiff1d(np.arange(len(manifest)), dropped)
    np.testing.assert_array_equal(imported.patches[:], store.read_patches(tiny_run)[keep])
    np.testing.assert_array_equal(imported.table["prob"], run.table["prob"].to_numpy()[keep])
    rows_total = len(bad)
    assert (f"import-scores: {len(keep):,} of {rows_total:,} rows matched a patch; {rows_total - len(keep):,} rows "
            f"not used, {len(dropped)} of {len(manifest):,} patches without a score (left out of the run)") in stdout
    assert f"all {len(report)} listed with the reason in {out / store.SCORE_IMPORT_REPORT}:" in stdout
    assert "bad.csv row 1: patient_id '12a' is not a patient number" in stdout


def test_split_conflicts_and_bad_values_are_reported_row_by_row(tiny_run, tiny_cohort, tmp_path, capsys):
    """A patient given two splits, an empty or non-numeric prob, an x or y that is not a whole number."""
    good = exported(tiny_run).astype(str)
    run = store.load_run(tiny_run)
    manifest = store.read_manifest(tiny_run)
    splits = good.groupby("patient_id")["split"].first()
    # The torn patient is one of two or more in its split, so every split keeps a patient.
    torn = next(p for p, s in splits.items() if (splits == s).sum() >= 2)
    own, other_split = splits[torn], next(s for s in store.SPLITS if s != splits[torn])
    mine = good.index[good["patient_id"] == torn]
    others = good.index[good["patient_id"] != torn]
    assert len(mine) >= 3 and len(others) >= 9
    bad = good.copy()
    bad.loc[mine[0], "split"] = other_split  # one row names another split: the patient is torn
    bad.loc[mine[1], "prob"] = ""  # a row of the torn patient that is bad for its own reason
    # (index in the file, {column: value}, the reason as the report gives it); its row is index + 1
    edits = [
        (others[0], {"prob": ""}, "prob is empty"),
        (others[1], {"prob": "abc"}, "prob 'abc' is not a finite number"),
        (others[2], {"prob": "inf"}, "prob 'inf' is not a finite number"),
        (others[3], {"prob": "-0.25"}, "prob -0.25 is outside [0, 1]"),
        (others[4], {"y": "3.5"}, "y '3.5' is not a whole number (ASCII digits 0-9)"),
        (others[5], {"y": "-50"}, "y '-50' is not a whole number (ASCII digits 0-9)"),
        (others[6], {"x": "1e2"}, "x '1e2' is not a whole number (ASCII digits 0-9)"),
        # A row with two faults gets both reasons, in the column order, in one line.
        (others[7], {"x": "", "prob": "abc"}, "x is empty; prob 'abc' is not a finite number"),
    ]
    for i, values, _ in edits:
        for col, value in values.items():
            bad.loc[i, col] = value
    # Written as a whole number another way, a coordinate is used: these rows score their patches.
    fine = others[8]
    bad.loc[fine, "x"] = f"{good.loc[fine, 'x']}.0"
    bad.loc[fine, "y"] = f" {good.loc[fine, 'y']} "
    out, stdout, report, with_row = import_bad(capsys, tiny_cohort, bad, tmp_path / "torn.csv")
    assert not with_row["row"].duplicated().any()  # one line per row, every reason in it
    rows = dict(zip(with_row["row"], with_row["reason"]))
    for i, _, reason in edits:
        assert rows[str(i + 1)] == reason, i
    assert rows[str(mine[1] + 1)] == "prob is empty"
    names = ", ".join(sorted([own, other_split]))
    torn_reason = (f"patient {torn} has rows in splits {names}; a patient belongs to one split (patches of one slide "
                   "are alike): none of its rows is used")
    for i in [mine[0], *mine[2:]]:
        assert rows[str(i + 1)] == torn_reason, i
    assert set(rows) == {str(i + 1) for i in [*(e[0] for e in edits), *mine]}
    assert str(fine + 1) not in rows

    # Every patch of the torn patient and of each bad row is a patch without a score, named by its file.
    dropped = sorted([*mine, *(e[0] for e in edits)])
    patches = report[report["row"] == ""].set_index("file")["reason"]
    assert sorted(patches.index) == sorted(manifest.loc[dropped, "source"])
    for i in dropped:
        m = manifest.loc[i]
        assert patches[m["source"]] == (f"patch without a score: torn.csv has no usable row for patient "
                                        f"{m['patient_id']}, x {m['x']}, y {m['y']}")
    assert len(report) == len(edits) + len(mine) + len(dropped)

    # The run holds the others, with their scores (the re-written coordinates' row too) and split.
    imported = store.load_run(out)
    keep = np.setdiff1d(np.arange(len(manifest)), dropped)
    assert len(imported.table) == len(imported.patches) == len(keep)
    np.testing.assert_array_equal(imported.table["prob"], run.table["prob"].to_numpy()[keep])
    np.testing.assert_array_equal(imported.patches[:], store.read_patches(tiny_run)[keep])
    assert torn not in store.read_split(out)["patients"]
    assert store.read_split(out)["patients"] == {p: s for p, s in splits.items() if p != torn}
    assert (f"import-scores: {len(keep):,} of {len(bad):,} rows matched a patch; {len(bad) - len(keep):,} rows "
            f"not used, {len(dropped)} of {len(manifest):,} patches without a score (left out of the run)") in stdout
    i = others[0]
    assert f"torn.csv row {i + 1}: prob is empty" in stdout


def test_a_patch_key_twice_in_the_data_is_resolved_by_ingest_before_the_scores_are_matched(
        tiny_run, tiny_cohort, tmp_path, capsys):
    """Two patches with the same (patient, x, y) cannot reach the import from real inputs.

    The archive's two copies of a patient are merged file by file, and two files whose names give
    the same patient, x and y (x51 and x051) are one patch: ingest keeps the first and lists the
    other in ingest_report.csv. The import's own check for manifest patches the key cannot tell
    apart (pipeline.import_scores.match) therefore never fires on ingested data; nothing is dropped
    silently on the way.
    """
    from pipeline.names import ARCHIVE_SUBDIR

    cohort_copy = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, cohort_copy)
    manifest = store.read_manifest(tiny_run)
    first, second = manifest.iloc[0], manifest[manifest["patient_id"] != manifest.iloc[0]["patient_id"]].iloc[0]
    # The archive as extracted: the first patient again under IDC_regular_ps50_idx5/.
    shutil.copytree(cohort_copy / first["patient_id"], cohort_copy / ARCHIVE_SUBDIR / first["patient_id"])
    # Another name for the second patient's patch: the same patient, x and y.
    src = Path(second["source"])
    twin = src.with_name(src.name.replace(f"_x{second['x']}_", f"_x0{second['x']}_"))
    assert twin.name != src.name
    shutil.copyfile(cohort_copy / src, cohort_copy / twin)

    scores = write(exported(tiny_run), tmp_path / "scores.csv")
    out = tmp_path / "imported-twice"
    code, stdout, err = run_cli(capsys, "import-scores", "--data", cohort_copy, "--scores", scores, "--out", out)
    assert code == 0, err
    ingest_report = store.read_ingest_report(out)
    same = ingest_report[ingest_report["reason"] == "another patch of this patient has the same coordinates; "
                                                     "kept the first"]
    assert len(same) == 1 and same["file"].iloc[0] in {src.as_posix(), twin.as_posix()}
    assert not ingest_report["file"].str.startswith(ARCHIVE_SUBDIR).any()  # identical copies are read once
    record = store.read_meta(out)["stages"]["ingest"]
    assert record["duplicate_patient_copies"] == 1 and record["differing_copies"] == 0
    assert record["duplicate_files_read_once"] == int((manifest["patient_id"] == first["patient_id"]).sum())
    # Every score matches exactly one patch: nothing to report, the run is the trained run's patches.
    assert store.read_score_import_report(out).empty
    imported = store.load_run(out)
    assert not imported.table.duplicated(["patient_id", "x", "y"]).any()
    assert len(imported.table) == len(manifest)
    np.testing.assert_array_equal(imported.table["prob"], store.load_run(tiny_run).table["prob"])
    np.testing.assert_array_equal(imported.patches[:], store.read_patches(tiny_run)[:])
    assert f"{len(manifest):,} of {len(manifest):,} rows matched a patch; 0 rows not used" in stdout


def test_bad_numbers_in_a_parquet_files_numeric_columns_are_reported_as_written(tiny_run, tiny_cohort, tmp_path,
                                                                                 capsys):
    """Parquet keeps numbers as numbers: a float x or y, NaN or inf are reported with the value as read."""
    good = exported(tiny_run)
    manifest = store.read_manifest(tiny_run)
    bad = good.astype({"patient_id": "int64", "x": "float64", "y": "float64", "prob": "float64"})
    edits = [
        (0, "x", 2.5, "x '2.5' is not a whole number (ASCII digits 0-9)"),
        (1, "y", np.nan, "y 'nan' is not a whole number (ASCII digits 0-9)"),
        (2, "x", -50.0, "x '-50.0' is not a whole number (ASCII digits 0-9)"),
        (3, "prob", np.nan, "prob 'nan' is not a finite number"),
        (4, "prob", np.inf, "prob 'inf' is not a finite number"),
        (5, "prob", 1.5, "prob 1.5 is outside [0, 1]"),
    ]
    for i, col, value, _ in edits:
        bad.loc[i, col] = value
    out, stdout, report, with_row = import_bad(capsys, tiny_cohort, bad, tmp_path / "numeric.parquet")
    assert dict(zip(with_row["row"], with_row["reason"])) == {str(i + 1): reason for i, _, _, reason in edits}
    # The other rows' whole-number floats (51.0) are used: only the bad rows' patches lack a score.
    patches = report[report["row"] == ""]
    assert sorted(patches["file"]) == sorted(manifest.loc[[e[0] for e in edits], "source"])
    keep = np.arange(len(edits), len(manifest))
    imported = store.load_run(out)
    np.testing.assert_array_equal(imported.table["prob"], store.load_run(tiny_run).table["prob"].to_numpy()[keep])
    assert "numeric.parquet row 1: x '2.5' is not a whole number" in stdout


def test_nothing_matched_exits_2_naming_the_file(tiny_cohort, tmp_path, capsys):
    scores = write(pd.DataFrame({"patient_id": ["999"] * 3, "x": [1, 51, 101], "y": [1, 1, 1],
                                 "prob": [0.1, 0.2, 0.3]}), tmp_path / "elsewhere.csv")
    out = tmp_path / "nothing"
    code, _, err = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", scores, "--out", out)
    assert code == 2
    assert f"error: nothing in {scores} matched a patch under {tiny_cohort}: 3 rows, 3 of them usable" in err
    assert f"listed with its reason in {out / store.SCORE_IMPORT_REPORT}" in err
    assert "elsewhere.csv row 1: score without a patch: patient 999 has no patches under synthetic/" in err
    assert not (out / store.SCORES).exists()


@pytest.mark.parametrize("content, message", [
    ("patient_id,x,prob\n1,2,0.5\n", "lacks the column y (it has patient_id, x, prob)"),
    ("patient_id,x,y,prob\n", "has no rows"),
])
def test_an_unusable_file_is_refused_before_anything_is_written(tiny_cohort, tmp_path, capsys, content, message):
    scores = tmp_path / "scores.csv"
    scores.write_text(content)
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", scores, "--out", out)
    assert code == 2 and f"error: scores file {scores} {message}" in err
    assert not out.exists()
    code, _, err = run_cli(capsys, "import-scores", "--data", tiny_cohort, "--scores", tmp_path / "missing.csv",
                           "--out", out)
    assert code == 2 and "does not exist" in err and not out.exists()


def test_an_imported_run_opens_everywhere_and_says_where_its_scores_came_from(monkeypatch, imported_csv):
    runs = imported_csv.parent
    monkeypatch.setenv("IDC_RUNS", str(runs))
    at = AppTest.from_file(MAIN, default_timeout=180).run()
    said = "imported from scores.csv ('my model'), not trained here; Grad-CAM unavailable"
    for page in ("views/overview.py", "views/patient.py", "views/inspector.py", "views/errors.py",
                 "views/review_log.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        assert any(said in m.value for m in at.markdown), page
    at.switch_page("views/inspector.py").run()
    assert any("Grad-CAM unavailable: scores were imported from scores.csv; there is no model to explain" in i.value
               for i in at.info)
    assert any("(as imported, used as given: not calibrated here)" in m.value for m in at.markdown)
    assert not at.error
    at.switch_page("views/errors.py").run()
    assert at.toggle(key="gallery_cam").disabled
    assert any("Grad-CAM unavailable: scores were imported from scores.csv" in c.value for c in at.caption)


def test_a_copy_without_source_is_inferred_as_trained(tiny_run, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    meta = store.read_meta(copy)
    meta.pop("source", None)
    store.write_json(copy / store.RUN_META, meta)
    assert store.provenance(meta) == {"kind": "trained"}
    assert store.load_run(copy).provenance == "Scores: a model trained here (separable) by `pipeline run`."
    assert store.provenance({"source_run": "/x/runs/base"})["kind"] == "scored_with_run"
