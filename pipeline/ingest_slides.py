"""The `ingest-slides` command: a pathologist's own whole-slide images -> the same run folder as ingest.

One slide is one patient. Each slide is tiled on the dataset's grid at the dataset's scale
(pipeline/wsi.py: 50 px patches at DATASET_MPP = 4 um/px, x, y = 1 + multiple of 50), the patches
kept where the thumbnail's tissue mask covers at least ``--min-tissue`` of the patch
(pipeline/tissue.py), and each kept patch labelled from the slide's QuPath GeoJSON annotations when
there are any (1 when at least IDC_OVERLAP = 0.5 of the patch lies in the IDC regions, else 0) or
left unlabelled (store.UNLABELLED = -1). The run folder then holds what ``pipeline/ingest.py`` writes
(manifest.parquet, patches.npy, ingest_report.csv, run.json with ``mpp`` and the ingest stage), plus
run.json ``slides`` (per patient: the slide file, its scale, the level read, sizes) and
``tissue_masks/<pid>.png``: everything after ingest works on it unchanged.

Patient ids (:func:`patient_id_from_name`): the slide's file name without its extension
(``.ome.tiff`` counts as one), NFKC-normalised, every character outside ASCII letters, digits,
``-`` and ``_`` replaced by ``_``, at most 64 characters; two slides with the same id are an error
for the second (rename one), never merged.

Each slide is processed by one function (:func:`process_slide`) that writes its result to
``.slides/<pid>.npz`` + ``.json`` atomically; a slide whose result is there with the same settings
fingerprint (the file's size and mtime, its annotations' sha256, --mpp, --min-tissue, the format)
is skipped on a re-run. A bad slide (unreadable, truncated, no scale, no tissue, bad annotations) is
listed in ingest_report.csv with the fix, named on stderr, and never stops the batch. With
``--ray-address`` the same function runs as Ray tasks (the slides and the run folder must then be
on storage every node sees).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import runfolder, store, tissue, wsi
from pipeline.errors import UsageError, positive_number
from pipeline.names import DATASET_MPP, PATCH_SIZE, SLIDE_ID_MAX

FORMAT = 1  # of the per-slide partial results; a change re-tiles every slide

THUMB_PER_PATCH = 10  # tissue thumbnail pixels per patch side: 20 um/px at the dataset's scale
MIN_SPECK_UM2 = 0.5 * (PATCH_SIZE * DATASET_MPP) ** 2  # tissue pieces below half a patch's area are dust
MIN_HOLE_UM2 = 0.5 * (PATCH_SIZE * DATASET_MPP) ** 2  # holes below half a patch's area are filled
PARTS = ".slides"  # per-slide results, in the run folder
# What a folder given to --slides is searched for: OpenSlide's single-file formats (a DICOM slide is a folder of
# .dcm files, one per level: pass one of its files itself).
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")
ANNOTATION_SUFFIXES = (".geojson", ".json")
IDC_CLASS = "IDC"


# --------------------------------------------------------------------------- names
def slide_stem(name: str) -> str:
    """The file name without its extension; ``.ome.tif(f)`` counts as one extension."""
    stem = Path(name).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def patient_id_from_name(name: str) -> str:
    """The patient id of slide file ``name`` (see the module docstring); UsageError when nothing is left."""
    stem = unicodedata.normalize("NFKC", slide_stem(Path(name).name))
    safe = "".join(c if (c.isascii() and (c.isalnum() or c in "-_")) else "_" for c in stem)[:SLIDE_ID_MAX]
    if not safe.strip("_-"):
        raise UsageError(f"{name}: no usable patient id in the file name (it keeps only ASCII letters, digits, - and "
                         "_); rename the file")
    return safe


def find_slides(paths) -> list[Path]:
    """--slides: files as given, folders searched (not recursively) for OpenSlide's file types, sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SLIDE_SUFFIXES)
        else:
            out.append(p)  # a missing file is reported per slide, with the others still tiled
    return out


def find_annotations(paths) -> dict[str, Path]:
    """--annotations: GeoJSON files (given, or in given folders) by stem; UsageError for a missing path."""
    found: dict[str, Path] = {}
    for p in map(Path, paths or ()):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in ANNOTATION_SUFFIXES)
        elif p.is_file():
            files = [p]
        else:
            raise UsageError(f"--annotations {p} does not exist; pass a GeoJSON file or a folder of them")
        for f in files:
            found.setdefault(Path(f.name).stem, f)
    return found


# --------------------------------------------------------------------------- one slide
@dataclass(frozen=True)
class SlideJob:
    """Everything process_slide needs (plain values, so it travels to a Ray worker)."""

    path: str
    patient_id: str
    run_dir: str
    fingerprint: str
    annotations: str | None
    mpp_override: float | None
    min_tissue: float
    idc_class: str = IDC_CLASS
    progress: bool = False


def slide_fingerprint(path: Path, patient_id: str, annotations: Path | None, min_tissue: float,
                      idc_class: str) -> str:
    """What a slide's result depends on: its file (size, mtime), its annotations' bytes and the settings.

    --mpp is not in it: it matters only to a slide without its own scale, which :func:`finished` checks."""
    try:
        st = os.stat(path)
        file = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        file = (str(path), "unreadable", str(exc))
    ann = (str(annotations), store.file_sha256(annotations)) if annotations else None
    return store.fingerprint(FORMAT, file, patient_id, ann, min_tissue, idc_class, DATASET_MPP,
                             PATCH_SIZE, THUMB_PER_PATCH)


def _part(run_dir: Path | str, pid: str, ext: str) -> Path:
    return Path(run_dir) / PARTS / f"{pid}.{ext}"


def finished(job: SlideJob) -> dict | None:
    """The saved result of ``job``'s slide when it was tiled with the same fingerprint (and, for a slide
    scaled by --mpp, the same --mpp), else None."""
    meta, data = _part(job.run_dir, job.patient_id, "json"), _part(job.run_dir, job.patient_id, "npz")
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if info.get("fingerprint") != job.fingerprint or not data.exists():
        return None
    if info.get("info", {}).get("mpp_source") != "slide" and info.get("mpp_override") != job.mpp_override:
        return None
    return info


def idc_regions(annotation_file: Path, scale: float, idc_class: str) -> list:
    """The IDC polygons of an annotation file in level-0 pixels.

    QuPath's export is in level-0 pixels. The project's own export (pipeline/export_geojson.py,
    recognised by its ``idc_review`` member) is in the run's frame times the scale it records (a
    whole-slide run's export is in level-0 pixels; one written before the scale was recorded, or of
    dataset patches, has scale 1), so it is brought to this slide's level 0 by ``scale`` / that
    scale. The project's patch tiles classified IDC are the regions (a pathologist who reclassified
    tiles in QuPath exports them with their new class).
    """
    from pipeline import geojson

    try:
        raw = json.loads(annotation_file.read_bytes().decode("utf-8-sig"))
        features = geojson.read_geojson(annotation_file)
    except (OSError, ValueError) as exc:  # GeoJSONError is a ValueError
        raise wsi.SlideError(f"annotations {annotation_file}: {exc}; fix the file, or remove it to tile the slide "
                             "unlabelled") from None
    member = raw.get(geojson.FOREIGN_MEMBER) if isinstance(raw, dict) else None
    regions = geojson.regions_from_geojson(features, classification=idc_class, object_types=None)
    if isinstance(member, dict):
        try:
            factor = scale / geojson.check_scale(member.get("scale", 1.0))
        except ValueError as exc:
            raise wsi.SlideError(f"annotations {annotation_file}: {exc}; export the run again") from None
        regions = [geojson.Region(r.exterior * factor, tuple(h * factor for h in r.holes), r.classification,
                                  r.feature_index) for r in regions]
    return regions


def tile_slide(slide, g: wsi.SlideGeometry, min_tissue: float, regions: list | None,
               progress: bool = False, desc: str = "") -> dict:
    """Tissue mask, kept patches, their pixels and labels of one open slide (no file written)."""
    k = THUMB_PER_PATCH
    thumb = wsi.read_thumbnail(slide, g, k)
    thumb_um2 = (PATCH_SIZE * DATASET_MPP / k) ** 2
    mask = tissue.tissue_mask(thumb, min_object_px=math.ceil(MIN_SPECK_UM2 / thumb_um2),
                              min_hole_px=math.ceil(MIN_HOLE_UM2 / thumb_um2))
    fraction = tissue.block_fraction(mask, g.rows, g.cols, k)
    rows, cols = np.nonzero(fraction >= min_tissue)  # row-major: reading order
    if regions is None:
        labels = np.full(len(rows), store.UNLABELLED, np.int8)
        idc = None
    else:
        # The regions at the resampled frame's own resolution: one mask pixel per patch pixel.
        idc = tissue.rasterise_regions(regions, (g.rows * PATCH_SIZE, g.cols * PATCH_SIZE), g.scale)
        labels = tissue.patch_labels(tissue.block_fraction(idc, g.rows, g.cols, PATCH_SIZE)[rows, cols])
    patches = np.empty((len(rows), PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
    longest = wsi.max_run_columns(g)
    with tqdm(total=len(rows), unit="patch", desc=desc, leave=False, disable=not progress) as bar:
        for r in np.unique(rows):
            sel = np.flatnonzero(rows == r)
            for c0, c1 in wsi.consecutive_runs(cols[sel], longest):
                at = sel[(cols[sel] >= c0) & (cols[sel] < c1)]
                patches[at] = wsi.read_patch_run(slide, g, int(r), c0, c1)
                bar.update(len(at))
    return {"mask": mask, "rows": rows, "cols": cols, "labels": labels, "patches": patches,
            "tissue_fraction": fraction[rows, cols].astype(np.float32), "idc_mask": idc}


def process_slide(job: SlideJob) -> dict:
    """Tile one slide and save its result (atomically); never raises for a bad slide.

    Returns {"patient_id", "file", "ok", "reason", "info"}: ``info`` is run.json's record of the
    slide when ``ok``, ``reason`` the report's line (what is wrong and the fix) when not.
    """
    path = Path(job.path)
    out = {"patient_id": job.patient_id, "file": str(path), "ok": False, "reason": "", "info": {}}
    t0 = time.perf_counter()
    try:
        slide = wsi.open_slide(path)
        try:
            g = wsi.geometry_of(slide, path, job.mpp_override)
            regions = idc_regions(Path(job.annotations), g.scale, job.idc_class) if job.annotations else None
            tiled = tile_slide(slide, g, job.min_tissue, regions, job.progress, desc=job.patient_id)
        finally:
            slide.close()
    except wsi.SlideError as exc:
        out["reason"] = str(exc)
        return out
    except (OSError, wsi.openslide_error()) as exc:  # OpenSlide fails mid-read on a damaged tile
        out["reason"] = (f"{path}: unreadable while reading its pixels ({type(exc).__name__}: {exc}); a truncated or "
                         "damaged file: re-copy it from the scanner")
        return out
    except Exception as exc:  # noqa: BLE001 - one slide never stops the batch, even on a bug here
        out["reason"] = (f"{path}: tiling failed unexpectedly ({type(exc).__name__}: {exc}); this is a bug in "
                         "ingest-slides or a slide it does not handle: please report it with the slide's format")
        return out
    if len(tiled["rows"]) == 0:
        out["reason"] = (f"{path}: no tissue found (no patch is {job.min_tissue:.0%} tissue on the thumbnail); check "
                         "that the slide is stained tissue on glass, or lower --min-tissue")
        return out
    _save(job, g, tiled, path, time.perf_counter() - t0, out)
    return out


def _save(job: SlideJob, g: wsi.SlideGeometry, tiled: dict, path: Path, seconds: float, out: dict) -> None:
    """The slide's partial result (.slides/<pid>.npz, then .json: the .json marks it finished) and
    its tissue mask PNG, each written under a temporary name and renamed into place."""
    from PIL import Image

    run_dir, pid = Path(job.run_dir), job.patient_id
    with store.atomic_path(store.tissue_mask_path(run_dir, pid)) as tmp:
        Image.fromarray(tiled["mask"].astype(np.uint8) * 255).save(tmp, format="PNG")
    if tiled["idc_mask"] is not None:  # the annotated IDC region at pixel level, as synthetic cohorts have it
        with store.atomic_path(store.region_mask_path(run_dir, pid)) as tmp:
            Image.fromarray(tiled["idc_mask"].astype(np.uint8) * 255).save(tmp, format="PNG")
    with store.atomic_path(_part(run_dir, pid, "npz"), suffix=".npz") as tmp:
        np.savez(tmp, patches=tiled["patches"], rows=tiled["rows"].astype(np.int32),
                 cols=tiled["cols"].astype(np.int32), labels=tiled["labels"], tissue_fraction=tiled["tissue_fraction"])
    info = {"file": path.name, "path": str(path.resolve()), **g.to_dict(), "mpp": DATASET_MPP,
            "size_level0": [g.width0, g.height0], "size_resampled": [g.cols * PATCH_SIZE, g.rows * PATCH_SIZE],
            "n_patches": int(len(tiled["rows"])), "n_positive": int((tiled["labels"] == 1).sum()),
            "labelled": job.annotations is not None, "annotations": job.annotations and Path(job.annotations).name,
            "tissue_mask": f"{store.TISSUE_MASKS}/{pid}.png", "tissue_mask_mpp": PATCH_SIZE * DATASET_MPP /
            THUMB_PER_PATCH, "min_tissue": job.min_tissue, "seconds": round(seconds, 3)}
    store.write_json(_part(run_dir, pid, "json"), {"fingerprint": job.fingerprint, "mpp_override": job.mpp_override,
                                                   "info": info})
    out.update(ok=True, info=info)


# --------------------------------------------------------------------------- the batch
def _run_in_process(jobs: list[SlideJob], bar) -> list[dict]:
    results = []
    for job in jobs:
        results.append(process_slide(job))
        _announce(results[-1])
        bar.update(1)
    return results


def _run_on_ray(jobs: list[SlideJob], address: str, bar) -> list[dict]:
    """The same process_slide as Ray tasks, one per slide; results as they finish.

    ``address``: "local" starts a Ray instance on this machine; anything else is ray.init's address
    ("auto": the cluster this machine is part of, "ray://head:10001": a remote cluster). A Ray already
    initialised in this process (a test's ray.init(num_cpus=1)) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise UsageError("--ray-address needs Ray: pip install ray==2.60.0 (or leave --ray-address out to tile "
                         "in this process)") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address)
    task = ray.remote(process_slide)
    pending = {task.remote(job): job for job in jobs}
    results = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            results.append(ray.get(done[0]))
        except Exception as exc:  # noqa: BLE001 - a worker lost (node died, out of memory) is one bad slide
            results.append({"patient_id": job.patient_id, "file": job.path, "ok": False, "info": {},
                            "reason": f"{job.path}: the Ray task failed ({type(exc).__name__}: {exc}); re-run to "
                                      "retry this slide"})
        _announce(results[-1])
        bar.update(1)
    return results


def _announce(result: dict) -> None:
    """A bad slide is named on stderr at once (with the fix); the report lists it too."""
    if not result["ok"]:
        tqdm.write(f"ingest-slides: skipped {result['reason']}", file=sys.stderr)


def plan_jobs(slides: list[Path], run_dir: Path, annotations: dict[str, Path], mpp, min_tissue: float,
              idc_class: str, progress: bool) -> tuple[list[SlideJob], list[tuple[str, str]]]:
    """One job per slide, and the slides refused before any reading (no usable id, an id taken)."""
    jobs, problems, taken = [], [], {}
    for path in slides:
        try:
            pid = patient_id_from_name(path.name)
        except UsageError as exc:
            problems.append((str(path), str(exc)))
            continue
        if pid in taken:
            problems.append((str(path), f"{path}: its patient id {pid!r} is already the id of {taken[pid]}; rename "
                                        "one of the two files"))
            continue
        taken[pid] = path
        ann = annotations.get(slide_stem(path.name)) or annotations.get(pid)
        fp = slide_fingerprint(path, pid, ann, min_tissue, idc_class)
        # Absolute paths: a Ray worker's working folder is not this process's.
        jobs.append(SlideJob(str(path.absolute()), pid, str(run_dir.absolute()), fp,
                             str(ann.absolute()) if ann else None, mpp, min_tissue, idc_class, progress))
    return jobs, problems


def ingest_slides(slides, run_dir: Path | str, mpp: float | None = None, annotations=None,
                  min_tissue: float = tissue.DEFAULT_MIN_TISSUE, ray_address: str | None = None,
                  idc_class: str = IDC_CLASS, progress: bool = True, force: bool = False) -> dict:
    """Tile every slide into ``run_dir``; returns the ingest stage's record (``skipped`` when unchanged).

    Raises UsageError for bad options and FileNotFoundError when no slide could be tiled (after
    writing ingest_report.csv); any single bad slide is reported and skipped.
    """
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise UsageError(f"--mpp must be a number of microns per pixel above 0, got {mpp}")
    if not 0 < min_tissue <= 1:
        raise UsageError(f"--min-tissue must be a fraction in (0, 1], got {min_tissue}")
    run_dir = Path(run_dir)
    paths = find_slides(slides)
    if not paths:
        raise UsageError(f"--slides {' '.join(map(str, slides))}: no slide files found (looked for "
                         f"{', '.join(SLIDE_SUFFIXES)})")
    # The slides' folder is the run's data root (reviews are kept per data root, pipeline/reviews.py).
    folders = [str(p.resolve().parent) for p in paths if p.parent.is_dir()]
    root = Path(os.path.commonpath(folders)) if folders else Path.cwd()
    runfolder.claim_run_folder(run_dir, "ingest-slides", root, force=force)
    ann = find_annotations(annotations)
    jobs, problems = plan_jobs(paths, run_dir, ann, mpp, min_tissue, idc_class, progress and not ray_address)
    matched = {slide_stem(Path(j.annotations).name) for j in jobs if j.annotations}
    for stem, f in ann.items():
        if stem not in matched:
            problems.append((str(f), f"{f}: matches no slide (an annotation file is named like its slide: "
                                     "<slide name>.geojson); rename it or leave it out"))
    for _, reason in problems:  # refused before reading; the slides read are named as they finish
        tqdm.write(f"ingest-slides: skipped {reason}", file=sys.stderr)

    results = {}
    todo = []
    for job in jobs:
        done = finished(job)
        if done:
            results[job.patient_id] = {"patient_id": job.patient_id, "file": job.path, "ok": True, "reason": "",
                                       "info": done["info"], "resumed": True}
        else:
            todo.append(job)
    t0 = time.perf_counter()
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="slide", desc="ingest-slides",
              disable=not progress) as bar:
        ran = _run_on_ray(todo, ray_address, bar) if ray_address and todo else _run_in_process(todo, bar)
    seconds = time.perf_counter() - t0
    results.update({r["patient_id"]: r for r in ran})
    ok = [j for j in jobs if results[j.patient_id]["ok"]]
    problems += [(results[j.patient_id]["file"], results[j.patient_id]["reason"]) for j in jobs
                 if not results[j.patient_id]["ok"]]
    store.write_ingest_report(run_dir, pd.DataFrame(problems, columns=["file", "reason"]))
    if not ok:
        raise FileNotFoundError(f"no slide could be tiled; every slide and why is listed in "
                                f"{run_dir / store.INGEST_REPORT}")
    fp = store.fingerprint("ingest-slides", [(j.patient_id, j.fingerprint) for j in ok])
    record = _assemble(run_dir, ok, {j.patient_id: results[j.patient_id]["info"] for j in ok}, fp, root)
    tiled = sum(r["ok"] for r in ran)
    return {**record, "n_skipped": len(problems), "problems": problems, "tile_seconds": round(seconds, 3),
            "slides_tiled": tiled, "slides_resumed": len(ok) - tiled}


def _assemble(run_dir: Path, jobs: list[SlideJob], infos: dict[str, dict], fp: str, root: Path) -> dict:
    """manifest.parquet + patches.npy from the finished slides' results, and run.json; skipped when the
    same slides with the same fingerprints were assembled already."""
    if store.stage_done(run_dir, "ingest", fp, store.MANIFEST, store.PATCHES):
        return store.read_meta(run_dir)["stages"]["ingest"] | {"skipped": True}
    jobs = sorted(jobs, key=lambda j: j.patient_id)
    parts = [np.load(_part(run_dir, j.patient_id, "npz")) for j in jobs]
    n = sum(len(p["rows"]) for p in parts)
    frames, start = [], 0
    with store.atomic_path(run_dir / store.PATCHES, suffix=".npy") as tmp:
        dst = store.create_patch_store(tmp, n)
        for j, p in zip(jobs, parts):
            m = len(p["rows"])
            dst[start:start + m] = p["patches"]
            start += m
            frames.append(pd.DataFrame({
                "patient_id": j.patient_id, "x": 1 + PATCH_SIZE * p["cols"], "y": 1 + PATCH_SIZE * p["rows"],
                "width": PATCH_SIZE, "height": PATCH_SIZE, "label": p["labels"], "source": Path(j.path).name}))
        dst.flush()
        del dst
    manifest = pd.concat(frames, ignore_index=True)
    store.write_manifest(run_dir, manifest)
    labelled = manifest["label"] >= 0
    info = {"fingerprint": fp, "data_root": str(root), "n_patches": int(n), "n_patients": len(jobs),
            "n_positive": int((manifest["label"] == 1).sum()), "n_unlabelled": int((~labelled).sum()),
            "kind": "slides"}
    store.update_meta(run_dir, synthetic=False, cohort={}, data_root=str(root), mpp=DATASET_MPP,
                      slides=infos, stages={"ingest": info})
    return info


def summarise(record: dict, run_dir: Path | str, max_lines: int = 10) -> str:
    lines = [f"ingest-slides: {record['n_patches']:,} patches of {record['n_patients']} slides"
             + (" (unchanged, reused)" if record.get("skipped") else "")
             + f"; {record.get('slides_tiled', 0)} tiled in {record.get('tile_seconds', 0):.1f} s, "
               f"{record.get('slides_resumed', 0)} resumed"]
    if record.get("n_unlabelled"):
        lines.append(f"  {record['n_unlabelled']:,} patches unlabelled (label {store.UNLABELLED}: slides without "
                     "annotations)")
    else:
        lines.append(f"  {record['n_positive'] / max(record['n_patches'], 1):.1%} IDC-positive (from annotations)")
    if record.get("problems"):
        lines.append(f"  {len(record['problems'])} problems, all in {Path(run_dir) / store.INGEST_REPORT}:")
        lines += [f"    {reason}" for _, reason in record["problems"][:max_lines]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command
def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slides", nargs="+", required=True, type=Path,
                        help="slide files, or folders of them (one slide = one patient; the id is the file name)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--mpp", type=positive_number, default=None,
                        help="microns per pixel at full resolution, for slides that record no scale (a slide's own "
                             "scale is always used when it has one)")
    parser.add_argument("--annotations", nargs="+", type=Path, default=None,
                        help="QuPath GeoJSON of IDC regions (level-0 pixels), files or folders, matched to a slide by "
                             "file name (<slide name>.geojson); also this project's export-geojson output")
    parser.add_argument("--idc-class", default=IDC_CLASS, help="the QuPath class of the IDC regions (default IDC)")
    parser.add_argument("--min-tissue", type=_fraction, default=tissue.DEFAULT_MIN_TISSUE,
                        help=f"keep patches at least this much tissue (default {tissue.DEFAULT_MIN_TISSUE})")
    parser.add_argument("--ray-address", default=None,
                        help="tile the slides as Ray tasks: 'local' (a Ray on this machine), 'auto' (this machine's "
                             "cluster) or ray://HEAD:10001 (default: in this process)")
    runfolder.add_force_argument(parser)


def run_command(args: argparse.Namespace) -> int:
    record = ingest_slides(args.slides, args.out, mpp=args.mpp, annotations=args.annotations,
                           min_tissue=args.min_tissue, ray_address=args.ray_address, idc_class=args.idc_class,
                           force=args.force)
    print(summarise(record, args.out), flush=True)
    print(f"run folder: {args.out}")
    return 0
