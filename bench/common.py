"""What the bench and report scripts share: where the real data is, their common options, run naming.

Run the scripts as modules from the project root (``.venv/bin/python -m bench.report_real``): the
app, pipeline and model packages are installed in the venv (``make setup``) and bench/ is found
from the root, so no script edits sys.path. Training settings come from model.config.TrainConfig,
the same dataclass the pipeline's command line is built from, so a report trains exactly what
``python -m pipeline run`` with the same options would.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from model.config import TrainConfig
from pipeline.names import RUNS_DIR

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_DATA = SHARED_DATA / "idc_dev"  # every real patch we have (209 patients); idc_sample is its test subset
SAMPLE_DATA = SHARED_DATA / "idc_sample"
DEFAULT_OUT = ROOT / RUNS_DIR
DEFAULT_SEEDS = (0, 1, 2)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def report_parser(description: str, train_options: bool = True, context_option: bool = True) -> argparse.ArgumentParser:
    """--data, --seeds, --out, --tta [, --no-context] and, with ``train_options``, every TrainConfig setting."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dataset root (default {DEFAULT_DATA})")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="patient-split seeds")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where runs and reports are written")
    p.add_argument("--tta", action="store_true", help="score with 8-fold dihedral test-time augmentation")
    if context_option:
        p.add_argument("--no-context", dest="context", action="store_false",
                       help="score each patch alone (ablation of the neighbourhood-context stage)")
    if train_options:
        TrainConfig.add_cli_options(p, exclude=("seed",))  # the seed is per split, from --seeds
    return p


def train_config(args: argparse.Namespace, seed: int) -> TrainConfig:
    return TrainConfig.from_cli(args, seed=seed)


def variant(args: argparse.Namespace) -> str:
    """A suffix naming every option off its default (e.g. ``-tta-w48-e60p15``), so a variant's runs and
    report never overwrite the default's. Data other than idc_dev is named too (``-idc_sample``)."""
    parts = []
    data = getattr(args, "data", DEFAULT_DATA)
    if Path(data).resolve() != DEFAULT_DATA.resolve():
        parts.append(Path(data).name)
    if getattr(args, "tta", False):
        parts.append("tta")
    if not getattr(args, "context", True):
        parts.append("nocontext")
    defaults = TrainConfig()
    config = TrainConfig.from_cli(args)
    short = {"arch": "", "width": "w", "learning_rate": "lr", "batch_size": "b", "stain_sigma": "stain"}
    for name, prefix in short.items():
        if getattr(config, name) != getattr(defaults, name) and (name != "width" or config.width is not None):
            parts.append(f"{prefix}{getattr(config, name)}")
    if (config.epochs, config.patience) != (defaults.epochs, defaults.patience):
        parts.append(f"e{config.epochs}p{config.patience}")
    return "".join(f"-{p}" for p in parts)


def skip_without(data: Path) -> bool:
    """True (after saying so) when the real data is not there: reports then skip instead of failing."""
    if Path(data).is_dir():
        return False
    print(f"skipped: real patches not found at {data} (../shared/data beside the project)")
    return True


# --------------------------------------------------------------------------- full-scale timing benches
N_PATIENTS, N_PATCHES, MAX_SLIDE = 279, 277_524, 2_400  # the public IDC dataset's size, its largest slide


def patient_sizes(rng: np.random.Generator) -> np.ndarray:
    """279 slide sizes summing to 277,524, between 100 and 2,400, three of them at the maximum."""
    raw = rng.lognormal(mean=0.0, sigma=0.6, size=N_PATIENTS)
    sizes = np.clip(np.round(raw / raw.sum() * N_PATCHES), 100, MAX_SLIDE).astype(int)
    sizes[:3] = MAX_SLIDE
    while (gap := N_PATCHES - sizes.sum()) != 0:  # spread the rounding error, one patch per patient
        room = np.flatnonzero((sizes < MAX_SLIDE) if gap > 0 else (sizes > 100))
        sizes[room[room >= 3][:abs(gap)]] += np.sign(gap)
    return sizes


def once_ms(fn) -> float:
    """One timed call, no warm-up: for one-off work that is cached afterwards (what a first view costs)."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def median_ms(fn, repeats: int, warm: bool = True) -> float:
    """Median of ``repeats`` timed calls, after one untimed warm-up call unless ``warm`` is False
    (first-touch page faults and lazy imports are not what a repeated call costs)."""
    if warm:
        fn()
    return statistics.median(once_ms(fn) for _ in range(repeats))
