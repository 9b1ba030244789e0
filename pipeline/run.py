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

import numpy as np

from model.config import TrainConfig
from pipeline import agreement, evaluate, ingest, runfolder, score, split, store
from pipeline.errors import UsageError, check_int, positive_int
from pipeline.names import RUNS_DIR


def _log(msg: str) -> None:
    print(msg, flush=True)


def _stage_train(run_dir: Path, upstream_fp: str, config: TrainConfig, reviewed=None, used: dict | None = None) -> str:
    """Train the model unless one was trained from the same split with the same settings; its fingerprint.

    ``reviewed`` (agreement.ReviewedLabels) and ``used`` (run.json's reviews_used): train with the
    reviewed labels, the unsure patches left out; the reviews' fingerprint and rule join the stage's.
    """
    from pipeline import train  # TensorFlow is imported only when a model is needed

    if reviewed is None:
        fp = store.fingerprint(upstream_fp, config.fingerprint_settings())
    else:
        fp = store.fingerprint(upstream_fp, config.fingerprint_settings(),
                               {"reviews": used["fingerprint"], "rule": used["rule"]})
    if store.stage_done(run_dir, "train", fp, store.MODEL):
        _log("train: unchanged inputs, settings and reviews, reusing model.keras")
        return fp
    _log(f"train: {config.arch}, up to {config.epochs} epochs (early stopping on validation PR-AUC)")
    if reviewed is None:
        result = train.train(run_dir, config, fingerprint=fp)
    else:
        c = used["counts"]
        _log(f"train: reviewed labels ({used['n_reviews']:,} reviews, {c['n_flipped']:,} labels flipped, "
             f"{c['n_unsure']:,} unsure patches left out); {reviewed.rule.describe()}")
        result = train.train(run_dir, config, fingerprint=fp,
                             labels=reviewed.table["reviewed_label"].to_numpy(np.int64), keep=reviewed.training_mask)
        result["labels"] = "reviewed"
    store.update_meta(run_dir, arch=config.arch, cam_layer=result["cam_layer"], seed=config.seed, train=result,
                      train_config=config.as_dict(), stages={"train": {"fingerprint": fp}})  # one write, stage marked
    _log(f"train: best epoch {result['best_epoch']}/{result['epochs_run']}, val PR-AUC "
         f"{result['best_val_pr_auc']:.3f}, {result['train_seconds']:.0f} s, "
         f"{result['train_patches_per_s']:,.0f} patches/s")
    return fp


def open_reviews(path: Path | str):
    """The review store ``--reviews`` names: a cohort reviews.sqlite, a folder holding one, or a run
    folder (its cohort store, with its old per-run file migrated)."""
    from pipeline import reviews

    path = Path(path)
    if path.is_dir() and (path / store.RUN_META).exists():
        return reviews.open_for_run(path)
    if path.is_dir():
        path = path / store.REVIEWS
    if not path.is_file():
        raise UsageError(f"--reviews {path}: no reviews store there; give a cohort reviews.sqlite "
                         f"(runs/{reviews.COHORTS_DIR}/<cohort>/reviews.sqlite) or a run folder")
    return reviews.ReviewStore(path)


def reviewed_training_labels(run_dir: Path, review_store, rule: agreement.ConsensusRule):
    """(ReviewedLabels of the run's manifest, run.json's ``reviews_used``): which reviews were used,
    their fingerprint (ids and verdicts of the reviews of this run's patches) and the counts."""
    manifest = store.read_manifest(run_dir)
    every = review_store.all()
    keyed = manifest[["patient_id", "x", "y"]].astype({"patient_id": str, "x": "int64", "y": "int64"})
    mine = every.merge(keyed.drop_duplicates(), on=["patient_id", "x", "y"], how="inner")
    mine = mine.sort_values("id", kind="stable")
    labels = manifest[["patient_id", "x", "y", "label"]].astype({"patient_id": str})
    result = agreement.reviewed_labels(labels, mine, rule)
    used = {
        "store": str(review_store.path.resolve()), "n_reviews": int(len(mine)),
        "max_id": int(every["id"].max()) if len(every) else 0,
        "fingerprint": store.fingerprint(mine[["id", "patient_id", "x", "y", "reviewer", "verdict"]]
                                         .astype(str).values.tolist()),
        "rule": rule.to_dict(), "rule_text": rule.describe(), "counts": result.counts,
    }
    return result, used


def run_pipeline(data: Path | str, out: Path | str, config: TrainConfig = TrainConfig(), *, tta: bool = False,
                 use_context: bool = True, workers: int | None = None, fractions=split.DEFAULT_FRACTIONS,
                 force: bool = False, reviews: Path | str | None = None,
                 consensus: agreement.ConsensusRule | None = None) -> dict:
    """Ingest ``data``, split, train, score and evaluate into the run folder ``out``.

    ``config`` is the whole training configuration (its seed also draws the patient split); it is
    checked when it is made. ``use_context`` adds the neighbourhood-context stage (pipeline.context)
    to the patch scores. ``out`` must be new, empty or this same run's folder (see
    runfolder.claim_run_folder; ``force`` moves another aside).

    ``reviews`` (a review store, see :func:`open_reviews`) trains with reviewed labels
    (agreement.reviewed_labels under ``consensus``, majority by default): flipped labels used and
    unsure patches left out, for training and early stopping (train and val), for calibration and
    context, and for choosing the threshold presets (val); test is reported against both label sets.
    run.json records ``reviews_used``; new reviews change the training's fingerprint (a retrain).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a model.config.TrainConfig, got {type(config).__name__}")
    out = Path(out)
    if workers is not None:
        check_int("workers", workers, 1)
    if reviews is not None and not Path(reviews).exists():
        raise UsageError(f"--reviews {reviews}: no reviews store there; give a cohort reviews.sqlite "
                         "(runs/_cohorts/<cohort>/reviews.sqlite) or a run folder")
    runfolder.claim_run_folder(out, "run", Path(data), force=force)
    info = ingest.ingest(data, out, workers=workers)
    _log(ingest.summarise(info, out))

    split_fp = split.stage_split(out, config.seed, fractions)
    _log(split.format_summary(out))
    reviewed = used = None
    if reviews is not None:
        reviewed, used = reviewed_training_labels(out, open_reviews(reviews), consensus or agreement.ConsensusRule())
    train_fp = _stage_train(out, split_fp, config, reviewed, used)
    if reviewed is None:
        score_fp = score.stage_score(out, train_fp, tta, use_context=use_context)
        report = evaluate.stage_evaluate(out, score_fp)
        extra = {"reviews_used": None} if "reviews_used" in store.read_meta(out) else {}  # an earlier --reviews run's
        store.update_meta(out, thresholds=report["thresholds"], source={"kind": "trained"}, **extra)
    else:
        labels = reviewed.table["reviewed_label"].to_numpy(np.int64)
        score_fp = score.stage_score(out, train_fp, tta, use_context=use_context, labels=labels,
                                     keep=reviewed.training_mask)
        summary = {k: used[k] for k in ("n_reviews", "max_id", "fingerprint", "rule", "rule_text", "counts")}
        report = evaluate.stage_evaluate(out, score_fp, reviewed=reviewed.table, reviewed_summary=summary)
        store.update_meta(out, thresholds=report["thresholds"], source={"kind": "trained"}, reviews_used=used)
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
    parser.add_argument("--reviews", type=Path, default=None, metavar="STORE",
                        help="train with reviewed labels from this review store (a cohort reviews.sqlite or a run "
                             "folder, meaning its cohort's store): flipped where the reviewers' consensus says "
                             "'label is wrong', unsure patches left out")
    parser.add_argument("--consensus", choices=list(agreement.CONSENSUS_RULES), default="majority",
                        help="when the reviewers' verdicts flip a label (with --reviews; default majority)")
    parser.add_argument("--min-reviewers", type=positive_int, default=1,
                        help="reviewers who must have taken a side before a label is flipped (with --reviews)")
    runfolder.add_force_argument(parser)


def run_command(args: argparse.Namespace) -> int:
    """`python -m pipeline run`: the whole pipeline into --out, then name the run folder."""
    config = TrainConfig.from_cli(args)
    if args.width is not None and config.width is None:
        _log(f"train: --width applies to the separable CNN only; ignored for --arch {config.arch}")
    out = args.out or Path(RUNS_DIR) / args.data.resolve().name
    rule = agreement.ConsensusRule(args.consensus, args.min_reviewers)
    run_pipeline(args.data, out, config, tta=args.tta, use_context=args.context, workers=args.workers,
                 force=args.force, reviews=args.reviews, consensus=rule)
    print(f"run folder: {out}  (open it with: make app, or python -m app)")
    return 0
