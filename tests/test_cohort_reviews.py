"""Reviews belong to the cohort (pipeline/reviews.py): one store shared by every run of a data folder,
old per-run files migrated, several reviewers kept, the `reviews` and `export-geojson` commands."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from pipeline import agreement, geojson, reviews, store
from pipeline.cli import main
from tests import legacy_reviews_v1 as legacy


def copy_run(tiny_run: Path, runs: Path, name: str) -> Path:
    dest = runs / name
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    store.update_meta(dest, name=name)
    return dest


@pytest.fixture
def two_runs(tmp_path, tiny_run, tiny_cohort, capsys):
    """Two runs of the tiny cohort in one runs folder: a copy of the trained run and a run made by
    `import-scores` from its scores (another source, the same data folder)."""
    runs = tmp_path / "runs"
    a = copy_run(tiny_run, runs, "trained")
    table = store.load_run(a).table
    scores = tmp_path / "scores.csv"
    table[["patient_id", "x", "y", "prob", "split"]].to_csv(scores, index=False)
    assert main(["import-scores", "--data", str(tiny_cohort), "--scores", str(scores),
                 "--out", str(runs / "imported")]) == 0
    capsys.readouterr()
    return a, runs / "imported"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_review_in_one_run_is_shown_in_the_other(two_runs):
    a, b = two_runs
    assert reviews.cohort_dir(a) == reviews.cohort_dir(b)
    assert reviews.cohort_dir(a).parent == a.parent / reviews.COHORTS_DIR
    ta, tb = store.load_run(a).table, store.load_run(b).table
    patch = ta.iloc[5]
    name, model = reviews.run_identity(a)
    rid = reviews.open_for_run(a, ta).add(patient_id=patch["patient_id"], x=int(patch["x"]), y=int(patch["y"]),
                                          verdict="label_wrong", reviewer="dr_a", run_name=name, model=model,
                                          threshold=0.4, prob_shown=float(patch["prob"]))
    seen = reviews.open_for_run(b, tb).resolved(tb)
    got = seen.every.iloc[0]
    assert got["id"] == rid and got["run_name"] == "trained" and got["model"] == model and model
    assert got["threshold"] == 0.4 and got["prob_shown"] == pytest.approx(float(patch["prob"]))
    row_b = tb.index[(tb["patient_id"] == patch["patient_id"]) & (tb["x"] == patch["x"]) & (tb["y"] == patch["y"])]
    assert seen.verdicts().to_dict() == {int(row_b[0]): "label_wrong"}
    # ... and a review made on the other run adds to the same store
    reviews.open_for_run(b).add(patient_id=patch["patient_id"], x=int(patch["x"]), y=int(patch["y"]),
                                verdict="agree", reviewer="dr_b", run_name="imported")
    assert reviews.open_for_run(a).all()["reviewer"].tolist() == ["dr_a", "dr_b"]
    info = json.loads((reviews.cohort_dir(a) / reviews.COHORT_META).read_text())
    assert info["data_root"] == store.read_meta(a)["data_root"]
    assert store.list_runs(a.parent) and reviews.COHORTS_DIR not in [p.name for p in store.list_runs(a.parent)]


def test_an_old_per_run_file_is_migrated_losing_nothing(two_runs):
    a, b = two_runs
    table = store.load_run(a).table
    old = legacy.ReviewStore(a / store.REVIEWS)  # written by the code of before the cohort store
    for row, verdict, who in ((3, "agree", "dr_a"), (3, "label_wrong", "dr_b"), (8, "unsure", "dr_a")):
        p = table.loc[row]
        old.add(row=row, patient_id=p["patient_id"], x=int(p["x"]), y=int(p["y"]), verdict=verdict, reviewer=who,
                note=f"old {row}")
    old.add(row=1, patient_id="99999", x=1, y=1, verdict="agree", reviewer="dr_a")  # a patch the run lacks
    before = {f.name: sha(f) for f in a.glob(f"{store.REVIEWS}*")}
    old_rows = old.all()

    rs = reviews.open_for_run(a, table)
    got = rs.all()
    assert len(got) == 4 and set(got["source"]) == {"migrated"} and set(got["run_name"]) == {"trained"}
    pd.testing.assert_frame_equal(got[["patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]],
                                  old_rows[["patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]],
                                  check_dtype=False)
    assert got["recorded_row"].tolist() == old_rows["row"].tolist()
    m = rs.migrations()
    assert len(m) == 1 and m.loc[0, "n_added"] == 4 and m.loc[0, "n_not_in_run"] == 1
    assert json.loads(m.loc[0, "not_in_run_ids"]) == got.loc[got["patient_id"] == "99999", "id"].tolist()
    resolved = rs.resolved(table)
    assert resolved.not_in_run["patient_id"].tolist() == ["99999"]  # kept and listed
    assert {f.name: sha(f) for f in a.glob(f"{store.REVIEWS}*")} == before  # the old file is never changed

    # Opening again (from either run) adds nothing; a review added to the old file since is added alone.
    assert reviews.open_for_run(a).count() == 4 and reviews.open_for_run(b).count() == 4
    p = table.loc[10]
    old.add(row=10, patient_id=p["patient_id"], x=int(p["x"]), y=int(p["y"]), verdict="agree", reviewer="dr_c")
    rs = reviews.open_for_run(a, table)
    assert rs.count() == 5 and rs.all()["reviewer"].tolist()[-1] == "dr_c"
    assert rs.migrations()["n_added"].tolist() == [4, 1] and rs.migrations()["n_known"].tolist() == [0, 4]
    # Both reviewers' migrated verdicts on row 3 are kept as opinions.
    op = rs.latest_per_reviewer()
    assert sorted(op[op["recorded_row"] == 3]["verdict"]) == ["agree", "label_wrong"]
    with pytest.raises(reviews.LegacySchemaError):  # the old file is not a store to write into
        reviews.ReviewStore(a / store.REVIEWS)


def test_a_garbage_old_file_is_reported_and_never_touched(two_runs):
    a, _ = two_runs
    garbage = b"this is not a database" * 100
    (a / store.REVIEWS).write_bytes(garbage)
    with pytest.raises(reviews.LegacyReviewsError) as exc:
        reviews.open_for_run(a)
    assert exc.value.path == a / store.REVIEWS
    text = reviews.problem_text("trained/reviews.sqlite", exc.value)
    assert "move the file aside" in text and "mv reviews.sqlite reviews.sqlite.broken" in text
    assert (a / store.REVIEWS).read_bytes() == garbage
    assert not (a / f"{store.REVIEWS}-wal").exists()


def test_two_reviewers_are_both_kept_and_kappa_is_sklearns(two_runs):
    a, _ = two_runs
    table = store.load_run(a).table
    rs = reviews.open_for_run(a)
    rng = np.random.default_rng(3)
    rows = rng.choice(len(table), 30, replace=False)
    verdicts = list(reviews.VERDICTS)
    va = rng.choice(verdicts, 30)
    vb = np.where(rng.random(30) < 0.6, va, rng.choice(verdicts, 30))
    for r, x, y in zip(rows, va, vb):
        p = table.iloc[r]
        for who, v in (("alice", x), ("bob", y)):
            rs.add(patient_id=p["patient_id"], x=int(p["x"]), y=int(p["y"]), verdict=v, reviewer=who)
    opinions = rs.latest_per_reviewer()
    assert len(opinions) == 60  # one reviewer's verdict never supersedes another's
    wide = opinions.pivot(index=["patient_id", "x", "y"], columns="reviewer", values="verdict")
    pair = agreement.pairwise_kappa(rs.all())
    assert pair.loc[0, "n_patches"] == 30
    assert pair.loc[0, "kappa"] == cohen_kappa_score(wide["alice"], wide["bob"])


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_add_export_agreement_import_and_geojson(two_runs, tmp_path, capsys, tiny_run):
    a, b = two_runs
    table = store.load_run(a).table
    p, q = table.iloc[2], table.iloc[7]
    for patch, who, verdict in ((p, "alice", "label_wrong"), (p, "bob", "agree"), (q, "alice", "unsure")):
        code, out, err = run_cli(capsys, "reviews", "add", "--run", a, "--patient", patch["patient_id"],
                                 "--x", int(patch["x"]), "--y", int(patch["y"]), "--verdict", verdict,
                                 "--reviewer", who, "--note", "=formula?")
        assert code == 0, err
    code, _, err = run_cli(capsys, "reviews", "add", "--run", a, "--patient", "1", "--x", 1, "--y", 1,
                           "--verdict", "agree", "--reviewer", "x")
    assert code == 2 and "no patch" in err
    stored = reviews.open_for_run(b).all()
    assert stored["source"].tolist() == ["cli"] * 3 and stored["threshold"].notna().all()
    assert stored["prob_shown"].iloc[0] == pytest.approx(float(p["prob"]))

    # export csv (formula-safe) from the other run, and import it into another cohort: all in, once
    csv = tmp_path / "reviews.csv"
    assert run_cli(capsys, "reviews", "export", "--run", b, "--format", "csv", "--out", csv)[0] == 0
    assert "'=formula?" in csv.read_text()
    other = copy_run(tiny_run, tmp_path / "elsewhere", "copy")
    code, out, err = run_cli(capsys, "reviews", "import", "--run", other, "--csv", csv)
    assert code == 0 and "3 reviews imported" in out, (out, err)
    got = reviews.open_for_run(other).all()
    assert got["created_at"].tolist() == stored["created_at"].tolist()  # created_at of imported rows kept
    assert got["note"].tolist() == ["=formula?"] * 3 and set(got["source"]) == {"import"}
    assert got["run_name"].tolist() == stored["run_name"].tolist()
    code, out, _ = run_cli(capsys, "reviews", "import", "--run", other, "--csv", csv)
    assert code == 0 and "0 reviews imported" in out and "3 already there" in out
    assert reviews.open_for_run(other).count() == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,x,y\n1,1,1\n")
    assert run_cli(capsys, "reviews", "import", "--run", other, "--csv", bad)[0] == 2

    # agreement
    code, out, _ = run_cli(capsys, "reviews", "agreement", "--run", a)
    assert code == 0 and "alice vs bob: kappa" in out and "disagreements: 1 patches" in out

    # GeoJSON of the reviewed patches: one file per patient, read back
    folder = tmp_path / "geo"
    code, out, _ = run_cli(capsys, "reviews", "export", "--run", a, "--format", "geojson", "--out", folder,
                           "--threshold", 0.3)
    assert code == 0
    files = sorted(folder.glob("*.geojson"))
    assert [f.stem for f in files] == sorted({p["patient_id"], q["patient_id"]})
    rows, votes = geojson.features_to_patches([f for path in files for f in geojson.read_geojson(path)])
    assert len(rows) == 2 and set(rows["threshold"]) == {0.3}
    back = rows.set_index(["patient_id", "x", "y"])
    for patch in (p, q):
        key = (patch["patient_id"], int(patch["x"]), int(patch["y"]))
        assert back.loc[key, "prob"] == pytest.approx(float(patch["prob"]))
        assert back.loc[key, "label"] == int(patch["label"])
        assert (back.loc[key, "width"], back.loc[key, "height"]) == (int(patch["width"]), int(patch["height"]))
    expected = reviews.open_for_run(a).latest_per_reviewer()[["patient_id", "x", "y", "reviewer", "verdict"]]
    pd.testing.assert_frame_equal(votes.sort_values(["patient_id", "x", "y", "reviewer"]).reset_index(drop=True),
                                  expected.reset_index(drop=True), check_dtype=False)

    # export-geojson: every patch of every patient, with the verdicts
    preds = tmp_path / "preds"
    code, out, _ = run_cli(capsys, "export-geojson", "--run", a, "--out", preds, "--preset", "f1_optimal")
    assert code == 0
    files = sorted(preds.glob("*.geojson"))
    assert [f.stem for f in files] == sorted(table["patient_id"].unique())
    rows, votes = geojson.features_to_patches([f for path in files for f in geojson.read_geojson(path)])
    assert len(rows) == len(table) and len(votes) == 3
    t = store.read_meta(a)["thresholds"]["f1_optimal"]
    assert np.allclose(rows["threshold"], t)
    assert run_cli(capsys, "export-geojson", "--run", a, "--out", preds, "--preset", "nope")[0] == 2


def test_the_review_commands_do_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from pipeline.cli import build_parser; build_parser(); "
            "import pipeline.reviews_cli, pipeline.export_geojson; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
