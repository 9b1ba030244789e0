"""Does Grad-CAM point at the IDC? The pointing game on a synthetic run, whose true regions are known.

Run: .venv/bin/python -m bench.report_pointing_game [--run runs/synthetic-demo] [--split test] [--max 300]

Takes IDC-positive patches that hold both IDC and non-IDC tissue (true region covering 10-90% of the
patch), computes each CAM method the app offers for the IDC score, and counts a hit when the map's
peak pixel lies inside the true region (model.explain.pointing_game). Chance is the mean share of the
patch the region covers: a method that explains nothing hits about that often.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.names import RUNS_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CAM_BATCH = 64  # patches per Explainer.cam call


def mixed_positive_patches(run: store.Run, split: str, max_patches: int, seed: int = 0):
    """Rows of positive patches whose true region covers 10-90% of the patch, and their masks."""
    rows = run.table[(run.table["label"] == 1) & ((run.table["split"] == split) | (split == "all"))]
    masks, known = store.patch_region_masks(run.path, rows)
    share = masks.mean(axis=(1, 2))
    keep = known & (share > 0.1) & (share < 0.9)
    idx = np.flatnonzero(keep)
    if len(idx) > max_patches:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_patches, replace=False))
    return rows.index.to_numpy()[idx], masks[idx]


def main(argv=None) -> int:
    from model.explain import METHODS, Explainer, pointing_game

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path(RUNS_DIR) / "synthetic-demo")
    p.add_argument("--split", default="test", choices=[*store.SPLITS, "all"])
    p.add_argument("--max", type=int, default=300)
    args = p.parse_args(argv)
    run = store.load_run(args.run)
    if not run.synthetic:
        print(f"{args.run} is not a synthetic run: the true IDC regions are only known for synthetic cohorts")
        return 2
    rows, masks = mixed_positive_patches(run, args.split, args.max)
    if len(rows) == 0:
        print("no positive patches with both IDC and non-IDC tissue in that split")
        return 2
    explainer = Explainer(store.read_model(run.path, compile=False), run.meta["cam_layer"])
    patches = np.asarray(run.patches[rows])
    print(f"pointing game on {args.run} ({args.split} split, SYNTHETIC): {len(rows)} IDC-positive patches "
          f"with both IDC and non-IDC tissue, from {run.table.loc[rows, 'patient_id'].nunique()} patients")
    for method in METHODS:
        t0 = time.perf_counter()
        cams = np.concatenate([explainer.cam(patches[s:s + CAM_BATCH], method, target=1)
                               for s in range(0, len(rows), CAM_BATCH)])
        result = pointing_game(cams, masks)
        print(f"  {method:<11} hit rate {result['hit_rate']:.1%} vs chance {result['chance']:.1%} "
              f"({int(np.sum(result['hits']))}/{result['n']}; {1000 * (time.perf_counter() - t0) / len(rows):.0f} ms/patch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
