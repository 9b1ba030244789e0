"""Compare architectures under the same training budget on the same patient split.

Each architecture gets its own run folder under OUT (so each can be opened in the app); the patch
store is ingested once and hard-linked into the others. The table is written as comparison.csv and
comparison.md in OUT.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from model.config import ARCHITECTURES, TrainConfig
from pipeline import runfolder, store
from pipeline.errors import positive_number
from pipeline.names import RUNS_DIR
from pipeline.run import run_pipeline
from pipeline.store import TEST


def share_ingest(first: Path, other: Path, force: bool = False) -> None:
    """Give ``other`` the first run's ingest (hard links, no copy) so its ingest stage is skipped.

    ``other`` is claimed first as a `run` folder of the first run's data (runfolder.claim_run_folder, which
    run_pipeline would do only after this has written into it): a folder holding another run or the user's
    files is refused, untouched (``force`` moves it aside).
    """
    meta = store.read_meta(first)
    runfolder.claim_run_folder(Path(other), "run", Path(meta["data_root"]), force=force)
    other.mkdir(parents=True, exist_ok=True)
    for name in (store.MANIFEST, store.PATCHES, store.INGEST_REPORT):
        dst = other / name
        if not dst.exists():
            runfolder.link_or_copy(first / name, dst)
    store.update_meta(other, synthetic=meta.get("synthetic"), cohort=meta.get("cohort", {}),
                      data_root=meta.get("data_root"), stages={"ingest": meta["stages"]["ingest"]})


def _scoring_rate(run_dir: Path, n: int = 4096) -> float:
    from model.predict import predict_probabilities

    model = store.read_model(run_dir)
    patches = store.read_patches(run_dir)[:n]
    predict_probabilities(model, patches[:256])  # trace once
    t0 = time.perf_counter()
    predict_probabilities(model, patches)
    return len(patches) / (time.perf_counter() - t0)


def compare(data: Path | str, out: Path | str, config: TrainConfig = TrainConfig(), *, archs=ARCHITECTURES,
            minutes: float = 5.0, force: bool = False) -> pd.DataFrame:
    """Train every architecture with ``config``'s settings for at most ``minutes`` and tabulate test metrics.

    ``out/<arch>`` follows runfolder.claim_run_folder like a `run` folder (``force`` moves another run's
    or the user's folder aside to ``<arch>.replaced-<time>``).
    """
    out = Path(out)
    # Each architecture's folder is a `run` folder (claimed by share_ingest or run_pipeline before anything is
    # written into it); all are checked first, so a folder holding the user's files or another run stops the
    # comparison before any folder is touched or any model trained.
    for arch in archs:
        runfolder.check_run_folder(out / arch, "run", Path(data), force=force)
    rows = []
    first = None
    for arch in archs:
        run_dir = out / arch
        if first is not None:
            share_ingest(first, run_dir, force=force)
        print(f"\n== {arch}: up to {minutes:g} min of training", flush=True)
        report = run_pipeline(data, run_dir, config.replace(arch=arch, time_budget_s=minutes * 60), force=force)
        first = first or run_dir
        meta = store.read_meta(run_dir)
        test = report["splits"][TEST]
        at = test["at"].get("f1_optimal", test["at"]["default"])
        rows.append({
            "architecture": arch, "test_patients": test["n_patients"], "test_patches": test["n_patches"],
            "f1": at["f1"], "balanced_accuracy": at["balanced_accuracy"], "roc_auc": test["roc_auc"],
            "pr_auc": test["pr_auc"], "roc_auc_patch": test.get("roc_auc_patch", test["roc_auc"]),
            "params": meta["train"]["params"], "epochs": meta["train"]["epochs_run"],
            "train_patches_per_s": meta["train"]["train_patches_per_s"],
            "score_patches_per_s": round(_scoring_rate(run_dir), 1),
        })
    table = pd.DataFrame(rows)
    with store.atomic_path(out / "comparison.csv") as tmp:
        table.to_csv(tmp, index=False)
    with store.atomic_path(out / "comparison.md") as tmp:
        tmp.write_text(to_markdown(table, minutes))
    return table


def to_markdown(table: pd.DataFrame, minutes: float) -> str:
    head = (f"Test split ({table['test_patients'].iloc[0]} patients, {table['test_patches'].iloc[0]:,} patches), "
            f"F1 and balanced accuracy at the validation-chosen F1-optimal threshold (scores with neighbourhood "
            f"context; roc_auc_patch is the patch alone, the CNN without its neighbours); "
            f"each model trained for at most {minutes:g} min on 2 CPU cores.\n\n")
    cols = ["architecture", "f1", "balanced_accuracy", "roc_auc", "pr_auc", "roc_auc_patch", "params", "epochs",
            "train_patches_per_s", "score_patches_per_s"]
    figures = ("f1", "balanced_accuracy", "roc_auc", "pr_auc", "roc_auc_patch")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    undefined = False
    for r in table[cols].itertuples(index=False):
        cells = []
        for c, v in zip(cols, r):
            if c in figures and isinstance(v, (float, np.floating)) and not np.isfinite(v):
                cells.append("n/a")  # never a bare nan: the footnote says why
                undefined = True
            elif c in figures and isinstance(v, (float, np.floating)):
                cells.append(f"{v:.3f}")
            else:
                cells.append(f"{v:,.0f}" if isinstance(v, (int, float, np.integer, np.floating)) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    note = ("\n\nn/a: not defined on this test split (all its patches have one label, or the model called every patch "
            "one class); each run's evaluation.json says which and why.") if undefined else ""
    return head + "\n".join(lines) + note + "\n"


# --------------------------------------------------------------------------- the `compare` command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `compare` command's options: the architectures, the time budget and the other TrainConfig settings."""
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(RUNS_DIR) / "compare")
    parser.add_argument("--archs", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--minutes", type=positive_number, default=5.0, help="training time budget per architecture")
    TrainConfig.add_cli_options(parser, exclude=("arch",))
    runfolder.add_force_argument(parser)


def run_command(args: argparse.Namespace) -> int:
    """`python -m pipeline compare`: train each architecture, print and write the table."""
    table = compare(args.data, args.out, TrainConfig.from_cli(args), archs=args.archs, minutes=args.minutes,
                    force=args.force)
    print("\n" + to_markdown(table, args.minutes))
    print(f"written: {args.out / 'comparison.csv'} and comparison.md")
    return 0
