"""Command line: python -m pipeline {synth,run,score,compare} ...  (see README)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from pipeline.errors import UsageError, check_int
from pipeline.names import BadPatchName
from pipeline.store import ArtifactError

# What the command line reports as one "error: ..." line (exit 2): the user's input or artifacts.
# Anything else is a bug in the pipeline and keeps its traceback.
USER_ERRORS = (ArtifactError, BadPatchName, FileNotFoundError, UsageError)


def _whole_number(minimum: int):
    """An argparse ``type`` for whole numbers >= ``minimum``: bad values stop before any work is done."""

    def parse(text: str) -> int:
        try:
            return check_int("the value", text, minimum)
        except UsageError:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}, got {text!r}") from None

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def _positive_number(text: str) -> float:
    """An argparse ``type`` for a finite number above 0 (a time budget)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


positive_int, non_negative_int = _whole_number(1), _whole_number(0)


def _parser() -> argparse.ArgumentParser:
    from model.architectures import ARCHITECTURES

    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic default cohort (dataset layout, labelled SYNTHETIC)")
    s.add_argument("--out", type=Path, required=True, help="folder to write the cohort into")
    s.add_argument("--patients", type=positive_int, default=24)
    s.add_argument("--seed", type=non_negative_int, default=0)

    r = sub.add_parser("run", help="ingest a dataset folder, split by patient, train, score every patch, evaluate")
    r.add_argument("--data", type=Path, required=True, help="dataset root: <pid>/<0|1>/*.png or IDC_regular_ps50_idx5/")
    r.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<data folder name>)")
    r.add_argument("--epochs", type=positive_int, default=30, help="epoch cap (early stopping usually ends sooner)")
    r.add_argument("--patience", type=non_negative_int, default=8,
                   help="epochs without a better validation PR-AUC before stopping")
    r.add_argument("--arch", choices=ARCHITECTURES, default="separable")
    r.add_argument("--width", type=positive_int, default=None,
                   help="first-stage filters of the separable CNN (default: model.architectures.DEFAULT_WIDTH)")
    r.add_argument("--seed", type=non_negative_int, default=0, help="seed of the patient split and of training")
    r.add_argument("--batch-size", type=positive_int, default=128)
    r.add_argument("--tta", action="store_true", help="score with 8-fold dihedral test-time augmentation")
    r.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    r.add_argument("--no-context", dest="context", action="store_false",
                   help="score each patch alone, without its neighbours' scores (pipeline.context)")
    r.add_argument("--force", action="store_true",
                   help="if --out holds another run or other files, move it aside to <out>.replaced-<time> first")

    c = sub.add_parser("score", help="score new patient folders with an already trained run")
    c.add_argument("--run", type=Path, required=True, help="the trained run folder")
    c.add_argument("--data", type=Path, required=True, help="dataset root with the new patients")
    c.add_argument("--out", type=Path, required=True, help="new run folder to write")
    c.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    c.add_argument("--force", action="store_true",
                   help="if --out holds another run or other files, move it aside to <out>.replaced-<time> first")

    k = sub.add_parser("compare", help="train several architectures under the same budget on the same split")
    k.add_argument("--data", type=Path, required=True)
    k.add_argument("--out", type=Path, default=Path("runs/compare"))
    k.add_argument("--archs", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    k.add_argument("--minutes", type=_positive_number, default=5.0, help="training time budget per architecture")
    k.add_argument("--epochs", type=positive_int, default=30, help="epoch cap per architecture")
    k.add_argument("--seed", type=non_negative_int, default=0)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "synth":
            from pipeline.synth import generate_cohort

            meta = generate_cohort(args.out, n_patients=args.patients, seed=args.seed)
            print(f"synthetic cohort: {meta['n_patients']} patients, {meta['n_patches']:,} patches "
                  f"({meta['positive_fraction']:.1%} IDC) in {args.out} -- SYNTHETIC, not real tissue")
        elif args.command == "run":
            from pipeline.run import run_pipeline

            out = args.out or Path("runs") / args.data.resolve().name
            run_pipeline(args.data, out, arch=args.arch, epochs=args.epochs, seed=args.seed, tta=args.tta,
                         workers=args.workers, batch_size=args.batch_size, patience=args.patience,
                         use_context=args.context, width=args.width, force=args.force)
            print(f"run folder: {out}  (open it with: streamlit run app/main.py)")
        elif args.command == "score":
            from pipeline.run import score_new_data

            score_new_data(args.run, args.data, args.out, workers=args.workers, force=args.force)
            print(f"run folder: {args.out}")
        elif args.command == "compare":
            from pipeline.compare import compare, to_markdown

            table = compare(args.data, args.out, archs=args.archs, minutes=args.minutes, epochs=args.epochs,
                            seed=args.seed)
            print("\n" + to_markdown(table, args.minutes))
            print(f"written: {args.out / 'comparison.csv'} and comparison.md")
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
