"""Pathologist reviews of patches, kept in one SQLite store per cohort. Owns the review store format.

Where the reviews live
    A review is of a patch of a patient, (patient_id, x, y), not of a run: every run made from the
    same data folder (a retrained model, another architecture, ``pipeline score`` of the same folder,
    ``import-scores``) shows and adds to the same reviews. They are kept in
    ``<runs folder>/_cohorts/<data folder name>-<12 hex of sha256(data_root)>/reviews.sqlite``, beside
    ``cohort.json`` ({data_root, key, created_at}), where ``data_root`` is the resolved data folder
    that run.json records (:func:`cohort_dir`; a run without one has a cohort of its own, keyed by
    its folder). ``_cohorts`` holds no scores, so it is never listed as a run.

Migration
    Before the cohort store, each run kept ``<run>/reviews.sqlite`` (schema 1). :func:`open_for_run`
    migrates that file into the cohort store on first open: every review is copied (source
    ``migrated``, its row kept as ``recorded_row``), matched later by (patient_id, x, y); reviews
    whose patch the run no longer has are copied too and listed by :meth:`ReviewStore.migrations`.
    The old file is read from a private copy, so it is never changed, moved or deleted; the store
    records its path and sha256, so opening again adds nothing (a file that changed since adds only
    the reviews it did not have). A per-run file that cannot be read stops the opening with
    :class:`LegacyReviewsError` naming the file and the fix (move it aside), and is left untouched.

Nothing a reviewer entered may be lost or half-written:

* Reviews are append-only (triggers refuse UPDATE and DELETE). Several reviewers' verdicts on one
  patch are independent opinions: one reviewer's verdict never supersedes another's
  (pipeline.agreement.latest_per_reviewer gives each reviewer's latest one). ``latest()`` is only
  "the most recent review of the patch, by anyone", for the pages that show one mark per patch.
* Each review is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction with ``synchronous=FULL``: once
  ``add`` returns, the review is on disk; if it raises, nothing was written. (A CSV import and a
  migration are one transaction each: all their rows or none.)
* WAL journal mode and a busy timeout let several browser tabs, Streamlit threads and processes
  write at the same time: writers queue for the lock instead of failing.
* A connection is opened per call and closed after it, so no sqlite3 connection ever crosses a thread.

Each review records the reviewer, the run (``run_name``) and model (``model``) it was made on, and
the threshold and P(IDC) shown at the time (``threshold``, ``prob_shown``; empty when none was shown,
e.g. a migrated review). WAL keeps recent commits in ``reviews.sqlite-wal``: copy the database with
:meth:`ReviewStore.backup`, never ``reviews.sqlite`` alone. WAL needs a local file system.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import operator
import os
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import agreement, exports, store

# The verdicts are pipeline.agreement.VERDICTS (defined there once, in their order); here, their labels.
_VERDICT_LABELS = {"agree": "Agree with label", "label_wrong": "Label is wrong", "unsure": "Unsure"}
VERDICTS = {v: _VERDICT_LABELS[v] for v in agreement.VERDICTS}
COLUMNS = ["id", "patient_id", "x", "y", "verdict", "note", "reviewer", "created_at", "run_name", "model",
           "threshold", "prob_shown", "source", "recorded_row"]
LEGACY_COLUMNS = ["id", "row", "patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]  # schema 1
SOURCES = ("app", "cli", "import", "migrated")
SLIDE_STATUSES = ("in_review", "done", "reopened")
PATCH_KEY = ["patient_id", "x", "y"]  # a patch's identity, whatever its row in a run's manifest
NOT_IN_RUN = -1  # the resolved row of a review whose patch the run does not have
SCHEMA_VERSION = 2
LEGACY_SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
MAX_NOTE_CHARS = 10_000
COHORTS_DIR = "_cohorts"  # beside the run folders
COHORT_META = "cohort.json"

_VERDICT_SQL = ", ".join(f"'{v}'" for v in VERDICTS)
_SOURCE_SQL = ", ".join(f"'{v}'" for v in SOURCES)
_STATUS_SQL = ", ".join(f"'{v}'" for v in SLIDE_STATUSES)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id   TEXT    NOT NULL CHECK (length(patient_id) > 0),
    x            INTEGER NOT NULL,
    y            INTEGER NOT NULL,
    verdict      TEXT    NOT NULL CHECK (verdict IN ({_VERDICT_SQL})),
    note         TEXT    NOT NULL DEFAULT '',
    reviewer     TEXT    NOT NULL CHECK (length(trim(reviewer)) > 0),
    created_at   TEXT    NOT NULL,
    run_name     TEXT    NOT NULL DEFAULT '',
    model        TEXT    NOT NULL DEFAULT '',
    threshold    REAL    CHECK (threshold IS NULL OR (threshold >= 0 AND threshold <= 1)),
    prob_shown   REAL    CHECK (prob_shown IS NULL OR (prob_shown >= 0 AND prob_shown <= 1)),
    source       TEXT    NOT NULL DEFAULT 'app' CHECK (source IN ({_SOURCE_SQL})),
    recorded_row INTEGER CHECK (recorded_row IS NULL OR recorded_row >= 0)
);
CREATE INDEX IF NOT EXISTS reviews_by_patch ON reviews (patient_id, x, y, id);
CREATE INDEX IF NOT EXISTS reviews_by_reviewer ON reviews (reviewer, id);
CREATE TRIGGER IF NOT EXISTS reviews_no_update BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reviews_no_delete BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END;
CREATE TABLE IF NOT EXISTS slide_status (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL CHECK (length(patient_id) > 0),
    status     TEXT NOT NULL CHECK (status IN ({_STATUS_SQL})),
    reviewer   TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS migrations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    file         TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    run_name     TEXT    NOT NULL,
    migrated_at  TEXT    NOT NULL,
    n_in_file    INTEGER NOT NULL,
    n_added      INTEGER NOT NULL,
    n_known      INTEGER NOT NULL,
    n_not_in_run INTEGER NOT NULL,
    not_in_run_ids TEXT  NOT NULL DEFAULT '[]',
    UNIQUE (file, sha256)
);
"""
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM reviews"
_DTYPES = {"id": "int64", "patient_id": str, "x": "int64", "y": "int64", "verdict": str, "note": str,
           "reviewer": str, "created_at": str, "run_name": str, "model": str, "threshold": "float64",
           "prob_shown": "float64", "source": str, "recorded_row": "Int64"}
MIGRATION_COLUMNS = ["id", "file", "sha256", "run_name", "migrated_at", "n_in_file", "n_added", "n_known",
                     "n_not_in_run", "not_in_run_ids"]


def utc_now() -> str:
    """Current UTC time as ISO 8601 with milliseconds, e.g. 2025-01-31T14:05:09.123+00:00."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class NewerSchemaError(RuntimeError):
    """The reviews file was written by a newer version of the app."""


class LegacySchemaError(RuntimeError):
    """A per-run reviews file (schema 1) was opened as a store: open the run's cohort store instead."""


class LegacyReviewsError(sqlite3.DatabaseError):
    """A run's old per-run reviews file cannot be read, so it cannot be migrated; ``path`` names it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(reason)
        self.path = Path(path)
        self.reason = reason


# --------------------------------------------------------------------------- where a cohort's store is
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "data"


def cohort_key(data_root: str) -> str:
    """``<data folder name>-<12 hex of sha256 of data_root>`` (data_root as run.json records it: resolved)."""
    return f"{_safe_name(Path(str(data_root)).name)}-{hashlib.sha256(str(data_root).encode()).hexdigest()[:12]}"


def _run_meta(run_dir: Path) -> dict:
    return store.read_meta(run_dir) if (run_dir / store.RUN_META).exists() else {}


def cohort_dir(run_dir: Path | str) -> Path:
    """The folder of the cohort store of a run: ``<run_dir.parent>/_cohorts/<cohort_key(data_root)>``.

    Every run whose run.json records the same ``data_root`` shares it. A run without one (an old or
    hand-made folder) gets a cohort of its own, keyed by its resolved folder.
    """
    run_dir = Path(run_dir)
    root = _run_meta(run_dir).get("data_root")
    key = cohort_key(root) if root else cohort_key(str(run_dir.resolve()))
    return run_dir.parent / COHORTS_DIR / key


def cohort_store_path(run_dir: Path | str) -> Path:
    """The cohort reviews.sqlite of a run (see :func:`cohort_dir`)."""
    return cohort_dir(run_dir) / store.REVIEWS


def run_identity(run_dir: Path | str, meta: dict | None = None) -> tuple[str, str]:
    """(run_name, model) to record with a review made on the run: the run's name, and its model as
    ``<arch>@<first 12 of the train stage's fingerprint>`` (or where its scores came from)."""
    run_dir = Path(run_dir)
    meta = _run_meta(run_dir) if meta is None else meta
    name = str(meta.get("name") or run_dir.name)
    source = meta.get("source") or {}
    fp = str((meta.get("stages") or {}).get("train", {}).get("fingerprint", ""))[:12]
    arch = meta.get("arch")
    if source.get("kind") == "imported":
        model = f"imported:{Path(str(source.get('file', ''))).name}"
    elif source.get("kind") == "user_model":
        model = f"user_model:{Path(str(source.get('file', ''))).name}"
    elif arch:
        model = f"{arch}@{fp}" if fp else str(arch)
    else:
        model = str(source.get("name") or source.get("kind") or "")
    return name, model


# --------------------------------------------------------------------------- matching to a run
def _chronological(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` ordered by created_at (UTC), then id: the order in which "latest" is meant."""
    if df.empty:
        return df
    t = pd.to_datetime(df["created_at"].astype(str), utc=True, format="ISO8601", errors="coerce")
    order = pd.DataFrame({"t": t.to_numpy(), "id": df["id"].to_numpy(), "pos": np.arange(len(df))})
    return df.iloc[order.sort_values(["t", "id", "pos"], kind="stable", na_position="first")["pos"].to_numpy()]


def resolve(reviews: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``reviews`` with ``row`` set to the row of ``table`` (its index) that shows the reviewed patch.

    The match is on the patch's identity (patient_id, x, y), in one vectorised merge. A stored row
    (``row`` of a schema-1 table, ``recorded_row`` of the store) is kept as ``recorded_row`` and
    never used to find the patch. ``row`` is NOT_IN_RUN where the table has no such patch; those
    reviews are returned too, so nothing is ever left out unseen. Columns: id, row, recorded_row,
    then the others in their order.
    """
    out = reviews.copy()
    if "row" in out.columns:
        out = out.drop(columns=["recorded_row"], errors="ignore").rename(columns={"row": "recorded_row"})
    elif "recorded_row" not in out.columns:
        out["recorded_row"] = pd.array([pd.NA] * len(out), dtype="Int64")
    rest = [c for c in out.columns if c not in ("id", "recorded_row")]
    if out.empty:
        out = out.assign(row=pd.Series(dtype="int64"))
        return out[["id", "row", "recorded_row", *rest]]
    sub = table[table["patient_id"].astype(str).isin(out["patient_id"].astype(str).unique())]
    key = pd.DataFrame({"patient_id": sub["patient_id"].astype(str).to_numpy(),
                        "x": sub["x"].to_numpy(np.int64), "y": sub["y"].to_numpy(np.int64),
                        "row": sub.index.to_numpy(np.int64)}).drop_duplicates(PATCH_KEY)
    merged = out.astype({"patient_id": str, "x": "int64", "y": "int64"}).merge(
        key, on=PATCH_KEY, how="left", validate="many_to_one")  # a left merge keeps the reviews' order
    merged["row"] = merged["row"].fillna(NOT_IN_RUN).astype("int64")
    return merged[["id", "row", "recorded_row", *rest]]


@dataclass(frozen=True)
class RunReviews:
    """The cohort's reviews, each matched to the row of one run that shows its patch (see :func:`resolve`).

    ``problem`` says why the reviews cannot be used (then there are no reviews to show and the
    review form is off); the pages show it and go on without reviews.
    """

    every: pd.DataFrame  # every review, oldest first (by id): id, row (resolved), recorded_row, patient_id, ...
    file: str  # where the reviews are kept, as shown to the user
    problem: str = ""

    @classmethod
    def unavailable(cls, file: str, problem: str) -> RunReviews:
        return cls(resolve(_typed(pd.DataFrame(columns=COLUMNS)), pd.DataFrame(columns=PATCH_KEY)), file, problem)

    @property
    def found(self) -> pd.DataFrame:
        """Reviews of patches this run has (every reviewer, superseded ones included), oldest first."""
        return self.every[self.every["row"] != NOT_IN_RUN]

    @property
    def latest(self) -> pd.DataFrame:
        """The most recent review of each patch this run has, by any reviewer, ordered by row."""
        return _chronological(self.found).drop_duplicates("row", keep="last").sort_values("row", kind="stable")

    @property
    def latest_per_reviewer(self) -> pd.DataFrame:
        """Each reviewer's latest review of each patch this run has (independent opinions: one reviewer's
        newer verdict supersedes only their own older one)."""
        found = self.found
        return agreement.latest_per_reviewer(found) if len(found) else found

    @property
    def not_in_run(self) -> pd.DataFrame:
        """Reviews naming a patch that is not in this run's manifest (kept in the store, listed apart)."""
        return self.every[self.every["row"] == NOT_IN_RUN]

    @property
    def moved(self) -> int:
        """How many reviews were given on another row than the one showing their patch now."""
        found = self.found
        recorded = found["recorded_row"]
        return int(((recorded.notna()) & (recorded != found["row"])).fillna(False).sum())

    def verdicts(self) -> pd.Series:
        """The latest verdict of each reviewed patch (index = its row in this run)."""
        latest = self.latest
        return pd.Series(latest["verdict"].to_numpy(), index=latest["row"].to_numpy(), dtype=object)

    def of_row(self, row: int) -> pd.DataFrame:
        """Every review of the patch at ``row``, oldest first."""
        return self.every[self.every["row"] == int(row)]

    def by_reviewer(self, name: str) -> pd.DataFrame:
        """Every review by one reviewer (name compared after stripping spaces), oldest first."""
        return self.every[self.every["reviewer"].astype(str).str.strip() == str(name).strip()]

    def export_frame(self) -> pd.DataFrame:
        """Every review, oldest first, for the CSV export: ``row`` is the patch's row in this run
        (empty when the run does not have it), ``recorded_row`` the row it was given on (migrated)."""
        out = self.every.copy()
        out["row"] = out["row"].astype("Int64").mask(out["row"] == NOT_IN_RUN)
        return out


def problem_text(file: str, exc: BaseException, reason: str | None = None) -> str:
    """What to tell the user when the reviews file ``file`` cannot be used, and the fix.

    ``reason`` is the error as it may be shown (e.g. without server paths); ``str(exc)`` by default.
    """
    reason = str(exc) if reason is None else reason
    name = Path(str(file)).name or store.REVIEWS
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return (f"`{file}` is busy: another writer held it for over {BUSY_TIMEOUT_S:.0f} s, so reviews are not "
                "shown. Reload the page in a moment.")
    if isinstance(exc, (NewerSchemaError, LegacySchemaError)):
        return f"Reviews are not shown: {reason}"
    return (f"`{file}` cannot be read as a reviews database ({reason}). Reviews are not shown and cannot be saved "
            "until it is fixed; everything else on the page works. Fix: move the file aside, together with "
            f"`{name}-wal` and `{name}-shm` if they are there (e.g. `mv {name} {name}.broken` in its folder), "
            "then reload: the app starts without it. The app never changes or deletes the old file: keep it "
            "to recover its reviews.")


def _schema_number(value, path: Path) -> int:
    """A store's recorded schema version as a number; sqlite3.DatabaseError naming the file when it is not one
    (not a reviews store this app wrote: the pages say so, with the fix, as for any other unreadable file)."""
    text = str(value).strip()
    if text.isascii() and text.isdigit():
        return int(text)
    raise sqlite3.DatabaseError(f"{path}: its meta table records schema_version {value!r}, which is not a "
                                "number: it is not a reviews store this app wrote")


def _int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _probability(name: str, value) -> float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return v


def _time(value) -> str:
    if value is None:
        return utc_now()
    text = str(value).strip()
    if not text or pd.isna(pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")):
        raise ValueError(f"created_at must be an ISO 8601 time (e.g. 2025-01-31T14:05:09.123+00:00), got {value!r}")
    return text


def _required(value, message: str) -> str:
    """``value`` as stripped text; ValueError(message) when that is empty (or value is None)."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(message)
    return text


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in ("threshold", "prob_shown"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    out["recorded_row"] = pd.array([None if pd.isna(v) else int(v) for v in out["recorded_row"]], dtype="Int64")
    return out.astype(_DTYPES)


def _clean_review(patient_id, x, y, verdict, reviewer, note, run_name, model, threshold, prob_shown, source,
                  created_at, recorded_row) -> tuple:
    """The checked values of one review, in COLUMNS order without id; ValueError naming the bad value."""
    x, y = _int("x", x), _int("y", y)
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; valid verdicts: {', '.join(VERDICTS)}")
    reviewer = _required(reviewer, "reviewer must be a non-empty name")
    patient_id = _required(patient_id, "patient_id must be non-empty")
    note = "" if note is None else str(note)
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"note is {len(note):,} characters; the limit is {MAX_NOTE_CHARS:,}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if recorded_row is not None and not pd.isna(recorded_row):
        recorded_row = _int("recorded_row", int(recorded_row) if isinstance(recorded_row, np.integer) else recorded_row)
        if recorded_row < 0:
            raise ValueError(f"recorded_row must be >= 0, got {recorded_row}")
    else:
        recorded_row = None
    return (patient_id, x, y, verdict, note, reviewer, _time(created_at), str(run_name or ""), str(model or ""),
            _probability("threshold", threshold), _probability("prob_shown", prob_shown), source, recorded_row)


_INSERT = f"INSERT INTO reviews ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * (len(COLUMNS) - 1))})"


class ReviewStore:
    """Append-only pathologist reviews of one cohort in one SQLite file; safe across threads and processes.

    ``path``: the reviews.sqlite file, or a folder holding it (a cohort folder). Open a run's store
    with :func:`open_for_run`, which finds the cohort and migrates the run's old per-run file.
    """

    def __init__(self, path: Path | str, data_root: str | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / store.REVIEWS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A new store is made here, with the mode of every artifact (store.file_mode: 0666 less the umask),
        # rather than by SQLite, which would give it 0644 whatever the umask; SQLite gives its -wal and -shm
        # files the database file's mode, so the three always match. An empty file is a new database to SQLite.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, store.file_mode()))
        # Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked" at once,
        # without its busy handler, while another connection is creating the same new file. Every step below
        # is idempotent, so two app servers opening a new cohort store together retry instead of failing.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self._initialise(data_root)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _initialise(self, data_root: str | None) -> None:
        """Check the schema version, switch to WAL (persistent) and create the tables if new."""
        with self._connect() as conn:
            found = self._schema_version(conn)
            if found is not None and found < SCHEMA_VERSION:
                raise LegacySchemaError(
                    f"{self.path} is a per-run reviews file of schema {found}; reviews now live in one store per "
                    "cohort: open the run with pipeline.reviews.open_for_run, which migrates this file (and never "
                    "changes it)")
            if found is not None and found > SCHEMA_VERSION:
                raise NewerSchemaError(f"{self.path} has review schema version {found}, newer than this app's "
                                       f"{SCHEMA_VERSION}; update the app instead of writing to it.")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: could not switch to WAL journal mode (got {mode})")
            with self._transaction(conn):
                for statement in _statements(_SCHEMA):
                    conn.execute(statement)
                if conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() is None:
                    identity = {"schema_version": str(SCHEMA_VERSION), "created_at": utc_now(),
                                "data_root": str(data_root or ""), "cohort": self.path.parent.name}
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", identity.items())

    def _schema_version(self, conn) -> int | None:
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else _schema_number(row[0], self.path)

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
        """BEGIN IMMEDIATE (take the write lock up front) ... COMMIT, or ROLLBACK if the block raises."""
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
        return _typed(pd.DataFrame(rows, columns=COLUMNS))

    # ------------------------------------------------------------------------ writing
    def add(self, *, patient_id: str, x: int, y: int, verdict: str, reviewer: str, note: str = "",
            run_name: str = "", model: str = "", threshold: float | None = None, prob_shown: float | None = None,
            source: str = "app", created_at: str | None = None, row: int | None = None,
            recorded_row: int | None = None) -> int:
        """Store one review in its own transaction and return its id.

        Raises ValueError (nothing written) for an unknown verdict or source, an empty reviewer or
        patient id, non-integer coordinates, an over-long note, a threshold or P(IDC) outside [0, 1]
        or a created_at that is not ISO 8601 (None: now). ``row`` is accepted for old callers and
        ignored: a review is of (patient_id, x, y). Append-only: history is kept.
        """
        values = _clean_review(patient_id, x, y, verdict, reviewer, note, run_name, model, threshold, prob_shown,
                               source, created_at, recorded_row)
        with self._connect() as conn, self._transaction(conn):
            return int(conn.execute(_INSERT, values).lastrowid)

    def import_reviews(self, reviews: pd.DataFrame, *, source: str = "import", run_name: str = "",
                       model: str = "") -> tuple[int, int]:
        """Add the reviews of a table (pipeline.agreement.read_reviews_csv's valid rows, or another
        store's) that the store does not hold yet, keeping their created_at; (added, already known).

        A review is known when patient_id, x, y, verdict, note, reviewer and created_at all match
        one in the store (pipeline.agreement.drop_known_reviews), so importing one file twice adds
        nothing. Run, model, threshold and P(IDC) come from the table where it has them, else
        ``run_name``/``model``. One transaction: all the new rows or none.
        """
        def col(name, default):
            return reviews[name] if name in reviews.columns else pd.Series([default] * len(reviews), index=reviews.index)

        rows = []
        for r in pd.DataFrame({
                "patient_id": col("patient_id", ""), "x": col("x", 0), "y": col("y", 0), "verdict": col("verdict", ""),
                "reviewer": col("reviewer", ""), "note": col("note", ""),
                "run_name": col("run_name", "").replace("", np.nan).fillna(run_name),
                "model": col("model", "").replace("", np.nan).fillna(model),
                "threshold": col("threshold", None), "prob_shown": col("prob_shown", None),
                "created_at": col("created_at", None), "recorded_row": col("recorded_row", None)}).itertuples(index=False):
            rows.append(_clean_review(r.patient_id, int(r.x), int(r.y), r.verdict, r.reviewer, r.note, r.run_name,
                                      r.model, _blank(r.threshold), _blank(r.prob_shown), source, r.created_at,
                                      _blank(r.recorded_row)))
        with self._connect() as conn, self._transaction(conn):
            return self._insert_new(conn, rows)

    def _insert_new(self, conn, rows: list[tuple]) -> tuple[int, int]:
        """Insert the rows (clean tuples) the store does not hold yet, inside the caller's transaction."""
        if not rows:
            return 0, 0
        new = pd.DataFrame(rows, columns=COLUMNS[1:])
        existing = pd.DataFrame(conn.execute(f"{_SELECT}").fetchall(), columns=COLUMNS)
        new["_pos"] = np.arange(len(new))
        fresh, known = agreement.drop_known_reviews(new, existing)
        fresh = fresh.drop_duplicates([c for c in COLUMNS[1:8]])  # the same review twice in one batch
        keep = fresh["_pos"].to_numpy()
        conn.executemany(_INSERT, [rows[i] for i in keep])
        return len(keep), len(rows) - len(keep)

    def set_slide_status(self, patient_id, status: str, reviewer: str) -> int:
        """Record a slide's review progress (in_review, done, reopened): append-only; its id."""
        if status not in SLIDE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(SLIDE_STATUSES)}, got {status!r}")
        reviewer = _required(reviewer, "reviewer must be a non-empty name")
        pid = _required(patient_id, "patient_id must be non-empty")
        with self._connect() as conn, self._transaction(conn):
            return int(conn.execute("INSERT INTO slide_status (patient_id, status, reviewer, created_at) "
                                    "VALUES (?, ?, ?, ?)", (pid, status, reviewer, utc_now())).lastrowid)

    # ------------------------------------------------------------------------ reading
    def all(self) -> pd.DataFrame:
        """Every review, oldest first (by id), with the columns of COLUMNS."""
        return self._query("ORDER BY id")

    def latest(self) -> pd.DataFrame:
        """The most recent review (created_at, then id) of each reviewed patch, by any reviewer; by patch."""
        out = _chronological(self.all()).drop_duplicates(PATCH_KEY, keep="last")
        return out.sort_values(PATCH_KEY, kind="stable").reset_index(drop=True)

    def latest_per_reviewer(self) -> pd.DataFrame:
        """Each reviewer's latest review of each patch (pipeline.agreement.latest_per_reviewer)."""
        return agreement.latest_per_reviewer(self.all())

    def for_patient(self, patient_id) -> pd.DataFrame:
        """The most recent review of each reviewed patch of one patient."""
        latest = self.latest()
        return latest[latest["patient_id"] == str(patient_id)].reset_index(drop=True)

    def count(self) -> int:
        """Number of reviews stored (all of them, superseded ones included)."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])

    def meta(self) -> dict:
        """The store's identity: schema_version, created_at, data_root, cohort (and migrated files)."""
        with self._connect() as conn:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def slide_status(self) -> pd.DataFrame:
        """The latest progress record of each patient: patient_id, status, reviewer, created_at."""
        with self._connect() as conn:
            rows = conn.execute("SELECT patient_id, status, reviewer, created_at FROM slide_status WHERE id IN "
                                "(SELECT MAX(id) FROM slide_status GROUP BY patient_id) ORDER BY patient_id").fetchall()
        return pd.DataFrame(rows, columns=["patient_id", "status", "reviewer", "created_at"]).astype(str)

    def migrations(self) -> pd.DataFrame:
        """Every per-run file migrated into the store: file, sha256, run_name, migrated_at, n_in_file,
        n_added, n_known (already there), n_not_in_run and not_in_run_ids (JSON list of the ids of the
        migrated reviews whose patch the run did not have: kept, and listed here)."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(MIGRATION_COLUMNS)} FROM migrations ORDER BY id").fetchall()
        return pd.DataFrame(rows, columns=MIGRATION_COLUMNS)

    def resolved(self, table: pd.DataFrame, file: str | None = None) -> RunReviews:
        """Every review matched to the row of ``table`` that shows its patch (see :func:`resolve`)."""
        return RunReviews(resolve(self.all(), table), str(self.path) if file is None else file)

    def mismatched(self, table: pd.DataFrame) -> pd.DataFrame:
        """Latest reviews whose recorded row (migrated reviews) is missing from ``table`` or shows
        another patch: the run was re-ingest since they were given; matching by identity handles it."""
        latest = self.latest()
        resolved = resolve(latest, table)
        rec = resolved["recorded_row"]
        moved = (rec.notna() & (rec != resolved["row"])).fillna(False).to_numpy(bool)
        return latest[moved].reset_index(drop=True)

    # ------------------------------------------------------------------------ export
    def to_csv_bytes(self) -> bytes:
        """All reviews as stored, oldest first, as UTF-8 CSV with formula-like text neutralised."""
        return exports.csv_bytes(self.all())

    def backup(self, dest: Path | str) -> Path:
        """A consistent single-file copy (WAL folded in) at ``dest``, safe while others write."""
        dest = Path(dest)
        with store.atomic_path(dest) as tmp:
            with self._connect() as src, contextlib.closing(sqlite3.connect(tmp)) as out:
                src.backup(out)
        return dest

    # ------------------------------------------------------------------------ migration
    def migrate_legacy(self, legacy: Path | str, *, run_name: str = "", model: str = "",
                       table: pd.DataFrame | None = None) -> dict | None:
        """Copy a per-run reviews file's reviews into this store, once (see the module docstring).

        Returns the migration record (as :meth:`migrations` lists it) when something was migrated or
        recorded now, None when this exact file (path and sha256) was migrated before. ``table``: the
        run's patches (patient_id, x, y) to list the reviews whose patch the run does not have.
        Raises LegacyReviewsError, leaving the file untouched, when it cannot be read.
        """
        legacy = Path(legacy)
        digest = _file_digest(legacy)
        where = str(legacy.resolve())
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM migrations WHERE file = ? AND sha256 = ?", (where, digest)).fetchone():
                return None
        old, old_meta = read_legacy(legacy)
        run_name = run_name or str(old_meta.get("run_name", legacy.parent.name))
        rows = [_clean_review(r.patient_id, int(r.x), int(r.y), r.verdict, r.reviewer, r.note,
                              r.run_name if "run_name" in old.columns and r.run_name else run_name,
                              r.model if "model" in old.columns and r.model else model,
                              _blank(getattr(r, "threshold", None)), _blank(getattr(r, "prob_shown", None)),
                              "migrated", r.created_at, _blank(getattr(r, "recorded_row", getattr(r, "row", None))))
                for r in old.itertuples(index=False)]
        with self._connect() as conn, self._transaction(conn):
            if conn.execute("SELECT 1 FROM migrations WHERE file = ? AND sha256 = ?", (where, digest)).fetchone():
                return None  # another process migrated it meanwhile
            before = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM reviews").fetchone()[0])
            added, known = self._insert_new(conn, rows)
            not_in_run: list[int] = []
            if table is not None and added:
                new = pd.DataFrame(conn.execute(f"{_SELECT} WHERE id > ? ORDER BY id", (before,)).fetchall(),
                                   columns=COLUMNS)
                got = resolve(_typed(new), table)
                not_in_run = got.loc[got["row"] == NOT_IN_RUN, "id"].astype(int).tolist()
            record = {"file": where, "sha256": digest, "run_name": run_name, "migrated_at": utc_now(),
                      "n_in_file": len(rows), "n_added": added, "n_known": known, "n_not_in_run": len(not_in_run),
                      "not_in_run_ids": json.dumps(not_in_run)}
            conn.execute(f"INSERT INTO migrations ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
                         tuple(record.values()))
        return record


def _statements(sql: str) -> list[str]:
    """The schema's statements (a trigger's body holds a ';' of its own)."""
    out, buf = [], ""
    for part in sql.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    return out


def _blank(value):
    if value is None:
        return None
    if isinstance(value, str):
        return None if not value.strip() else value
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


def _file_digest(path: Path) -> str:
    """sha256 of a SQLite file with its WAL (recent commits live there until a checkpoint)."""
    h = hashlib.sha256()
    for p in (path, path.with_name(path.name + "-wal")):
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()


def read_legacy(path: Path | str) -> tuple[pd.DataFrame, dict]:
    """(reviews, meta) of a per-run reviews file (schema 1, or a schema-2 file in a run folder),
    read from a private copy so the file itself is never changed. An empty (0-byte) file holds no
    reviews. Raises LegacyReviewsError naming the file when it cannot be read as a reviews database."""
    path = Path(path)
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=LEGACY_COLUMNS), {}
    with tempfile.TemporaryDirectory(prefix="legacy_reviews_") as tmp:
        copy = Path(tmp) / store.REVIEWS
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        try:
            with contextlib.closing(sqlite3.connect(copy)) as conn:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                cols = [r[1] for r in conn.execute("PRAGMA table_info(reviews)").fetchall()]
                if not {"patient_id", "x", "y", "verdict", "reviewer", "created_at"} <= set(cols):
                    raise sqlite3.DatabaseError("it has no reviews table")
                wanted = [c for c in (*LEGACY_COLUMNS, *COLUMNS) if c in cols]
                wanted = list(dict.fromkeys(wanted))
                rows = conn.execute(f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in wanted)} FROM reviews "
                                    "ORDER BY id").fetchall()
        except sqlite3.DatabaseError as exc:
            raise LegacyReviewsError(path, f"{path}: {exc}") from None
    try:
        version = _schema_number(meta.get("schema_version", LEGACY_SCHEMA_VERSION) or LEGACY_SCHEMA_VERSION, path)
    except sqlite3.DatabaseError as exc:
        raise LegacyReviewsError(path, str(exc)) from None
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(f"{path} has review schema version {version}, newer than this app's {SCHEMA_VERSION}")
    df = pd.DataFrame(rows, columns=wanted)
    return df.astype({"patient_id": str, "verdict": str, "reviewer": str, "created_at": str}), meta


def open_for_run(run_dir: Path | str, table: pd.DataFrame | None = None) -> ReviewStore:
    """The cohort review store of a run (created if new), with the run's old per-run
    ``reviews.sqlite`` migrated into it on first open (see the module docstring).

    ``table``: the run's patches (patient_id, x, y; e.g. Run.table) to list migrated reviews whose
    patch the run lacks; read from the run's manifest when None and a migration happens. Raises
    LegacyReviewsError (the old file unreadable: it is left as it is), NewerSchemaError, sqlite3.Error.
    """
    run_dir = Path(run_dir)
    meta = _run_meta(run_dir)
    folder = cohort_dir(run_dir)
    rs = ReviewStore(folder / store.REVIEWS, data_root=meta.get("data_root"))
    info = folder / COHORT_META
    if not info.exists():
        store.write_json(info, {"data_root": meta.get("data_root") or str(run_dir.resolve()),
                                "key": folder.name, "created_at": utc_now()})
    legacy = run_dir / store.REVIEWS
    if legacy.is_file() and legacy.resolve() != rs.path.resolve():
        if table is None and (run_dir / store.MANIFEST).exists():
            with contextlib.suppress(Exception):
                table = store.read_manifest(run_dir)
        name, model = run_identity(run_dir, meta)
        rs.migrate_legacy(legacy, run_name=name, model=model, table=table)
    return rs
