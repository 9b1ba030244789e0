"""Synthetic H&E cohort in the exact layout of the public "Breast Histopathology Images" dataset.

The dashboard ships with this cohort as its default data, so it has to stand in for the real
IDC_regular_ps50_idx5 archive (Janowczyk & Madabhushi 2016) in every way later stages can see:

* Same on-disk format: ``<pid>/<0|1>/<pid>_idx5_x<X>_y<Y>_class<C>.png``, 8-bit RGB, 50x50 patches
  whose X/Y are slide-pixel coordinates starting at 1 in steps of 50, only tissue patches written,
  some missing inside the tissue, narrower/shorter patches where a slide's pixel extent ends.
* Same kind of labels: a pathologist's coarse outline of the IDC region, turned into patch labels
  by area fraction, with a few mistakes at the outline.
* No shortcut: stain colour and intensity vary strongly per patient and smoothly within a slide,
  and normal tissue (lymphocyte aggregates, lobules) carries as much haematoxylin as tumour, so
  mean colour says little. What separates IDC is structure: bigger, crowded, pleomorphic,
  vesicular nuclei in nests.

Each slide is rendered whole (Beer-Lambert mix of a haematoxylin and an eosin optical-density map)
and only then cut into patches, so tissue runs on across patch borders and a rebuilt slide looks
like a slide. The pixel-level IDC region is saved per patient in ``pipeline.names.MASK_DIR`` for
the Grad-CAM pointing-game check and the app's outline. Everything is derived from
``(seed, patient index)``, so output is byte-identical for a seed whatever the number of worker
processes.

Modules: ``render`` draws one slide (``render_slide`` -> ``RenderedSlide``); ``cohort`` plans the
cohort, writes it and keeps the folder's records (``generate_cohort``). The folder layout itself
(patch names, ``PATCH_SIZE``, ``MASK_DIR``, ``SYNTHETIC_MARKER``) is ``pipeline.names``'s: real-data
code (ingest, store, run) reads it from there and never imports this package.

Command line (``python -m pipeline synth``): ``add_arguments(parser)`` declares the options,
``run_command(args)`` generates the cohort and prints its summary line. Importing this package
pulls in numpy, scipy, Pillow and tqdm only (no TensorFlow).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import non_negative_int, positive_int
from pipeline.synth.cohort import IN_PROGRESS, generate_cohort
from pipeline.synth.render import RenderedSlide, render_slide

__all__ = ["IN_PROGRESS", "RenderedSlide", "add_arguments", "generate_cohort", "render_slide", "run_command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``synth`` command's options: --out (required), --patients (>= 1), --seed (>= 0)."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write the cohort into")
    parser.add_argument("--patients", type=positive_int, default=24)
    parser.add_argument("--seed", type=non_negative_int, default=0)


def run_command(args: argparse.Namespace) -> int:
    """Generate the cohort ``args`` asks for and print its summary line; 0 on success.

    User errors (UsageError: --out holds what synth did not write) propagate, for the command line
    to report as one ``error: ...`` line. ``generate_cohort`` is looked up here at call time, so a
    test can replace ``pipeline.synth.generate_cohort``.
    """
    meta = generate_cohort(args.out, n_patients=args.patients, seed=args.seed)
    print(f"synthetic cohort: {meta['n_patients']} patients, {meta['n_patches']:,} patches "
          f"({meta['positive_fraction']:.1%} IDC) in {args.out} -- SYNTHETIC, not real tissue")
    return 0
