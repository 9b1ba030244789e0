"""The run folder: the one module that reads and writes every pipeline artifact.

A run folder is what the pipeline writes and the app reads; nothing else parses raw patch folders.

    runs/<name>/
      run.json             run metadata: data root, synthetic flag, architecture, seed, calibration
                           (temperature, bias), context (Gaussian width and weights), threshold
                           presets, per-stage fingerprints
      manifest.parquet     one row per patch, row i <-> patches.npy[i]: patient_id, x, y, width,
                           height, label, source (path relative to the data root)
      patches.npy          uint8 (N, 50, 50, 3), memory-mapped; edge patches padded with white,
                           their true size is width/height in the manifest
      ingest_report.csv    every skipped file with the reason (corrupt PNG, bad name, ...)
      split.json           patient -> train/val/test, with seed and fractions
      model.keras          the trained Keras model (input float 0..255, output P(IDC) before calibration)
      history.json         per-epoch training metrics
      scores.parquet       row-aligned with the manifest: prob (final, calibrated, with neighbourhood
                           context), prob_patch (the patch alone, calibrated), prob_uncalibrated
      evaluation.json      metrics on val/test at the threshold presets with 95% patient-bootstrap
                           intervals, per patient (with each patient's share of the errors), calibration
      score_import_report.csv  import-scores only: every scores-file row not used and every patch
                           without a score (file, row, reason)
      region_masks/<pid>.png  synthetic cohorts only: the true IDC region at pixel level
      reviews.sqlite       runs from before the cohort store only: the run's old reviews, migrated into
                           ../_cohorts/<cohort>/reviews.sqlite on first open (pipeline/reviews.py owns both)

Every write goes to a temporary name in the same folder and is renamed into place, so a crash never
leaves a half-written artifact under its real name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import exports
from pipeline.names import DATASET_MPP, PATCH_SIZE

RUN_META = "run.json"
MANIFEST = "manifest.parquet"
PATCHES = "patches.npy"
INGEST_REPORT = "ingest_report.csv"
SPLIT = "split.json"
MODEL = "model.keras"
HISTORY = "history.json"
SCORES = "scores.parquet"
EVALUATION = "evaluation.json"
REGION_MASKS = "region_masks"
TISSUE_MASKS = "tissue_masks"  # ingest-slides: <pid>.png, each slide's tissue mask on its thumbnail
REVIEWS = "reviews.sqlite"

SPLITS = ("train", "val", "test")  # the patient-level splits (split.json); every use goes through these
TRAIN, VAL, TEST = SPLITS
MANIFEST_COLUMNS = {
    "patient_id": "string",
    "x": "int32",
    "y": "int32",
    "width": "int16",
    "height": "int16",
    "label": "int8",
    "source": "string",
}
PAD_VALUE = 255  # edge patches are padded with white, the colour of glass background


class ArtifactError(RuntimeError):
    """A run artifact is missing, unreadable or out of date; the message names the file and the fix."""


# --------------------------------------------------------------------------- atomic writing
def file_mode() -> int:
    """The mode every artifact gets: what ``open()`` would give a new file, 0o666 less the user's umask.

    One policy for every file of a run folder (mkstemp alone gives 0600, files that a library
    creates itself get the umask's mode): a run shared with a group is shared whole, or not at all.
    """
    try:  # Linux reports the umask without changing it (os.umask would, briefly, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` ends the temporary name, for writers that insist on one (Keras: ``.keras``,
    ``.weights.h5``). The file gets ``file_mode()`` before the rename, whoever wrote it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path | str, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))


def read_json(path: Path | str, fix: str = "re-run the pipeline") -> dict:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} is missing; {fix}.")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, and bytes that are not UTF-8
        # "Move it aside": the pipeline skips a stage whose output exists, so a damaged file would
        # survive a plain re-run; moved aside, it is rewritten, and the damaged copy stays to look at.
        raise ArtifactError(f"{path} is unreadable ({exc}): move it aside and {fix}.") from exc
    if not isinstance(obj, dict):  # every artifact is a JSON object; anything else is a damaged file
        raise ArtifactError(f"{path} holds a JSON {type(obj).__name__}, not an object: move it aside and {fix}.")
    return obj


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-able parts, used to decide whether a stage's inputs changed."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=_json_default).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- the trained model
def read_model(run_dir: Path | str, compile: bool = True, why: str = ""):
    """The run's ``model.keras`` (Keras imported only here, when a model is needed); ``compile=False``
    for inference and Grad-CAM. ArtifactError naming the file and the fix when it is missing or
    unreadable; ``why`` says what needs it (e.g. "Grad-CAM needs the trained model")."""
    path = Path(run_dir) / MODEL
    fix = f"re-run `python -m pipeline run --out {Path(run_dir)}` to train it"
    lead = f"{why}: " if why else ""
    if not path.exists():
        raise ArtifactError(f"{lead}{path} is missing; {fix}.")
    import keras

    try:
        return keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, EOFError) as exc:  # truncated zip, not a Keras archive, a bad config
        raise ArtifactError(f"{lead}{path} is unreadable ({type(exc).__name__}: {exc}); move it aside and {fix}.") from None


# --------------------------------------------------------------------------- run metadata
def read_meta(run_dir: Path | str) -> dict:
    path = Path(run_dir) / RUN_META
    if not path.exists():
        return {}
    return read_json(path)


def update_meta(run_dir: Path | str, **changes) -> dict:
    """Merge ``changes`` into run.json (stages are merged key by key) and write it atomically."""
    meta = read_meta(run_dir)
    stages = {**meta.get("stages", {}), **changes.pop("stages", {})}
    meta.update(changes)
    meta["stages"] = stages
    write_json(Path(run_dir) / RUN_META, meta)
    return meta


def stage_done(run_dir: Path | str, stage: str, fp: str, *outputs: str) -> bool:
    """True when ``stage`` finished with inputs fingerprinted ``fp`` and all its outputs exist."""
    rec = read_meta(run_dir).get("stages", {}).get(stage)
    return bool(rec and rec.get("fingerprint") == fp and all((Path(run_dir) / o).exists() for o in outputs))


def mark_stage(run_dir: Path | str, stage: str, fp: str, **info) -> None:
    update_meta(run_dir, stages={stage: {"fingerprint": fp, **info}})


# --------------------------------------------------------------------------- manifest + patch store
UNLABELLED = -1  # manifest label of a patch without a ground truth (a whole-slide image without annotations)


def labelled(labels) -> np.ndarray:
    """Which patches have a ground-truth label (0 or 1), as a boolean mask."""
    return np.asarray(labels) != UNLABELLED


def write_manifest(run_dir: Path | str, manifest: pd.DataFrame) -> None:
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise ValueError(f"manifest lacks columns {sorted(missing)}")
    df = manifest[list(MANIFEST_COLUMNS)].astype(MANIFEST_COLUMNS).reset_index(drop=True)
    with atomic_path(Path(run_dir) / MANIFEST) as tmp:
        df.to_parquet(tmp, index=False)


def _read_parquet(path: Path, columns, fix: str) -> pd.DataFrame:
    """A parquet artifact with ``columns``; any failure to read it becomes an ArtifactError naming
    the file and ``fix`` (never a pyarrow traceback)."""
    from pyarrow import ArrowException

    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError, TypeError, NotImplementedError, ArrowException) as exc:
        reason = str(exc).replace(f" '{path}'", "").replace(str(path), path.name)  # the path is named once
        raise ArtifactError(f"{path} is unreadable ({reason}): {fix}.") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ArtifactError(f"{path} lacks the columns {', '.join(missing)} (not written by this pipeline): {fix}.")
    return df


def read_manifest(run_dir: Path | str) -> pd.DataFrame:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{path} is missing; run `python -m pipeline run --data DIR --out {run_dir}`.")
    # Moved aside, the manifest is rebuilt by ingest (a present one would be trusted and skipped).
    fix = f"move it aside and re-run `python -m pipeline run --data DIR --out {run_dir}` to re-ingest"
    df = _read_parquet(path, MANIFEST_COLUMNS, fix)
    try:
        return df.astype(MANIFEST_COLUMNS)
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{path} has values of the wrong type ({exc}): {fix}.") from exc


def create_patch_store(path: Path | str, n: int) -> np.memmap:
    """A writable (n, 50, 50, 3) uint8 .npy memmap at ``path`` (the caller renames it when complete)."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, PATCH_SIZE, PATCH_SIZE, 3))
    return arr


def open_patch_store(path: Path | str, mode: str = "r") -> np.memmap:
    return np.load(path, mmap_mode=mode)


def read_patches(run_dir: Path | str) -> np.ndarray:
    """The packed patch store, memory-mapped read-only: row i is manifest row i."""
    path = Path(run_dir) / PATCHES
    if not path.exists():
        raise ArtifactError(f"{path} is missing; re-run `python -m pipeline run` to ingest the data.")
    try:
        patches = open_patch_store(path)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); delete it and re-run the pipeline.") from exc
    if patches.dtype != np.uint8 or patches.shape[1:] != (PATCH_SIZE, PATCH_SIZE, 3):
        raise ArtifactError(f"{path} holds {patches.dtype} {patches.shape}, not uint8 (N, {PATCH_SIZE}, {PATCH_SIZE}, "
                            "3) patches; delete it and re-run the pipeline.")
    return patches


def write_ingest_report(run_dir: Path | str, problems: pd.DataFrame) -> None:
    """ingest_report.csv: file, reason. File names are the user's data, so the report is written
    formula-safe (pipeline.exports): a name starting with ``=`` or ``@`` opens as text in a spreadsheet."""
    with atomic_path(Path(run_dir) / INGEST_REPORT) as tmp:
        tmp.write_bytes(exports.csv_bytes(problems))


def read_ingest_report(run_dir: Path | str) -> pd.DataFrame:
    path = Path(run_dir) / INGEST_REPORT
    if not path.exists():
        return pd.DataFrame(columns=["file", "reason"])
    return pd.read_csv(path, dtype=str).fillna("")


# --------------------------------------------------------------------------- split
def write_split(run_dir: Path | str, assignment: dict[str, str], seed: int, fractions) -> None:
    bad = {s for s in assignment.values()} - set(SPLITS)
    if bad:
        raise ValueError(f"unknown split names {bad}")
    write_json(Path(run_dir) / SPLIT, {"seed": seed, "fractions": list(fractions), "patients": assignment})


def read_split(run_dir: Path | str) -> dict:
    split = read_json(Path(run_dir) / SPLIT,
                      fix=f"re-run `python -m pipeline run --data DIR --out {run_dir}` to split")
    if not isinstance(split.get("patients"), dict):
        raise ArtifactError(f"{Path(run_dir) / SPLIT} has no patient -> split table: move it aside and re-run "
                            f"`python -m pipeline run --data DIR --out {run_dir}` to split.")
    return split


# --------------------------------------------------------------------------- scores
def write_scores(run_dir: Path | str, prob: np.ndarray, prob_uncalibrated: np.ndarray,
                 prob_patch: np.ndarray | None = None) -> None:
    """prob: the final calibrated score; prob_uncalibrated: the model's output; prob_patch: the patch
    alone, calibrated, without neighbourhood context (defaults to prob when there is no context)."""
    df = pd.DataFrame({"prob": np.asarray(prob, np.float32),
                       "prob_patch": np.asarray(prob if prob_patch is None else prob_patch, np.float32),
                       "prob_uncalibrated": np.asarray(prob_uncalibrated, np.float32)})
    with atomic_path(Path(run_dir) / SCORES) as tmp:
        df.to_parquet(tmp, index=False)


def read_scores(run_dir: Path | str) -> pd.DataFrame:
    path = Path(run_dir) / SCORES
    if not path.exists():
        raise ArtifactError(f"{path} is missing; the run has not been scored: re-run the pipeline.")
    # Moved aside, the scores are rewritten from the trained model (no retraining).
    return _read_parquet(path, ("prob", "prob_uncalibrated"),
                         f"move it aside and re-run `python -m pipeline run --data DIR --out {run_dir}` to re-score")


# --------------------------------------------------------------------------- evaluation
# Keys of evaluation.json renamed since runs were first written (old name -> new name): older files
# are read with the new names, so every reader sees one vocabulary.
LEGACY_EVALUATION_KEYS = {"roc_auc_patch_only": "roc_auc_patch", "pr_auc_patch_only": "pr_auc_patch"}


def read_evaluation(run_dir: Path | str) -> dict:
    """evaluation.json ({} when there is none yet), with keys of older versions under their new names."""
    path = Path(run_dir) / EVALUATION
    if not path.exists():
        return {}
    report = read_json(path)
    splits = report.get("splits")
    splits = [s for s in splits.values() if isinstance(s, dict)] if isinstance(splits, dict) else []
    for section in [*splits, *(s["undefined"] for s in splits if isinstance(s.get("undefined"), dict))]:
        for old, new in LEGACY_EVALUATION_KEYS.items():
            if old in section and new not in section:
                section[new] = section.pop(old)
    return report


# --------------------------------------------------------------------------- region masks (synthetic)
def region_mask_path(run_dir: Path | str, patient_id: str) -> Path:
    return Path(run_dir) / REGION_MASKS / f"{patient_id}.png"


def tissue_mask_path(run_dir: Path | str, patient_id: str) -> Path:
    """ingest-slides: a slide's tissue mask (white = tissue), THUMB_PER_PATCH pixels per patch side."""
    return Path(run_dir) / TISSUE_MASKS / f"{patient_id}.png"


def read_region_mask(run_dir: Path | str, patient_id: str) -> np.ndarray | None:
    """The true IDC region of a synthetic slide (bool, slide pixel frame) or None if not known."""
    from PIL import Image

    path = region_mask_path(run_dir, patient_id)
    if not path.exists():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def patch_region_masks(run_dir: Path | str, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The true IDC region under each patch of a synthetic run, for the pointing game (model.explain).

    rows: the run table's rows (needs patient_id, x, y; x/y are 1-based slide pixels, so a patch
    covers mask[y-1 : y-1+PATCH_SIZE, x-1 : x-1+PATCH_SIZE]). Returns (masks (n, PATCH_SIZE,
    PATCH_SIZE) bool, known (n,) bool); ``known`` is False for patients without a region mask
    (every real patient).
    """
    n = len(rows)
    masks = np.zeros((n, PATCH_SIZE, PATCH_SIZE), bool)
    known = np.zeros(n, bool)
    cache: dict[str, np.ndarray | None] = {}
    for i, (pid, x, y) in enumerate(zip(rows["patient_id"].astype(str), rows["x"], rows["y"])):
        if pid not in cache:
            cache[pid] = read_region_mask(run_dir, pid)
        full = cache[pid]
        if full is None:
            continue
        y0, x0 = int(y) - 1, int(x) - 1
        crop = full[y0:y0 + PATCH_SIZE, x0:x0 + PATCH_SIZE]
        masks[i, :crop.shape[0], :crop.shape[1]] = crop
        known[i] = True
    return masks, known


# --------------------------------------------------------------------------- the whole run, for readers
@dataclass
class Run:
    """Everything the app and the evaluation stages read, loaded once."""

    path: Path
    meta: dict
    table: pd.DataFrame  # manifest + split + prob; row i <-> patches[i]
    patches: np.ndarray
    evaluation: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic"))

    @property
    def mpp(self) -> float:
        """Microns per pixel of the patches (run.json "mpp"; runs written before it was recorded: the dataset's)."""
        value = self.meta.get("mpp")
        try:
            value = float(value)
        except (TypeError, ValueError):
            return DATASET_MPP
        return value if np.isfinite(value) and value > 0 else DATASET_MPP

    @property
    def has_context(self) -> bool:
        """Whether P(IDC) includes neighbourhood context (then ``prob_patch``, the patch alone, differs)."""
        return bool(self.meta.get("context"))

    @property
    def thresholds(self) -> dict:
        return self.evaluation.get("thresholds", {"default": 0.5})

    @property
    def provenance(self) -> str:
        """One sentence: where the scores came from (trained here, imported, a user's model)."""
        return provenance_text(self.meta)

    @property
    def cam_unavailable(self) -> str | None:
        """Why Grad-CAM cannot explain these scores (imported, or a model without a conv layer); None if it can."""
        return cam_unavailable(self.meta)


def load_run(run_dir: Path | str) -> Run:
    """Load a finished run; raise ArtifactError naming the missing or stale file and the fix."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir} is not a run folder; create one with `python -m pipeline run`.")
    meta = read_meta(run_dir)
    if not meta:
        raise ArtifactError(f"{run_dir / RUN_META} is missing; this folder was not written by the pipeline.")
    manifest = read_manifest(run_dir)
    patches = read_patches(run_dir)
    split = read_split(run_dir)["patients"]
    scores = read_scores(run_dir)
    n = len(manifest)
    if len(patches) != n:
        raise ArtifactError(
            f"{run_dir / PATCHES} has {len(patches)} patches but {run_dir / MANIFEST} has {n} rows: "
            "stale store; delete both and re-run the pipeline."
        )
    if len(scores) != n:
        raise ArtifactError(
            f"{run_dir / SCORES} has {len(scores)} rows but the manifest has {n}: stale scores; "
            f"re-run `python -m pipeline run --out {run_dir}` to re-score."
        )
    scored_for = meta.get("stages", {}).get("score", {}).get("manifest")
    if scored_for and scored_for != meta.get("stages", {}).get("ingest", {}).get("fingerprint"):
        raise ArtifactError(f"{run_dir / SCORES} was written for another manifest; re-run the pipeline.")
    table = manifest.drop(columns=["source"]).copy()
    table["patient_id"] = table["patient_id"].astype(str)
    table["split"] = table["patient_id"].map(split).fillna("unassigned").astype(str)
    table["prob"] = scores["prob"].to_numpy(np.float32)
    table["prob_uncalibrated"] = scores["prob_uncalibrated"].to_numpy(np.float32)
    # Runs scored before the context stage existed have no prob_patch: their prob is the patch alone.
    table["prob_patch"] = scores.get("prob_patch", scores["prob"]).to_numpy(np.float32)
    evaluation = read_evaluation(run_dir)
    return Run(path=run_dir, meta=meta, table=table, patches=patches, evaluation=evaluation)


def list_runs(runs_dir: Path | str) -> list[Path]:
    """Run folders (those holding run.json and scores) under ``runs_dir``, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = {}
    for p in runs_dir.iterdir():
        try:  # a folder removed or unreadable while listing is left out, not fatal for the others
            if (p / SCORES).exists():
                found[p] = (p / RUN_META).stat().st_mtime
        except OSError:
            continue
    return sorted(found, key=found.get, reverse=True)


# --------------------------------------------------------------------------- imported scores, provenance
SCORE_IMPORT_REPORT = "score_import_report.csv"  # import-scores: every row not used, and every patch without a score
SCORE_IMPORT_COLUMNS = ("file", "row", "reason")
SOURCE_KINDS = ("trained", "imported", "user_model", "scored_with_run")  # run.json "source"'s "kind"


def write_score_import_report(run_dir: Path | str, problems: pd.DataFrame) -> None:
    """score_import_report.csv: file, row (1-based data row of the scores file; empty for a patch), reason."""
    df = pd.DataFrame(problems, columns=list(SCORE_IMPORT_COLUMNS))
    with atomic_path(Path(run_dir) / SCORE_IMPORT_REPORT) as tmp:  # formula-safe, as the ingest report
        tmp.write_bytes(exports.csv_bytes(df))


def read_score_import_report(run_dir: Path | str) -> pd.DataFrame:
    """The import report (empty, with its columns, when the run has none)."""
    path = Path(run_dir) / SCORE_IMPORT_REPORT
    if not path.exists():
        return pd.DataFrame(columns=list(SCORE_IMPORT_COLUMNS))
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}): re-run `python -m pipeline import-scores` "
                            "into this run folder to rewrite it.") from exc


def provenance(meta: dict) -> dict:
    """run.json's ``source`` (where the scores came from); inferred for runs written before it was recorded."""
    source = meta.get("source")
    if isinstance(source, dict) and source.get("kind") in SOURCE_KINDS:
        return source
    if meta.get("source_run"):
        return {"kind": "scored_with_run", "run": meta["source_run"]}
    return {"kind": "trained"}


def cam_unavailable(meta: dict) -> str | None:
    """Why Grad-CAM cannot run on this run's scores (None when it can, as far as run.json tells)."""
    source = provenance(meta)
    if source["kind"] == "imported":
        return f"scores were imported from {Path(source.get('file', '?')).name}; there is no model to explain"
    if source["kind"] == "scored_with_run" and isinstance(source.get("run_source"), dict):
        source = source["run_source"]  # a user's model carried over by `score --run`
    if source["kind"] == "user_model" and not meta.get("cam_layer"):
        return source.get("cam_unavailable") or f"{Path(source.get('file', '?')).name} has no layer for Grad-CAM"
    return None


def provenance_text(meta: dict) -> str:
    """One sentence: where this run's scores came from (shown on every page of the app).

    Files are named by their name alone (never a server path).
    """
    source = provenance(meta)
    kind, name = source["kind"], source.get("name")
    file = Path(source.get("file") or "?").name
    called = f" ({name!r})" if name else ""
    if kind == "imported":
        text = f"Scores: imported from {file}{called}, not trained here"
    elif kind == "user_model":
        text = (f"Scores: a user's Keras model, {file}{called} (input {source.get('input_range', '0-255')}, "
                f"output {source.get('output', 'probability')}), not trained here; calibrated on validation")
    elif kind == "scored_with_run":
        text = f"Scores: the model of run {Path(source.get('run') or '?').name}, applied to these patients unchanged"
    else:
        arch = meta.get("arch") or (meta.get("train") or {}).get("arch")
        text = "Scores: a model trained here" + (f" ({arch})" if arch else "") + " by `pipeline run`"
    reason = cam_unavailable(meta)
    if reason:
        return f"{text}; Grad-CAM unavailable ({reason})."
    if kind == "user_model":
        return f"{text}; Grad-CAM on layer {meta['cam_layer']}."
    return f"{text}."


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks: how run.json names an input file's version."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
