"""Pathologist reviews in SQLite: round trip, validation, durability and concurrent writers."""
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

from app.reviews import COLUMNS, VERDICTS, ReviewStore
from pipeline import store

ROOT = Path(__file__).resolve().parent.parent


def _review(**over):
    base = dict(row=3, patient_id="90001", x=51, y=101, verdict="agree", note="", reviewer="dr_a")
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
    assert (got["row"], got["patient_id"], got["x"], got["y"]) == (3, "90001", 51, 101)
    assert (got["verdict"], got["note"], got["reviewer"]) == ("label_wrong", note, "dr_a")
    created = pd.Timestamp(got["created_at"])
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert abs((pd.Timestamp.now(tz="UTC") - created).total_seconds()) < 60


def test_validation_rejects_and_writes_nothing(db):
    rs = ReviewStore(db)
    with pytest.raises(ValueError) as exc:
        rs.add(**_review(verdict="maybe"))
    assert all(v in str(exc.value) for v in VERDICTS)  # the message lists the valid verdicts
    for bad in (dict(reviewer=""), dict(reviewer="   "), dict(row=-1), dict(row=1.5), dict(row=True),
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
            conn.execute("INSERT INTO reviews (\"row\", patient_id, x, y, verdict, note, reviewer, created_at) "
                         "VALUES (1, '9', 1, 1, 'bogus', '', 'a', 't')")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO reviews (\"row\", patient_id, x, y, verdict, note, reviewer, created_at) "
                         "VALUES (1, '9', 1, 1, 'agree', '', '  ', 't')")


def test_review_survives_reopening(db):
    rid = ReviewStore(db).add(**_review(note="kept"))
    again = ReviewStore(db)
    assert again.all()["id"].tolist() == [rid]
    assert again.all()["note"].tolist() == ["kept"]
    # and a plain sqlite3 reader sees it too: it is committed, not held in a connection
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 1


def test_wal_mode_and_identity(tmp_path):
    run_dir = tmp_path / "myrun"
    store.update_meta(run_dir, name="myrun", stages={"ingest": {"fingerprint": "abc123"}})
    rs = ReviewStore(run_dir)  # a run folder resolves to its reviews.sqlite
    assert rs.path == run_dir / store.REVIEWS
    with sqlite3.connect(rs.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    meta = rs.meta()
    assert meta["schema_version"] == "1"
    assert meta["run_name"] == "myrun" and meta["manifest_fingerprint"] == "abc123"


def test_newer_schema_is_refused(db):
    ReviewStore(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="newer"):
        ReviewStore(db)


def test_latest_supersedes_and_history_is_kept(db):
    rs = ReviewStore(db)
    first = rs.add(**_review(row=5, verdict="agree", reviewer="dr_a"))
    rs.add(**_review(row=7, patient_id="90002", verdict="unsure"))
    second = rs.add(**_review(row=5, verdict="label_wrong", reviewer="dr_b", note="missed IDC"))
    latest = rs.latest()
    assert latest["row"].tolist() == [5, 7]
    row5 = latest[latest["row"] == 5].iloc[0]
    assert row5["id"] == second and row5["verdict"] == "label_wrong" and row5["reviewer"] == "dr_b"
    assert rs.all()["id"].tolist()[0] == first and len(rs.all()) == 3  # history kept, oldest first
    assert rs.for_patient("90001")["id"].tolist() == [second]
    assert rs.for_patient(90002)["row"].tolist() == [7]
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
        from app.reviews import ReviewStore
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


def test_failed_transaction_leaves_nothing(db):
    """An exception after the INSERT but before COMMIT rolls the review back: never half-written."""
    rs = ReviewStore(db)
    rs.add(**_review())
    with pytest.raises(RuntimeError, match="crash"):
        with rs._connect() as conn, rs._transaction(conn):
            conn.execute('INSERT INTO reviews ("row", patient_id, x, y, verdict, note, reviewer, created_at) '
                         "VALUES (4, '90001', 1, 1, 'agree', '', 'dr_a', 't')")
            assert conn.in_transaction
            raise RuntimeError("crash")
    assert rs.count() == 1 and rs.all()["row"].tolist() == [3]


def test_mismatched_rows_and_backup(db, tmp_path):
    rs = ReviewStore(db)
    table = pd.DataFrame({"patient_id": ["90001", "90001", "90002"], "x": [1, 51, 1], "y": [1, 1, 51]})
    rs.add(**_review(row=1, patient_id="90001", x=51, y=1))   # matches row 1
    rs.add(**_review(row=2, patient_id="90001", x=1, y=1))    # row 2 shows another patch
    rs.add(**_review(row=10, patient_id="90003", x=1, y=1))   # row beyond the table
    assert rs.mismatched(table)["row"].tolist() == [2, 10]
    copy = rs.backup(tmp_path / "copy.sqlite")
    assert ReviewStore(copy).all().equals(rs.all())
