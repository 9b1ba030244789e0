# A frozen copy of app/reviews.py as it was before the cohort store (schema 1), kept only so that
# tests/test_cohort_reviews.py can make an old per-run reviews.sqlite exactly as the old code wrote it.
# noqa: the module is not part of the project; do not import it outside the tests.
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

Each review stores the patch's manifest ``row`` and also its ``patient_id``, ``x`` and ``y``. The
identity (patient_id, x, y) is what a review is about: a re-ingest into the same run folder can
reorder or drop manifest rows, so readers never trust the stored row alone. :func:`resolve` (and
:meth:`ReviewStore.resolved`) matches every review to the row that shows its patch now; a review
whose patch is no longer in the run is kept in the file and reported, never dropped.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import operator
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app import exports
from pipeline import store

VERDICTS = {"agree": "Agree with label", "label_wrong": "Label is wrong", "unsure": "Unsure"}
COLUMNS = ["id", "row", "patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]
PATCH_KEY = ["patient_id", "x", "y"]  # a patch's identity, whatever its row in the manifest
NOT_IN_RUN = -1  # the resolved row of a review whose patch the run no longer has
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
CREATE INDEX IF NOT EXISTS reviews_by_patch ON reviews (patient_id, x, y, id);
"""
_SELECT = 'SELECT id, "row", patient_id, x, y, verdict, note, reviewer, created_at FROM reviews'
# The latest review of each patch, by identity: after a re-ingest one patch can have reviews
# stored under two different rows, and the newer one must win.
_LATEST = "id IN (SELECT MAX(id) FROM reviews GROUP BY patient_id, x, y)"


def utc_now() -> str:
    """Current UTC time as ISO 8601 with milliseconds, e.g. 2025-01-31T14:05:09.123+00:00."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class NewerSchemaError(RuntimeError):
    """The reviews file was written by a newer version of the app."""


def resolve(reviews: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``reviews`` with ``row`` set to the row of ``table`` (its index) that shows the reviewed patch.

    The match is on the patch's identity (patient_id, x, y), in one vectorised merge, because a
    re-ingest into the same run folder may have reordered or dropped manifest rows: the stored row
    is kept as ``recorded_row`` and never used to find the patch. ``row`` is NOT_IN_RUN where the
    table has no such patch; those reviews are returned too, so nothing is ever left out unseen.
    """
    out = reviews.rename(columns={"row": "recorded_row"})
    if out.empty:
        out.insert(1, "row", pd.Series(dtype="int64"))
        return out
    # Only the reviewed patients' rows take part: a full-size table has 277,524 rows, and this
    # runs on every rerun of the pages that show reviews.
    sub = table[table["patient_id"].isin(out["patient_id"].unique())]
    key = pd.DataFrame({"patient_id": sub["patient_id"].astype(str).to_numpy(),
                        "x": sub["x"].to_numpy(np.int64), "y": sub["y"].to_numpy(np.int64),
                        "row": sub.index.to_numpy(np.int64)}).drop_duplicates(PATCH_KEY)  # ingest keeps one
    merged = out.astype({"patient_id": str, "x": "int64", "y": "int64"}).merge(
        key, on=PATCH_KEY, how="left", validate="many_to_one")  # a left merge keeps the reviews' order
    merged["row"] = merged["row"].fillna(NOT_IN_RUN).astype("int64")
    return merged[["id", "row", "recorded_row", *COLUMNS[2:]]]


@dataclass(frozen=True)
class RunReviews:
    """A run's reviews, each matched to the row that shows its patch now (see :func:`resolve`).

    ``problem`` says why the reviews file cannot be used (then there are no reviews to show and the
    review form is off); the pages show it and go on without reviews.
    """

    every: pd.DataFrame  # every review, oldest first: id, row (resolved), recorded_row, patient_id, ...
    file: str  # where the reviews are kept, as shown to the user
    problem: str = ""

    @classmethod
    def unavailable(cls, file: str, problem: str) -> RunReviews:
        return cls(resolve(pd.DataFrame(columns=COLUMNS).astype({"id": "int64", "row": "int64"}),
                           pd.DataFrame(columns=PATCH_KEY)), file, problem)

    @property
    def found(self) -> pd.DataFrame:
        """Reviews of patches this run has (superseded ones included), oldest first."""
        return self.every[self.every["row"] != NOT_IN_RUN]

    @property
    def latest(self) -> pd.DataFrame:
        """The latest review of each patch this run has, ordered by row."""
        return self.found.drop_duplicates("row", keep="last").sort_values("row", kind="stable")

    @property
    def not_in_run(self) -> pd.DataFrame:
        """Reviews naming a patch that is not in this run's manifest (kept in the file, listed apart)."""
        return self.every[self.every["row"] == NOT_IN_RUN]

    @property
    def moved(self) -> int:
        """How many reviews were stored under another row than the one showing their patch now."""
        found = self.found
        return int((found["row"] != found["recorded_row"]).sum())

    def verdicts(self) -> pd.Series:
        """The latest verdict of each reviewed patch (index = its row in this run)."""
        latest = self.latest
        return pd.Series(latest["verdict"].to_numpy(), index=latest["row"].to_numpy(), dtype=object)

    def of_row(self, row: int) -> pd.DataFrame:
        """Every review of the patch at ``row``, oldest first."""
        return self.every[self.every["row"] == int(row)]

    def export_frame(self) -> pd.DataFrame:
        """Every review, oldest first, for the CSV export: ``row`` is the patch's row in this run
        (empty when the run does not have it), ``recorded_row`` the row it was given on."""
        out = self.every.copy()
        out["row"] = out["row"].astype("Int64").mask(out["row"] == NOT_IN_RUN)
        return out


def problem_text(file: str, exc: BaseException, reason: str | None = None) -> str:
    """What to tell the user when the reviews file ``file`` cannot be used, and the fix.

    ``reason`` is the error as it may be shown (e.g. without server paths); ``str(exc)`` by default.
    """
    reason = str(exc) if reason is None else reason
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return (f"`{file}` is busy: another writer held it for over {BUSY_TIMEOUT_S:.0f} s, so reviews are not "
                "shown. Reload the page in a moment.")
    if isinstance(exc, NewerSchemaError):
        return f"Reviews are not shown: {reason}"
    return (f"`{file}` cannot be read as a reviews database ({reason}). Reviews are not shown and cannot be saved "
            "until it is fixed; everything else on the page works. Fix: move the file aside, together with "
            f"`{store.REVIEWS}-wal` and `{store.REVIEWS}-shm` if they are there (e.g. "
            f"`mv {store.REVIEWS} {store.REVIEWS}.broken` in the run folder), then reload: the app starts a new, "
            "empty reviews file. The app never changes or deletes the old file: keep it to recover its reviews.")


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
                    raise NewerSchemaError(f"{self.path} has review schema version {found[0]}, newer than this app's "
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
        """The latest review of each reviewed patch (patient_id, x, y), ordered by the stored row."""
        return self._query(f'WHERE {_LATEST} ORDER BY "row"')

    def for_patient(self, patient_id) -> pd.DataFrame:
        """The latest review of each reviewed patch of one patient, ordered by the stored row."""
        return self._query(f'WHERE patient_id = ? AND {_LATEST} ORDER BY "row"', (str(patient_id),))

    def count(self) -> int:
        """Number of reviews stored (all of them, superseded ones included)."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])

    def meta(self) -> dict:
        """The database's identity: schema_version, created_at, run_name, manifest_fingerprint."""
        with self._connect() as conn:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def resolved(self, table: pd.DataFrame, file: str | None = None) -> RunReviews:
        """Every review matched to the row of ``table`` that shows its patch now (see :func:`resolve`)."""
        return RunReviews(resolve(self.all(), table), str(self.path) if file is None else file)

    def mismatched(self, table: pd.DataFrame) -> pd.DataFrame:
        """Latest reviews whose stored row is missing from ``table`` or shows another patch (patient, x, y).

        Empty for reviews of the run they were written for; anything here means the run was
        re-ingested: :func:`resolve` finds those reviews' patches by identity (or reports them gone).
        """
        latest = self.latest()
        moved = resolve(latest, table)["row"].to_numpy() != latest["row"].to_numpy()
        return latest[moved].reset_index(drop=True)

    # ------------------------------------------------------------------------ export
    def to_csv_bytes(self) -> bytes:
        """All reviews as stored, oldest first, as UTF-8 CSV with formula-like notes neutralised."""
        return exports.csv_bytes(self.all())

    def backup(self, dest: Path | str) -> Path:
        """A consistent single-file copy (WAL folded in) at ``dest``, safe while others write."""
        dest = Path(dest)
        with store.atomic_path(dest) as tmp:
            with self._connect() as src, contextlib.closing(sqlite3.connect(tmp)) as out:
                src.backup(out)
        return dest
