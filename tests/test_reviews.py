"""Pathologist reviews in SQLite (pipeline/reviews.py): round trip, validation, durability, concurrent writers."""
from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from pipeline.reviews import COLUMNS, VERDICTS, ReviewStore
from pipeline import store

ROOT = Path(__file__).resolve().parent.parent


def _review(**over):
    base = dict(patient_id="90001", x=51, y=101, verdict="agree", note="", reviewer="dr_a")
    base.update(over)
    return base


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / store.REVIEWS


def test_round_trip(db):
    rs = ReviewStore(db)
    assert rs.all().columns.tolist() == COLUMNS and rs.all().empty and rs.latest().empty
    note = 'nuclei crowded, "pleomorphic"; ümlaut, comma\nsecond line'
    rid = rs.add(**_review(verdict="label_wrong", note=note))
    df = rs.all()
    assert len(df) == 1
    got = df.iloc[0]
    assert got["id"] == rid
    assert (got["patient_id"], got["x"], got["y"]) == ("90001", 51, 101)
    assert got["source"] == "app" and pd.isna(got["recorded_row"]) and pd.isna(got["threshold"])
    assert (got["verdict"], got["note"], got["reviewer"]) == ("label_wrong", note, "dr_a")
    created = pd.Timestamp(got["created_at"])
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert abs((pd.Timestamp.now(tz="UTC") - created).total_seconds()) < 60


def test_validation_rejects_and_writes_nothing(db):
    rs = ReviewStore(db)
    with pytest.raises(ValueError) as exc:
        rs.add(**_review(verdict="maybe"))
    assert all(v in str(exc.value) for v in VERDICTS)  # the message lists the valid verdicts
    for bad in (dict(reviewer=""), dict(reviewer="   "), dict(x=1.5), dict(y=True), dict(threshold=1.5),
                dict(prob_shown=-0.1), dict(source="web"), dict(created_at="yesterday"),
                dict(patient_id=""), dict(x="51"), dict(note="x" * 10_001)):
        with pytest.raises(ValueError):
            rs.add(**_review(**bad))
    with pytest.raises(TypeError):  # keyword-only, reviewer required
        rs.add(3, "90001", 51, 101, "agree")
    assert rs.count() == 0


def test_schema_rejects_bad_rows_even_past_the_python_checks(db):
    """The CHECK constraints guard the file against any other writer, too."""
    ReviewStore(db)
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO reviews (patient_id, x, y, verdict, note, reviewer, created_at) "
                         "VALUES ('9', 1, 1, 'bogus', '', 'a', 't')")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO reviews (patient_id, x, y, verdict, note, reviewer, created_at) "
                         "VALUES ('9', 1, 1, 'agree', '', '  ', 't')")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO reviews (patient_id, x, y, verdict, note, reviewer, created_at, threshold) "
                         "VALUES ('9', 1, 1, 'agree', '', 'a', 't', 2.0)")
        conn.execute("INSERT INTO reviews (patient_id, x, y, verdict, note, reviewer, created_at) "
                     "VALUES ('9', 1, 1, 'agree', '', 'a', 't')")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # no writer may rewrite history
            conn.execute("UPDATE reviews SET verdict = 'label_wrong'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM reviews")


def test_review_survives_reopening(db):
    rid = ReviewStore(db).add(**_review(note="kept"))
    again = ReviewStore(db)
    assert again.all()["id"].tolist() == [rid]
    assert again.all()["note"].tolist() == ["kept"]
    # and a plain sqlite3 reader sees it too: it is committed, not held in a connection
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 1


def test_wal_mode_and_identity(tmp_path):
    from pipeline.reviews import COHORTS_DIR, cohort_dir, open_for_run

    run_dir = tmp_path / "runs" / "myrun"
    store.update_meta(run_dir, name="myrun", data_root="/data/cohort_a", stages={"ingest": {"fingerprint": "abc123"}})
    rs = open_for_run(run_dir)  # a run opens its cohort's store, beside the runs
    assert rs.path == cohort_dir(run_dir) / store.REVIEWS
    assert rs.path.parent.parent == tmp_path / "runs" / COHORTS_DIR and rs.path.parent.name.startswith("cohort_a-")
    assert not (run_dir / store.REVIEWS).exists()  # nothing written into the run folder
    with sqlite3.connect(rs.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    meta = rs.meta()
    assert meta["schema_version"] == "2" and meta["data_root"] == "/data/cohort_a"


def test_newer_schema_is_refused(db):
    ReviewStore(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="newer"):
        ReviewStore(db)


@pytest.mark.parametrize("value", ["two", "", "2.0", "\uff12"])
def test_a_schema_version_that_is_not_a_number_is_a_database_error_naming_the_file(db, value):
    ReviewStore(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (value,))
    before = db.read_bytes()
    # sqlite3.DatabaseError, as for any other unreadable file: the app's pages say so with the fix.
    with pytest.raises(sqlite3.DatabaseError, match=f"{db}: its meta table records schema_version"):
        ReviewStore(db)
    assert db.read_bytes() == before


def test_a_new_store_gets_the_mode_of_every_artifact(tmp_path):
    import os
    import stat

    mask = os.umask(0o002)  # SQLite alone would make 0644 here; every artifact is 0664
    try:
        rs = ReviewStore(tmp_path / "c" / store.REVIEWS)
        with rs._connect() as conn:  # a connection holds the -wal and -shm files open
            conn.execute("SELECT 1 FROM reviews").fetchall()
            rs.add(**_review())
            files = [f for f in (rs.path, *(rs.path.with_name(rs.path.name + s) for s in ("-wal", "-shm")))
                     if f.exists()]
            modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    finally:
        os.umask(mask)
    assert len(files) == 3 and set(modes.values()) == {oct(0o664)}, modes


def test_latest_supersedes_and_history_is_kept(db):
    rs = ReviewStore(db)
    first = rs.add(**_review(x=5, verdict="agree", reviewer="dr_a"))
    rs.add(**_review(x=7, patient_id="90002", verdict="unsure"))
    second = rs.add(**_review(x=5, verdict="label_wrong", reviewer="dr_b", note="missed IDC"))
    latest = rs.latest()
    assert latest[["patient_id", "x"]].values.tolist() == [["90001", 5], ["90002", 7]]
    p5 = latest[latest["x"] == 5].iloc[0]
    assert p5["id"] == second and p5["verdict"] == "label_wrong" and p5["reviewer"] == "dr_b"
    assert rs.all()["id"].tolist()[0] == first and len(rs.all()) == 3  # history kept, oldest first
    # ... and both reviewers' opinions stay: dr_b's verdict does not supersede dr_a's
    both = rs.latest_per_reviewer()
    assert both[both["x"] == 5]["verdict"].tolist() == ["agree", "label_wrong"]
    assert rs.for_patient("90001")["id"].tolist() == [second]
    assert rs.for_patient(90002)["x"].tolist() == [7]
    assert rs.for_patient("nobody").empty


def test_csv_export_parses_back(db):
    rs = ReviewStore(db)
    rs.add(**_review(note='comma, "quote" and\nnewline é'))
    rs.add(**_review(row=9, patient_id="00123", verdict="unsure", reviewer="Dr Ø"))
    data = rs.to_csv_bytes()
    assert isinstance(data, bytes)
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8", dtype={"patient_id": str}, keep_default_na=False)
    assert back.columns.tolist() == COLUMNS
    expected = rs.all()
    assert back["note"].tolist() == expected["note"].tolist()
    assert back["patient_id"].tolist() == ["90001", "00123"]  # leading zeros kept
    assert back["reviewer"].tolist() == ["dr_a", "Dr Ø"]
    assert back["id"].tolist() == expected["id"].tolist()


def test_concurrent_threads_lose_nothing(db):
    """Two ReviewStore objects on the same file, in two threads, 50 reviews each."""
    stores = [ReviewStore(db), ReviewStore(db)]
    errors, ids = [], [[], []]
    start = threading.Barrier(2)

    def write(k):
        try:
            start.wait()
            for i in range(50):
                ids[k].append(stores[k].add(**_review(row=k * 1000 + i, reviewer=f"thread{k}", note=str(i))))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    df = ReviewStore(db).all()
    assert len(df) == 100 and df["id"].is_unique
    assert sorted(df["id"]) == sorted(ids[0] + ids[1])
    for k in range(2):
        mine = df[df["reviewer"] == f"thread{k}"]
        assert mine["note"].tolist() == [str(i) for i in range(50)]  # each writer's order preserved


def test_concurrent_processes_lose_nothing(tmp_path):
    """Two processes (as two app servers would) create the same new file and write at once."""
    db = tmp_path / store.REVIEWS
    script = textwrap.dedent(f"""
        import sys
        from pipeline.reviews import ReviewStore
        rs = ReviewStore({str(db)!r})
        k = int(sys.argv[1])
        for i in range(40):
            rs.add(row=k * 1000 + i, patient_id="90001", x=1, y=1, verdict="agree", reviewer=f"proc{{k}}")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    df = ReviewStore(db).all()
    assert len(df) == 80
    assert df.groupby("reviewer").size().to_dict() == {"proc0": 40, "proc1": 40}


def test_open_waits_while_another_process_creates_the_file(tmp_path):
    """Switching to WAL fails at once (no busy handler) while another connection writes the new file in
    rollback mode: the exact race two app servers hit when both open a new cohort store. Opening must wait."""
    db = tmp_path / store.REVIEWS
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE other_writer (x)")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        rs = ReviewStore(db)            # raised "database is locked" before the retry
    finally:
        release.join()
        other.close()
    rs.add(**_review())
    assert rs.count() == 1


def test_failed_transaction_leaves_nothing(db):
    """An exception after the INSERT but before COMMIT rolls the review back: never half-written."""
    rs = ReviewStore(db)
    rs.add(**_review())
    with pytest.raises(RuntimeError, match="crash"):
        with rs._connect() as conn, rs._transaction(conn):
            conn.execute("INSERT INTO reviews (patient_id, x, y, verdict, note, reviewer, created_at) "
                         "VALUES ('90001', 1, 1, 'agree', '', 'dr_a', 't')")
            assert conn.in_transaction
            raise RuntimeError("crash")
    assert rs.count() == 1 and rs.all()["x"].tolist() == [51]


def test_resolved_by_identity_and_backup(db, tmp_path):
    rs = ReviewStore(db)
    table = pd.DataFrame({"patient_id": ["90001", "90001", "90002"], "x": [1, 51, 1], "y": [1, 1, 51]})
    rs.add(**_review(patient_id="90001", x=51, y=1))   # row 1
    rs.add(**_review(patient_id="90001", x=1, y=1, recorded_row=2))   # given on row 2, now row 0
    rs.add(**_review(patient_id="90003", x=1, y=1))   # not in the table
    got = rs.resolved(table)
    assert got.every["row"].tolist() == [1, 0, -1] and got.moved == 1 and len(got.not_in_run) == 1
    assert rs.mismatched(table)["x"].tolist() == [1]
    copy = rs.backup(tmp_path / "copy.sqlite")
    assert ReviewStore(copy).all().equals(rs.all())
