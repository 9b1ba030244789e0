"""The pipeline's stages in order, each skipped when its inputs have not changed since it finished.

    raw patches -> ingest (manifest + patch store) -> split -> train -> score (+calibrate) -> evaluate

Each stage records a fingerprint of its inputs (the previous stage's fingerprint plus its own
settings) in run.json, so a re-run with the same inputs does nothing and a changed setting redoes
only the stages after it. The stages themselves live with their modules (split.stage_split,
score.stage_score, evaluate.stage_evaluate); this module runs them in order and is the `run` command.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from model.config import TrainConfig
from pipeline import evaluate, ingest, runfolder, score, split, store
from pipeline.errors import check_int, positive_int


def _log(msg: str) -> None:
    print(msg, flush=True)


def _stage_train(run_dir: Path, upstream_fp: str, config: TrainConfig) -> str:
    """Train the model unless one was trained from the same split with the same settings; its fingerprint."""
    from pipeline import train  # TensorFlow is imported only when a model is needed

    fp = store.fingerprint(upstream_fp, config.fingerprint_settings())
    if store.stage_done(run_dir, "train", fp, store.MODEL):
        _log("train: unchanged inputs and settings, reusing model.keras")
        return fp
    _log(f"train: {config.arch}, up to {config.epochs} epochs (early stopping on validation PR-AUC)")
    result = train.train(run_dir, config, fingerprint=fp)
    store.update_meta(run_dir, arch=config.arch, cam_layer=result["cam_layer"], seed=config.seed, train=result,
                      train_config=config.as_dict())
    store.mark_stage(run_dir, "train", fp)
    _log(f"train: best epoch {result['best_epoch']}/{result['epochs_run']}, val PR-AUC "
         f"{result['best_val_pr_auc']:.3f}, {result['train_seconds']:.0f} s, "
         f"{result['train_patches_per_s']:,.0f} patches/s")
    return fp


def run_pipeline(data: Path | str, out: Path | str, config: TrainConfig = TrainConfig(), *, tta: bool = False,
                 use_context: bool = True, workers: int | None = None, fractions=split.DEFAULT_FRACTIONS,
                 force: bool = False) -> dict:
    """Ingest ``data``, split, train, score and evaluate into the run folder ``out``.

    ``config`` is the whole training configuration (its seed also draws the patient split); it is
    checked when it is made. ``use_context`` adds the neighbourhood-context stage (pipeline.context)
    to the patch scores. ``out`` must be new, empty or this same run's folder (see
    runfolder.claim_run_folder; ``force`` moves another aside).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a model.config.TrainConfig, got {type(config).__name__}")
    out = Path(out)
    if workers is not None:
        check_int("workers", workers, 1)
    runfolder.claim_run_folder(out, "run", Path(data), force=force)
    info = ingest.ingest(data, out, workers=workers)
    _log(ingest.summarise(info, out))

    split_fp = split.stage_split(out, config.seed, fractions)
    _log(split.format_summary(out))
    train_fp = _stage_train(out, split_fp, config)
    score_fp = score.stage_score(out, train_fp, tta, use_context=use_context)
    report = evaluate.stage_evaluate(out, score_fp)
    store.update_meta(out, thresholds=report["thresholds"], source={"kind": "trained"})
    _log(evaluate.format_report(report))
    return report


# --------------------------------------------------------------------------- the `run` command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `run` command's options: the data and run folders, scoring, and every TrainConfig setting."""
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset root: <pid>/<0|1>/*.png or IDC_regular_ps50_idx5/")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<data folder name>)")
    TrainConfig.add_cli_options(parser)
    parser.add_argument("--tta", action="store_true", help="score with 8-fold dihedral test-time augmentation")
    parser.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    parser.add_argument("--no-context", dest="context", action="store_false",
                        help="score each patch alone, without its neighbours' scores (pipeline.context)")
    runfolder.add_force_argument(parser)


def run_command(args: argparse.Namespace) -> int:
    """`python -m pipeline run`: the whole pipeline into --out, then name the run folder."""
    config = TrainConfig.from_cli(args)
    if args.width is not None and config.width is None:
        _log(f"train: --width applies to the separable CNN only; ignored for --arch {config.arch}")
    out = args.out or Path("runs") / args.data.resolve().name
    run_pipeline(args.data, out, config, tta=args.tta, use_context=args.context, workers=args.workers,
                 force=args.force)
    print(f"run folder: {out}  (open it with: make app, or python -m app)")
    return 0
