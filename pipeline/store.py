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
      evaluation.json      metrics on val/test at the threshold presets, per patient, calibration
      region_masks/<pid>.png  synthetic cohorts only: the true IDC region at pixel level
      reviews.sqlite       pathologist reviews (owned by app/reviews.py)

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

from pipeline.names import PATCH_SIZE

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
REVIEWS = "reviews.sqlite"

SPLITS = ("train", "val", "test")
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
@contextlib.contextmanager
def atomic_path(path: Path | str):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
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
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); {fix}.") from exc


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
def write_manifest(run_dir: Path | str, manifest: pd.DataFrame) -> None:
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise ValueError(f"manifest lacks columns {sorted(missing)}")
    df = manifest[list(MANIFEST_COLUMNS)].astype(MANIFEST_COLUMNS).reset_index(drop=True)
    with atomic_path(Path(run_dir) / MANIFEST) as tmp:
        df.to_parquet(tmp, index=False)


def read_manifest(run_dir: Path | str) -> pd.DataFrame:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{path} is missing; run `python -m pipeline run --data DIR --out {run_dir}`.")
    return pd.read_parquet(path).astype(MANIFEST_COLUMNS)


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
        return open_patch_store(path)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); delete it and re-run the pipeline.") from exc


def write_ingest_report(run_dir: Path | str, problems: pd.DataFrame) -> None:
    with atomic_path(Path(run_dir) / INGEST_REPORT) as tmp:
        problems.to_csv(tmp, index=False)


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
    return read_json(Path(run_dir) / SPLIT, fix=f"re-run `python -m pipeline run --out {run_dir}` to split")


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
    return pd.read_parquet(path)


# --------------------------------------------------------------------------- region masks (synthetic)
def region_mask_path(run_dir: Path | str, patient_id: str) -> Path:
    return Path(run_dir) / REGION_MASKS / f"{patient_id}.png"


def read_region_mask(run_dir: Path | str, patient_id: str) -> np.ndarray | None:
    """The true IDC region of a synthetic slide (bool, slide pixel frame) or None if not known."""
    from PIL import Image

    path = region_mask_path(run_dir, patient_id)
    if not path.exists():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


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
    def has_context(self) -> bool:
        """Whether P(IDC) includes neighbourhood context (then ``prob_patch``, the patch alone, differs)."""
        return bool(self.meta.get("context"))

    @property
    def thresholds(self) -> dict:
        return self.evaluation.get("thresholds", {"default": 0.5})


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
    evaluation = read_json(run_dir / EVALUATION) if (run_dir / EVALUATION).exists() else {}
    return Run(path=run_dir, meta=meta, table=table, patches=patches, evaluation=evaluation)


def list_runs(runs_dir: Path | str) -> list[Path]:
    """Run folders (those holding run.json and scores) under ``runs_dir``, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [p for p in runs_dir.iterdir() if (p / RUN_META).exists() and (p / SCORES).exists()]
    return sorted(found, key=lambda p: (p / RUN_META).stat().st_mtime, reverse=True)
