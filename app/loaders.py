"""Cached loading: runs, derived tables, rebuilt slides, the model's explainer, CAMs, reviews.

Heavy objects are shared across sessions with ``st.cache_resource`` and must be treated as
read-only (slide arrays are flagged non-writeable to enforce it). Derived objects are keyed by
:func:`run_key`, which changes whenever the pipeline rewrites the run's scores or evaluation, so a
re-run pipeline is picked up without restarting the app.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, cohort, selection, slides
from pipeline.reviews import NewerSchemaError, ReviewStore, RunReviews, problem_text
from pipeline import agreement, compare_runs, evaluate, metrics, reviews, store, uncertainty
from pipeline.names import RUNS_DIR

RUNS_ENV = "IDC_RUNS"
SPLIT_ORDER = tuple(reversed(store.SPLITS))  # the pipeline's splits, test first: what a reviewer opens first
DEFAULT_RUNS_DIR = Path(RUNS_DIR)


def runs_dir() -> Path:
    """Where run folders are listed: $IDC_RUNS when set, else ./runs."""
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


def find_runs() -> list[Path]:
    """Run folders, newest first (listed afresh on every rerun, so a new run shows up at once)."""
    return store.list_runs(runs_dir())


# What load_run reads: a change to any of them (a re-run pipeline, a repaired file) is a new version.
_RUN_FILES = (store.RUN_META, store.MANIFEST, store.PATCHES, store.SPLIT, store.SCORES, store.EVALUATION)


def _version(run_dir: Path) -> tuple:
    """(name, mtime, size) of each file the run is loaded from; None for a missing one."""
    out = []
    for name in _RUN_FILES:
        try:
            found = (run_dir / name).stat()
            out.append((name, found.st_mtime_ns, found.st_size))
        except OSError:
            out.append((name, None))
    return tuple(out)


def public_message(exc: BaseException, run_dir: Path) -> str:
    """An error message for the browser: the runs folder named by its own name (``runs/NAME/...``,
    as in the README's commands), never by the server's full path."""
    text, runs = str(exc), run_dir.parent
    spellings = {str(runs.resolve()), str(runs.absolute()), str(runs)} - {"", "."}
    for spelling in sorted(spellings, key=len, reverse=True):  # the longest first: one may contain another
        text = text.replace(spelling.rstrip(os.sep) + os.sep, f"{runs.resolve().name}{os.sep}")
    return text


def load_run(run_dir: Path) -> store.Run:
    """The run, loaded once per version of its files; raises store.ArtifactError if it is broken.

    A failure is remembered for that version too, so a broken run is not re-read on every rerun
    (the picker marks it, and the default run skips it); repairing a file makes a new version.
    """
    version = _version(run_dir)
    failures = _failures()
    known = failures.get((str(run_dir), version))
    if known is not None:
        raise store.ArtifactError(known)
    try:
        return _load_run(str(run_dir), version)
    except store.ArtifactError as exc:
        if len(failures) > 256:  # bounded: stale versions are never asked for again
            failures.clear()
        failures[(str(run_dir), version)] = str(exc)
        raise


def known_broken(run_dir: Path) -> bool:
    """True when this version of the run already failed to load in this server process."""
    return (str(run_dir), _version(run_dir)) in _failures()


def first_loadable(run_paths: list[Path]) -> Path | None:
    """The first run (newest first) that loads: the default, so a broken newest run never opens by itself."""
    for path in run_paths:
        try:
            load_run(path)
        except store.ArtifactError:
            continue
        return path
    return None


@st.cache_resource(show_spinner=False)
def _failures() -> dict:
    return {}  # (run folder, version) -> the ArtifactError's message, shared by every session


@st.cache_resource(max_entries=4, show_spinner="Loading the run...")
def _load_run(path: str, version: tuple) -> store.Run:
    return store.load_run(path)


def run_key(run: store.Run) -> str:
    """Identifies what a run's derived data depend on: its folder and its scoring/evaluation stages."""
    stages = run.meta.get("stages", {})
    return "|".join([str(run.path.resolve()), run.meta.get("created", ""),
                     *(str(stages.get(s, {}).get("fingerprint", "")) for s in ("ingest", "score", "evaluate"))])


# --------------------------------------------------------------------------- per split
@dataclass(frozen=True)
class Labels:
    """Which labels the metrics are measured against: the dataset's (``key`` empty) or the reviewed
    labels of :func:`reviewed_labels` (``key`` names the reviews and the rule they come from)."""

    key: str = ""
    reviewed: agreement.ReviewedLabels | None = None


DATASET_LABELS = Labels()


@dataclass(frozen=True)
class SplitData:
    """One split's patches. ``rows``, ``label``, ``prob`` and ``described`` hold only the labelled patches
    (what every metric is measured on); ``all_rows`` every patch of the split, unlabelled ones too (the
    review queue, prediction counts); ``unlabelled`` the counts of selection.unlabelled_counts."""

    rows: pd.DataFrame
    label: np.ndarray
    prob: np.ndarray
    described: dict  # n_patients, n_patches, n_positive (labelled patches only)
    all_rows: pd.DataFrame | None = None
    unlabelled: dict | None = None

    @property
    def every_row(self) -> pd.DataFrame:
        return self.rows if self.all_rows is None else self.all_rows

    @property
    def unlabelled_text(self) -> str:
        """'' when every patch is labelled, else how many patches and patients the metrics leave out."""
        return selection.unlabelled_text(self.unlabelled, len(self.every_row)) if self.unlabelled else ""


def split_data(run: store.Run, split: str, labels: Labels = DATASET_LABELS) -> SplitData:
    return _split_data(run, run_key(run), split, labels.key, labels)


@st.cache_resource(max_entries=16)
def _split_data(_run: store.Run, key: str, split: str, labels_key: str = "", _labels: Labels = DATASET_LABELS
                ) -> SplitData:
    # Categorical ids make grouping by patient (per-patient table, filters) several times faster.
    rows = evaluate.split_rows(_run.table, split).astype({"patient_id": "category", "split": "category"})
    if _labels.reviewed is not None:
        reviewed = _labels.reviewed.table["reviewed_label"].reindex(rows.index)
        reviewed = reviewed.where(store.labelled(rows["label"].to_numpy()))  # no label to flip: stays unlabelled
        rows = rows.assign(label=reviewed.fillna(rows["label"]).astype(rows["label"].dtype))
    # The one place unlabelled patches (slides ingested without annotations) leave the metrics.
    labelled = selection.labelled_rows(rows)
    return SplitData(labelled, labelled["label"].to_numpy(), labelled["prob"].to_numpy(), evaluate.describe(labelled),
                     all_rows=rows, unlabelled=selection.unlabelled_counts(rows))


def curves(run: store.Run, split: str, labels: Labels = DATASET_LABELS) -> dict:
    """Threshold-free curves of one split (ROC, PR, calibration, histogram)."""
    return _curves(run, run_key(run), split, labels.key, labels)


@st.cache_resource(max_entries=16, show_spinner="Computing curves...")
def _curves(_run: store.Run, key: str, split: str, labels_key: str = "", _labels: Labels = DATASET_LABELS) -> dict:
    data = split_data(_run, split, _labels)
    out = cohort.curves(data.label, data.prob)
    if out["roc"] is not None and _run.has_context:  # what the patch alone reaches, for comparison
        out["roc_auc_patch"] = metrics.roc_auc(data.label, data.rows["prob_patch"].to_numpy())
    return out


def curve_figures(run: store.Run, split: str, labels: Labels = DATASET_LABELS) -> dict:
    """The split's threshold-free figures (app.charts.curve_figures), built once per run version, split and
    labels and shared by every session: read-only (charts.with_point copies before adding the marker)."""
    return _curve_figures(run, run_key(run), split, labels.key, labels)


@st.cache_resource(max_entries=16, show_spinner=False)
def _curve_figures(_run: store.Run, key: str, split: str, labels_key: str = "", _labels: Labels = DATASET_LABELS
                   ) -> dict:
    return charts.curve_figures(curves(_run, split, _labels))


@dataclass(frozen=True)
class SplitBootstrap:
    """The patient-level bootstrap of one split (its resamples drawn once), or why there is none."""

    boot: uncertainty.PatientBootstrap | None
    unavailable: str  # why there are no intervals ('' when ``boot`` is set), e.g. a split of one patient
    short: str = ""   # the same in a few words, for a metric tile


def bootstrap(run: store.Run, split: str, labels: Labels = DATASET_LABELS) -> SplitBootstrap:
    """The split's :class:`pipeline.uncertainty.PatientBootstrap`, built once per run version and split;
    ``boot.metrics_at(threshold)`` then gives the intervals at any threshold in a few milliseconds."""
    return _bootstrap(run, run_key(run), split, labels.key, labels)


@st.cache_resource(max_entries=16, show_spinner=False)
def _bootstrap(_run: store.Run, key: str, split: str, labels_key: str = "", _labels: Labels = DATASET_LABELS
               ) -> SplitBootstrap:
    data = split_data(_run, split, _labels)
    n = data.described["n_patients"]
    if n < 2:
        return SplitBootstrap(None, f"a patient-level bootstrap needs at least 2 patients, and the {split} split "
                                    f"has {n}", f"only {n} patient")
    try:
        return SplitBootstrap(uncertainty.PatientBootstrap(data.rows["patient_id"].to_numpy(), data.label,
                                                           data.prob), "")
    except ValueError as exc:
        return SplitBootstrap(None, str(exc), "see below")


def curve_intervals(run: store.Run, split: str, labels: Labels = DATASET_LABELS) -> dict:
    """{'roc_auc', 'pr_auc'[, 'roc_auc_patch'], 'source'}: the split's threshold-free intervals, from
    evaluation.json when it holds them for the same patients and resamples, else computed once
    (cached); {} when the split has no bootstrap."""
    return _curve_intervals(run, run_key(run), split, labels.key, labels)


@st.cache_resource(max_entries=16, show_spinner="Computing ROC-AUC and PR-AUC intervals...")
def _curve_intervals(_run: store.Run, key: str, split: str, labels_key: str = "", _labels: Labels = DATASET_LABELS
                     ) -> dict:
    boot = bootstrap(_run, split, _labels).boot
    if boot is None:
        return {}
    saved = ((_run.evaluation.get("splits") or {}).get(split) or {}).get("intervals") or {}
    if _labels.reviewed is not None:  # evaluation.json measured the dataset labels
        saved = {}
    info = boot.info()
    same = all(saved.get(k) == info[k] for k in ("n_boot", "seed", "level", "n_patients", "n_patches"))
    if same and "roc_auc" in saved and "pr_auc" in saved:
        out = {k: saved[k] for k in ("roc_auc", "pr_auc", "roc_auc_patch") if k in saved}
        out["source"] = store.EVALUATION
    else:  # an evaluation.json written before intervals existed, or with other resamples
        out = {**boot.curve_metrics(), "source": "computed"}
        if _run.has_context:
            patch = split_data(_run, split, _labels).rows["prob_patch"].to_numpy()
            out["roc_auc_patch"] = boot.with_probs(patch).curve_metrics(pr_auc=False)["roc_auc"]
    return out


def patients(run: store.Run) -> pd.DataFrame:
    """One row per patient: patient_id, split, patches; ordered by split (test first) then id."""
    return _patients(run, run_key(run))


@st.cache_resource(max_entries=4)
def _patients(_run: store.Run, key: str) -> pd.DataFrame:
    t = _run.table
    out = t.groupby("patient_id", sort=True).agg(split=("split", "first"), patches=("x", "size")).reset_index()
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return out.sort_values(["split", "patient_id"], key=lambda c: c.map(order) if c.name == "split" else c,
                           kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- per patient
@dataclass(frozen=True)
class SlideView:
    """A patient's slide as the app shows it, rebuilt once from the run's patches: pixels, geometry,
    the JPEG for the browser, the true region (not the synthetic generator's rendered slide)."""

    rows: pd.DataFrame  # the patient's table rows (index = patch row)
    rgb: np.ndarray  # (H, W, 3) uint8, read-only
    grid_shape: tuple[int, int]
    jpeg: bytes  # the slide for the browser, encoded once
    region_mask: np.ndarray | None  # synthetic runs only
    region_contour: tuple[np.ndarray, np.ndarray] | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    @property
    def image_uri(self) -> str:
        """Where the browser gets the slide's JPEG: a URL served by Streamlit's media files (one copy for every
        session, fetched and decoded once by the browser), so a figure rerun sends a few bytes instead of the
        image (megabytes for a 2,400-patch slide); a data URI outside a running app (tests, scripts)."""
        return slide_url(self.jpeg)


def slide(run: store.Run, patient_id: str) -> SlideView:
    return _slide(run, run_key(run), patient_id)


@st.cache_resource(max_entries=12, show_spinner="Rebuilding the slide...")
def _slide(_run: store.Run, key: str, patient_id: str) -> SlideView:
    t = _run.table
    rows = t[t["patient_id"] == patient_id]
    args = (rows["x"].to_numpy(), rows["y"].to_numpy(), rows["width"].to_numpy(), rows["height"].to_numpy())
    rgb = slides.rebuild_slide(_run.patches[rows.index.to_numpy()], *args)
    rgb.flags.writeable = False
    mask = store.read_region_mask(_run.path, patient_id) if _run.synthetic else None
    if mask is not None:
        mask.flags.writeable = False
    return SlideView(rows=rows, rgb=rgb, grid_shape=slides.grid_shape(*args), jpeg=slides.jpeg_bytes(rgb),
                     region_mask=mask, region_contour=None if mask is None else slides.region_contour(mask))


SLIDE_MEDIA = "idc-slide-image"  # the one slide image a session holds in Streamlit's media files


def slide_url(jpeg: bytes) -> str:
    """The JPEG's URL in Streamlit's media files, registered for this session (replacing the slide it held
    before, which is dropped once no session holds it); its data URI when no app is running."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if not runtime.exists() or get_script_run_ctx() is None:
        return slides.jpeg_data_uri_of(jpeg)
    manager = runtime.get_instance().media_file_mgr
    try:
        url = manager.add(jpeg, "image/jpeg", SLIDE_MEDIA)
        manager.remove_orphaned_files()  # the slide this session showed before, if no one else shows it
    except Exception:  # noqa: BLE001 -- Streamlit's internals moved: the data URI always works
        return slides.jpeg_data_uri_of(jpeg)
    return url


# --------------------------------------------------------------------------- whole-slide images
def full_resolution_patch(run: store.Run, patient_id: str, x: int, y: int) -> np.ndarray | str:
    """The patch's area read live from its whole-slide image at level 0 (ingest-slides runs), or why it cannot be.

    The slide's path comes from run.json, written by the pipeline: the browser never names a file.
    """
    return _full_resolution_patch(run, run_key(run), str(patient_id), int(x), int(y))


@st.cache_data(max_entries=64, show_spinner="Reading the slide at full resolution...")
def _full_resolution_patch(_run: store.Run, key: str, patient_id: str, x: int, y: int) -> np.ndarray | str:
    from pipeline import wsi  # OpenSlide loads only for runs made from slides

    try:
        return wsi.read_region_at_full_resolution(_run.meta, patient_id, x, y)
    except (wsi.SlideError, OSError) as exc:
        return f"{exc}. Put the slide back at the path recorded at ingest, or re-run ingest-slides."


# --------------------------------------------------------------------------- model explanations
@st.cache_resource(max_entries=2, show_spinner="Loading the model for Grad-CAM (first time only)...")
def _explainer(_run: store.Run, key: str):
    from model.explain import Explainer
    from model.architectures import LAST_CONV

    if _run.cam_unavailable:  # imported scores, or a user's model without a layer to explain
        raise store.ArtifactError(_run.cam_unavailable)
    model = store.read_model(_run.path, compile=False, why="Grad-CAM needs the trained model")
    return Explainer(model, _run.meta.get("cam_layer") or LAST_CONV)


def cams(run: store.Run, rows: tuple[int, ...], method: str, target: int = 1) -> np.ndarray:
    """(n, 50, 50) maps in [0, 1] of the evidence for IDC (``target`` 1) or against it (0) in the
    patches at ``rows``."""
    return _cams(run, run_key(run), tuple(int(r) for r in rows), method, int(target))


@st.cache_data(max_entries=256, show_spinner="Computing class activation maps...")
def _cams(_run: store.Run, key: str, rows: tuple[int, ...], method: str, target: int = 1) -> np.ndarray:
    # target 1 (the default) shows what raises the IDC score: the question for a false positive (why
    # IDC?); target 0 what lowers it: the model's own call on a false negative or true negative, whose
    # evidence for IDC is empty by construction (app/cam_overlay.py picks the default per outcome).
    return _explainer(_run, key).cam(np.asarray(_run.patches[list(rows)]), method=method, target=target)


# --------------------------------------------------------------------------- reviews
def review_file(run: store.Run) -> str:
    """The cohort's reviews file as shown to users: relative to the runs folder, never a server path."""
    return f"{reviews.COHORTS_DIR}/{reviews.cohort_dir(run.path).name}/{store.REVIEWS}"


def review_store(run_path: str) -> ReviewStore:
    """The review store of the run's cohort (shared by every run of it; pipeline.reviews.open_for_run, which
    migrates the run's old per-run file on first open); raises sqlite3.Error (LegacyReviewsError for an
    unreadable old file) or NewerSchemaError when it is unusable."""
    path = reviews.cohort_store_path(run_path)
    try:
        found = path.stat()
    except FileNotFoundError:
        # Not cached: the file was never made, or was moved aside to fix it; opening creates it.
        return reviews.open_for_run(run_path)
    # Keyed by the file's identity, so a file moved aside and replaced gets a new store (with its
    # schema) instead of a stale object pointing at a name that now holds another file.
    return _review_store(str(run_path), str(path), found.st_dev, found.st_ino)


@st.cache_resource(max_entries=16, show_spinner=False)
def _review_store(run_path: str, path: str, device: int, inode: int) -> ReviewStore:
    return reviews.open_for_run(run_path)


def _store_version(run_path: str) -> tuple | None:
    """(inode, mtime, size) of the cohort store and of its write-ahead log: every commit (this process or
    another) changes the log, a checkpoint the database; None while the store does not exist."""
    path = reviews.cohort_store_path(run_path)
    out = []
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            found = file.stat()
        except FileNotFoundError:
            if file == path:
                return None
            out.append(None)
            continue
        out.append((found.st_ino, found.st_mtime_ns, found.st_size))
    return tuple(out)


def run_reviews(run: store.Run) -> RunReviews:
    """The run's reviews, each matched to its patch's current row; read again whenever the store changed.

    Read once per version of the store's files (:func:`_store_version`) and shared by every session and
    every call of one rerun (pages call this several times): a review saved by anyone is a new version.
    Never raises for a broken reviews file: the result then holds no reviews and a ``problem``
    naming the file and the fix, so each page still draws everything that does not need reviews.
    """
    file = review_file(run)
    try:
        version = _store_version(str(run.path))
        if version is not None:
            return _run_reviews(run, run_key(run), file, version)
        return review_store(str(run.path)).resolved(run.table, file)
    except (sqlite3.Error, NewerSchemaError, reviews.LegacySchemaError) as exc:
        if isinstance(exc, reviews.LegacyReviewsError):  # the run's old per-run file: name it, not the store
            file = f"{run.name}/{store.REVIEWS}"
        return RunReviews.unavailable(file, problem_text(file, exc, public_message(exc, run.path)))


@st.cache_resource(max_entries=16, show_spinner=False)
def _run_reviews(_run: store.Run, key: str, file: str, version: tuple) -> RunReviews:
    return review_store(str(_run.path)).resolved(_run.table, file)  # read-only: shared by every session


@st.cache_resource(max_entries=16, show_spinner=False)
def _slide_status(run_path: str, version: tuple) -> pd.DataFrame:
    return review_store(run_path).slide_status()


def slide_status(run: store.Run) -> pd.DataFrame:
    """The latest slide status per patient of the run's cohort store (empty when it cannot be read); read
    once per version of the store (:func:`_store_version`)."""
    try:
        version = _store_version(str(run.path))
        if version is not None:
            return _slide_status(str(run.path), version)
        return review_store(str(run.path)).slide_status()
    except (sqlite3.Error, NewerSchemaError, reviews.LegacySchemaError):  # the pages say why once
        return pd.DataFrame(columns=["patient_id", "status", "reviewer", "created_at"])


def progress(run: store.Run, reviews: RunReviews | None = None) -> pd.DataFrame:
    """Every patient's review progress (selection.slide_progress), in the patient list's order; computed
    once per version of the review store (read-only: shared by every session)."""
    if reviews is None or not reviews.problem:
        version = _store_version(str(run.path))
        if version is not None:
            return _progress(run, run_key(run), version)
    reviews = run_reviews(run) if reviews is None else reviews
    return selection.slide_progress(patients(run)["patient_id"], reviews.found, slide_status(run))


@st.cache_resource(max_entries=16, show_spinner=False)
def _progress(_run: store.Run, key: str, version: tuple) -> pd.DataFrame:
    return selection.slide_progress(patients(_run)["patient_id"], run_reviews(_run).found, slide_status(_run))


def progress_texts(run: store.Run, reviews: RunReviews | None = None) -> pd.Series:
    """selection.progress_text of every patient (index: patient id as text), once per review store version."""
    if reviews is None or not reviews.problem:
        version = _store_version(str(run.path))
        if version is not None:
            return _progress_texts(run, run_key(run), version)
    return _texts(progress(run, reviews))


def _texts(progress_table: pd.DataFrame) -> pd.Series:
    return pd.Series([selection.progress_text(r) for _, r in progress_table.iterrows()],
                     index=progress_table.index.astype(str), dtype=object)


@st.cache_resource(max_entries=16, show_spinner=False)
def _progress_texts(_run: store.Run, key: str, version: tuple) -> pd.Series:
    return _texts(_progress(_run, key, version))


def reviewed_labels(run: store.Run, rule: agreement.ConsensusRule, reviews: RunReviews | None = None) -> Labels:
    """The run's labels after the reviewers' consensus under ``rule`` (pipeline.agreement.reviewed_labels),
    computed once per (run version, newest review, rule): the metrics cached under its key follow."""
    reviews = run_reviews(run) if reviews is None else reviews
    newest = int(reviews.every["id"].max()) if len(reviews.every) else 0
    key = f"reviewed|{newest}|{len(reviews.every)}|{rule.rule}|{rule.min_reviewers}"
    return Labels(key, _reviewed_labels(run, run_key(run), key, reviews.found, rule))


@st.cache_resource(max_entries=8, show_spinner="Applying the reviewed labels...")
def _reviewed_labels(_run: store.Run, key: str, labels_key: str, _found: pd.DataFrame,
                     _rule: agreement.ConsensusRule) -> agreement.ReviewedLabels:
    table = _run.table[["patient_id", "x", "y", "label"]]
    # Only a label can be flipped: unlabelled patches (slides without annotations) stay out, so stay unlabelled.
    return agreement.reviewed_labels(selection.labelled_rows(table), _found, _rule)


# --------------------------------------------------------------------------- two runs compared
def run_pairs(run_a: store.Run, run_b: store.Run) -> pd.DataFrame:
    """The patches both runs scored (pipeline.compare_runs.pair_tables), matched once per version of
    the two runs; raises UsageError (different cohorts, labels that disagree) naming both runs."""
    return _run_pairs(run_a, run_b, run_key(run_a), run_key(run_b))


@st.cache_resource(max_entries=4, show_spinner="Matching the two runs' patches...")
def _run_pairs(_run_a: store.Run, _run_b: store.Run, key_a: str, key_b: str) -> pd.DataFrame:
    return compare_runs.pair_tables(_run_a.table, _run_b.table, names=(f"run A ({_run_a.name})",
                                                                       f"run B ({_run_b.name})"))


def paired_split(run_a: store.Run, run_b: store.Run, split: str) -> compare_runs.PairedSplit:
    """The compared patches of ``split`` and their PairedBootstrap, drawn once per (run A version, run B
    version, split): moving the threshold then costs milliseconds (ROC-AUC is computed once, too)."""
    return _paired_split(run_a, run_b, run_key(run_a), run_key(run_b), split)


@st.cache_resource(max_entries=8, show_spinner="Drawing the bootstrap over patients...")
def _paired_split(_run_a: store.Run, _run_b: store.Run, key_a: str, key_b: str, split: str) -> compare_runs.PairedSplit:
    return compare_runs.paired_split(run_pairs(_run_a, _run_b), split)
