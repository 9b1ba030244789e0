"""Whole-slide throughput on this machine: slides per hour for tiling (ingest-slides) and scoring.

    .venv/bin/python -m bench.bench_slides        (from the project root)

Builds pyramidal TIFF slides from the synthetic renderer (pipeline/synth/render.py: one patient's
H&E slide at the dataset's 4 um/px, ``--patches`` patches of tissue, the public dataset's mean is
about 1,000), upsampled to 1 um/px at level 0 (a 10x scan; 4:1 onto the dataset's scale), written
twice: with pyramid levels at downsample 1, 2, 8 (no level at 4 um/px: patches are read from the
2 um/px level and area-resized 2:1, as for a 20x scan with a 4x pyramid) and 1, 4, 16 (a level
exactly at 4 um/px: no resize, as for a 40x scan with a 4x pyramid). Every figure is measured in
this run: the whole ingest-slides (thumbnail, tissue mask, patch reads, partial results, manifest
and store), a baseline that reads each kept patch on its own from level 0 and resizes it (what
one writes first), and scoring the tiled patches with the project's default network (untrained:
the cost is the same), as ``score --run`` does. Slides per hour = 3600 / seconds per slide, one
process (``--ray-address`` multiplies it by the number of worker CPUs, storage permitting).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import ingest_slides, store, wsi
from pipeline.names import DATASET_MPP, PATCH_SIZE

LEVEL0_MPP = 1.0
UP = int(DATASET_MPP / LEVEL0_MPP)


def render_level0(n_patches: int, seed: int) -> np.ndarray:
    """A synthetic slide at LEVEL0_MPP: rendered at the dataset's scale, upsampled UP times."""
    import cv2

    from pipeline.synth.render import render_slide

    slide = render_slide(np.random.default_rng(seed), n_patches, 0.3)
    rgb = slide.rgb.copy()
    rgb[rgb.max(axis=2) == 0] = (244, 244, 246)  # the renderer paints only the patches' cells: the rest is glass
    return cv2.resize(rgb, (rgb.shape[1] * UP, rgb.shape[0] * UP), interpolation=cv2.INTER_LINEAR)


def write_pyramid(path: Path, img: np.ndarray, downsamples) -> None:
    import cv2
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=img.nbytes > 2 ** 31) as tw:
        for i, d in enumerate(downsamples):
            level = img if d == 1 else cv2.resize(img, (img.shape[1] // d, img.shape[0] // d),
                                                  interpolation=cv2.INTER_AREA)
            res = 1e4 / (LEVEL0_MPP * d)
            tw.write(level, photometric="rgb", compression="zlib", compressionargs={"level": 1}, tile=(256, 256),
                     subfiletype=0 if i == 0 else 1, resolution=(res, res), resolutionunit="CENTIMETER")


def naive_per_patch(path: Path, n_max: int) -> tuple[float, int]:
    """Seconds per patch reading each kept patch alone at level 0 and resizing it, and patches timed."""
    import cv2

    slide = wsi.open_slide(path)
    g = wsi.geometry_of(slide, path, None)
    thumb = wsi.read_thumbnail(slide, g, ingest_slides.THUMB_PER_PATCH)
    from pipeline import tissue

    mask = tissue.tissue_mask(thumb)
    rows, cols = np.nonzero(tissue.block_fraction(mask, g.rows, g.cols, ingest_slides.THUMB_PER_PATCH) >= 0.5)
    side = int(round(PATCH_SIZE * g.scale))
    t0 = time.perf_counter()
    n = min(n_max, len(rows))
    for r, c in zip(rows[:n], cols[:n]):
        rgba = np.asarray(slide.read_region((int(c * side), int(r * side)), 0, (side, side)))
        cv2.resize(wsi.composite_on_white(rgba), (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA)
    slide.close()
    return (time.perf_counter() - t0) / max(n, 1), len(rows)


def score_seconds(run_dir: Path) -> tuple[float, int]:
    """Seconds to score a tiled run's patches with the default network (TensorFlow imported before)."""
    from model.architectures import build_model
    from model.predict import predict_probabilities

    model, _ = build_model(patch_size=PATCH_SIZE)
    patches = store.read_patches(run_dir)
    predict_probabilities(model, patches[:256])  # compile outside the timing
    t0 = time.perf_counter()
    predict_probabilities(model, patches)
    return time.perf_counter() - t0, len(patches)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=1000, help="tissue patches per slide (dataset mean ~1,000)")
    ap.add_argument("--slides", type=int, default=3, help="slides per configuration")
    ap.add_argument("--naive-patches", type=int, default=300, help="patches the per-patch baseline times")
    ap.add_argument("--no-score", action="store_true", help="leave out scoring (no TensorFlow)")
    args = ap.parse_args(argv)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs; slides at "
          f"{LEVEL0_MPP:g} um/px level 0, ~{args.patches:,} tissue patches each", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench_slides_"))
    try:
        t0 = time.perf_counter()
        img = render_level0(args.patches, seed=0)
        print(f"  rendered a {img.shape[1]:,} x {img.shape[0]:,} px slide in {time.perf_counter() - t0:.1f} s",
              flush=True)
        for name, downsamples in (("levels 1,2,8 (read 2 um/px, resize 2:1)", (1, 2, 8)),
                                  ("levels 1,4,16 (a level at 4 um/px)", (1, 4, 16))):
            folder = work / f"ds{downsamples[1]}"
            folder.mkdir()
            write_pyramid(folder / "slide_0.tif", img, downsamples)
            for i in range(1, args.slides):  # the same bytes under other names: other patients, same work
                shutil.copyfile(folder / "slide_0.tif", folder / f"slide_{i}.tif")
            out = work / f"run_ds{downsamples[1]}"
            t0 = time.perf_counter()
            record = ingest_slides.ingest_slides([folder], out, progress=False)
            per_slide = (time.perf_counter() - t0) / args.slides
            n = record["n_patches"] // args.slides
            naive, _ = naive_per_patch(folder / "slide_0.tif", args.naive_patches)
            print(f"{name}:", flush=True)
            print(f"  ingest-slides     {per_slide:7.2f} s/slide  {3600 / per_slide:8.0f} slides/h  "
                  f"{n / per_slide:8.0f} patches/s  ({n:,} patches/slide)", flush=True)
            print(f"  naive per-patch   {naive * n:7.2f} s/slide  {3600 / (naive * n):8.0f} slides/h  "
                  f"{1 / naive:8.0f} patches/s  (baseline, {min(n, args.naive_patches)} patches timed; "
                  f"ingest-slides {naive * n / per_slide:.1f}x faster, all stages included)", flush=True)
        if not args.no_score:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            seconds, n = score_seconds(work / "run_ds2")
            per_slide = seconds / args.slides
            print(f"score (default network, no TTA, {n:,} patches): {per_slide:7.2f} s/slide  "
                  f"{3600 / per_slide:8.0f} slides/h  {n / seconds:8.0f} patches/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
