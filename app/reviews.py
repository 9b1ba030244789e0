"""Pathologist reviews of patches, kept in SQLite in the run folder (``reviews.sqlite``).

Nothing a reviewer entered may be lost or half-written:

* Reviews are append-only. A new review of a patch supersedes the earlier one in ``latest()``;
  the earlier one stays in ``all()`` and in the CSV export.
* Each review is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction with ``synchronous=FULL``: once
  ``add`` returns, the review is on disk; if it raises, nothing was written.
* WAL journal mode and a busy timeout let several browser tabs, Streamlit threads and processes
  write at the same time: writers queue for the lock instead of failing.
* A connection is opened per call and closed after it, so no sqlite3 connection ever crosses a
  thread (Streamlit runs each script rerun in its own thread).

WAL keeps recent commits in ``reviews.sqlite-wal`` until a checkpoint folds them into the main
file: copy the database with :meth:`ReviewStore.backup` (or copy all three files together while no
one writes), never ``reviews.sqlite`` alone. WAL needs a local file system, not a network share.

Each review stores the patch's manifest ``row`` and also its ``patient_id``, ``x`` and ``y``, so
reviews stay attributable to the right patch even if a run is ever re-ingested with other rows;
:meth:`ReviewStore.mismatched` lists reviews whose row no longer shows the same patch.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import operator
import sqlite3
from pathlib import Path

import pandas as pd

from pipeline import store

VERDICTS = {"agree": "Agree with label", "label_wrong": "Label is wrong", "unsure": "Unsure"}
COLUMNS = ["id", "row", "patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
MAX_NOTE_CHARS = 10_000

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    "row"      INTEGER NOT NULL CHECK ("row" >= 0),
    patient_id TEXT    NOT NULL CHECK (length(patient_id) > 0),
    x          INTEGER NOT NULL,
    y          INTEGER NOT NULL,
    verdict    TEXT    NOT NULL CHECK (verdict IN ({", ".join(f"'{v}'" for v in VERDICTS)})),
    note       TEXT    NOT NULL DEFAULT '',
    reviewer   TEXT    NOT NULL CHECK (length(trim(reviewer)) > 0),
    created_at TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_row ON reviews ("row", id);
CREATE INDEX IF NOT EXISTS reviews_by_patient ON reviews (patient_id, "row", id);
"""
_SELECT = 'SELECT id, "row", patient_id, x, y, verdict, note, reviewer, created_at FROM reviews'
_LATEST = 'id IN (SELECT MAX(id) FROM reviews GROUP BY "row")'


def utc_now() -> str:
    """Current UTC time as ISO 8601 with milliseconds, e.g. 2025-01-31T14:05:09.123+00:00."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


class ReviewStore:
    """Append-only pathologist reviews in one SQLite file; safe to share across threads and processes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.is_dir():  # a run folder: use its reviews.sqlite
            self.path = self.path / store.REVIEWS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # persistent; a no-op when set
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: could not switch to WAL journal mode (got {mode})")
            with self._transaction(conn):
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if found is None:
                    run = store.read_meta(self.path.parent) if (self.path.parent / store.RUN_META).exists() else {}
                    identity = {
                        "schema_version": str(SCHEMA_VERSION),
                        "created_at": utc_now(),
                        "run_name": str(run.get("name", self.path.parent.name)),
                        # the manifest the review rows index into
                        "manifest_fingerprint": str(run.get("stages", {}).get("ingest", {}).get("fingerprint", "")),
                    }
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", identity.items())
                elif int(found[0]) > SCHEMA_VERSION:
                    raise RuntimeError(f"{self.path} has review schema version {found[0]}, newer than this app's "
                                       f"{SCHEMA_VERSION}; update the app instead of writing to it.")

    # ------------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def _connect(self):
        """A fresh connection for one call, closed afterwards (connections never cross threads)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA synchronous=FULL")  # a committed review survives a power cut
            yield conn
        finally:
            conn.close()

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection):
        """BEGIN IMMEDIATE (take the write lock up front, waiting up to the busy timeout) ... COMMIT,
        or ROLLBACK if the block raises."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _query(self, where: str = "", params: tuple = ()) -> pd.DataFrame:
        with self._connect() as conn:
            rows = conn.execute(f"{_SELECT} {where}", params).fetchall()
        df = pd.DataFrame(rows, columns=COLUMNS)
        return df.astype({"id": "int64", "row": "int64", "x": "int64", "y": "int64",
                          "patient_id": str, "verdict": str, "note": str, "reviewer": str, "created_at": str})

    # ------------------------------------------------------------------------ writing
    def add(self, *, row: int, patient_id: str, x: int, y: int, verdict: str, note: str = "", reviewer: str) -> int:
        """Store one review in its own transaction and return its id.

        Raises ValueError (nothing written) for an unknown verdict, an empty reviewer or patient id,
        a negative row, non-integer coordinates or an over-long note. Reviews are append-only: a
        new review of the same row supersedes the earlier one in latest(); history is kept.
        """
        row, x, y = _int("row", row), _int("x", x), _int("y", y)
        if row < 0:
            raise ValueError(f"row must be >= 0, got {row}")
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; valid verdicts: {', '.join(VERDICTS)}")
        reviewer = "" if reviewer is None else str(reviewer).strip()
        if not reviewer:
            raise ValueError("reviewer must be a non-empty name")
        patient_id = "" if patient_id is None else str(patient_id).strip()
        if not patient_id:
            raise ValueError("patient_id must be non-empty")
        note = "" if note is None else str(note)
        if len(note) > MAX_NOTE_CHARS:
            raise ValueError(f"note is {len(note):,} characters; the limit is {MAX_NOTE_CHARS:,}")
        with self._connect() as conn, self._transaction(conn):
            cur = conn.execute(
                'INSERT INTO reviews ("row", patient_id, x, y, verdict, note, reviewer, created_at) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row, patient_id, x, y, verdict, note, reviewer, utc_now()))
            return int(cur.lastrowid)

    # ------------------------------------------------------------------------ reading
    def all(self) -> pd.DataFrame:
        """Every review, oldest first (columns id, row, patient_id, x, y, verdict, note, reviewer, created_at)."""
        return self._query("ORDER BY id")

    def latest(self) -> pd.DataFrame:
        """The latest review of each reviewed patch row, ordered by row."""
        return self._query(f'WHERE {_LATEST} ORDER BY "row"')

    def for_patient(self, patient_id) -> pd.DataFrame:
        """The latest review of each reviewed row of one patient, ordered by row."""
        return self._query(f'WHERE patient_id = ? AND {_LATEST} ORDER BY "row"', (str(patient_id),))

    def count(self) -> int:
        """Number of reviews stored (all of them, superseded ones included)."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])

    def meta(self) -> dict:
        """The database's identity: schema_version, created_at, run_name, manifest_fingerprint."""
        with self._connect() as conn:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def mismatched(self, table: pd.DataFrame) -> pd.DataFrame:
        """Latest reviews whose row is missing from ``table`` or shows another patch (patient, x, y).

        Empty for reviews of the run they were written for; anything here means the run was
        re-ingested and those reviews must be matched by (patient_id, x, y), not by row.
        """
        latest = self.latest()
        if latest.empty:
            return latest
        rows = latest["row"].to_numpy()
        inside = rows < len(table)
        ok = inside.copy()
        sub = table.iloc[rows[inside]]
        ok[inside] = ((sub["patient_id"].astype(str).to_numpy() == latest["patient_id"].to_numpy()[inside])
                      & (sub["x"].to_numpy() == latest["x"].to_numpy()[inside])
                      & (sub["y"].to_numpy() == latest["y"].to_numpy()[inside]))
        return latest[~ok].reset_index(drop=True)

    # ------------------------------------------------------------------------ export
    def to_csv_bytes(self) -> bytes:
        """All reviews, oldest first, as UTF-8 CSV (for st.download_button)."""
        buf = io.StringIO()
        self.all().to_csv(buf, index=False)
        return buf.getvalue().encode("utf-8")

    def backup(self, dest: Path | str) -> Path:
        """A consistent single-file copy (WAL folded in) at ``dest``, safe while others write."""
        dest = Path(dest)
        with store.atomic_path(dest) as tmp:
            with self._connect() as src, contextlib.closing(sqlite3.connect(tmp)) as out:
                src.backup(out)
        return dest
