"""Score patches with a trained model, and calibrate the probabilities on validation.

Scoring streams the memory-mapped store in chunks through model.predict (one compiled function that
takes uint8), so it runs at full-dataset scale in bounded memory. Temperature
scaling (Guo et al. 2017, plus a bias, see fit_calibration) maps the model's logit through one
affine function fitted on validation, which makes probabilities honest without moving the ranking.

This module is also the score stage of a run (``stage_score``: raw scores, calibration and the
neighbourhood context, pipeline.context) and the `score` command: ``score_new_data`` (``--run``: new
patients scored with a trained run's model, calibration, context weights and thresholds) and
``score_user_model`` (``--model``: a user's own Keras model, wrapped by model/user_model.py, on a
patient split of the data, calibrated and thresholded on its val split, measured on test).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from pipeline import context, evaluate, ingest, runfolder, split, store
from model.config import TrainConfig
from pipeline.errors import UsageError, check_int, non_negative_int, positive_int
from pipeline.logistic import fit_logistic, logit, sigmoid
from pipeline.names import PATCH_SIZE
from pipeline.store import TEST, VAL

IDENTITY = {"temperature": 1.0, "bias": 0.0}
DEFAULT_SEED = TrainConfig.seed  # `score --model`'s patient split seed when none is given: the training default


def apply_calibration(prob: np.ndarray, calibration: dict) -> np.ndarray:
    """Calibrated probabilities sigmoid(logit(p) / T + b)."""
    z = logit(prob) / calibration["temperature"] + calibration["bias"]
    return sigmoid(z).astype(np.float32)


def fit_calibration(prob: np.ndarray, labels: np.ndarray) -> dict:
    """Temperature T and bias b minimising validation log-loss of sigmoid(logit / T + b).

    Temperature alone (Guo et al. 2017) fixes over-confidence; the bias is needed too because
    training with class weights shifts every logit towards IDC (the model learns a 50% prior
    while about 28% of patches are IDC). Both keep the ranking, so ROC/PR-AUC are unchanged.
    Returns the identity when validation has a single class.
    """
    y = np.asarray(labels, np.float64)
    if len(y) == 0 or y.min() == y.max():
        return dict(IDENTITY)
    # One feature, the logit, with weight 1/T kept positive: the parameters are (log T, b).
    params, _, converged = fit_logistic(logit(prob)[:, None], y, x0=np.zeros(2), log_weights=True,
                                        bounds=[(np.log(0.05), np.log(20.0)), (-10, 10)])
    if not converged:
        return dict(IDENTITY)
    return {"temperature": float(np.exp(params[0])), "bias": float(params[1])}


# --------------------------------------------------------------------------- the score stage
def final_scores(raw, manifest, val, calibration: dict | None = None, use_context: bool = True,
                 context_params: dict | None = None,
                 labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict, dict | None]:
    """The model's raw P(IDC) of every manifest row -> (final prob, patch-alone prob, calibration, context).

    Calibration and context are fitted on the rows ``val`` (mask or indices) unless given; with no
    context (off, or nothing to fit) the final score is the patch alone and the context is None.
    ``labels`` (row-aligned with the manifest) replaces the dataset labels in those fits (a run
    trained with reviewed labels passes them, with its unsure patches left out of ``val``).
    """
    labels = manifest["label"].to_numpy() if labels is None else np.asarray(labels)
    if calibration is None:
        calibration = fit_calibration(raw[val], labels[val])
    prob_patch = apply_calibration(raw, calibration)
    where = (manifest["patient_id"].to_numpy(), manifest["x"].to_numpy(), manifest["y"].to_numpy())
    if use_context and context_params is None:
        context_params = context.fit_context(*(a[val] for a in where), logit(raw[val]), labels[val])
        if context_params is None:
            print("context: validation has a single class, nothing to fit; scores are the patch alone", flush=True)
    if use_context and context_params:
        return context.apply_context(context_params, *where, logit(raw)), prob_patch, calibration, context_params
    return prob_patch, prob_patch, calibration, None


def stage_score(run_dir: Path, upstream_fp: str, tta: bool, calibration: dict | None = None,
                use_context: bool = True, context_params: dict | None = None, labels: np.ndarray | None = None,
                keep: np.ndarray | None = None) -> str:
    """The score stage: score every patch; fit the calibration and the context on validation unless given.

    Writes three probabilities per patch: the model's raw output, the patch alone calibrated, and
    the final score with neighbourhood context (the same as the patch alone when context is off).
    Skipped when its inputs are unchanged; returns its fingerprint. ``labels`` and ``keep``
    (row-aligned with the manifest; a run trained with reviewed labels): the labels to fit on and the
    validation rows to fit on (the unsure ones left out); the upstream fingerprint covers them.
    """
    fp = store.fingerprint(upstream_fp, tta, calibration, use_context and context.VERSION, context_params)
    if store.stage_done(run_dir, "score", fp, store.SCORES):
        return fp
    model = store.read_model(run_dir)
    patches = store.read_patches(run_dir)
    from model.predict import predict_probabilities

    raw = predict_probabilities(model, patches, tta=tta, progress=True)
    manifest = store.read_manifest(run_dir)
    val = (manifest["patient_id"].map(store.read_split(run_dir)["patients"]) == VAL).to_numpy()
    if keep is not None:
        val = val & np.asarray(keep, bool)
    prob, prob_patch, calibration, context_params = final_scores(
        raw, manifest, val, calibration=calibration, use_context=use_context, context_params=context_params,
        labels=labels)
    store.write_scores(run_dir, prob, raw, prob_patch)
    ingest_fp = store.read_meta(run_dir)["stages"]["ingest"]["fingerprint"]
    # One write of run.json: the settings and the stage's record together (as mark_stage records it).
    store.update_meta(run_dir, calibration=calibration, context=context_params, tta=tta,
                      stages={"score": {"fingerprint": fp, "manifest": ingest_fp}})
    return fp


# --------------------------------------------------------------------------- the `score` command
def score_new_data(source_run: Path | str, data: Path | str | None, out: Path | str, workers: int | None = None,
                   force: bool = False) -> dict:
    """Score new patient folders with a trained run's model, calibration and thresholds.

    ``data`` None: ``out`` is an ingest-slides run folder (pipeline/ingest_slides.py), scored in place.

    Every new patient goes to the test split: the model has never seen them. The new run carries
    the source run's calibration, neighbourhood-context weights and threshold presets, so its
    numbers mean exactly what they mean on the source run's own test split. ``out`` must be new,
    empty or this same scoring's folder (see runfolder.claim_run_folder; ``force`` moves another aside).
    """
    source_run, out = Path(source_run), Path(out)
    if workers is not None:
        check_int("workers", workers, 1)
    src_meta = store.read_meta(source_run)
    if store.provenance(src_meta)["kind"] == "imported":
        raise store.ArtifactError(f"{source_run} holds imported scores ({store.cam_unavailable(src_meta)}), so it "
                                  "cannot score new patients; import their scores with `python -m pipeline "
                                  "import-scores`, or score them with the model itself: `score --model FILE.keras`.")
    if "thresholds" not in src_meta or not (source_run / store.MODEL).exists():
        raise store.ArtifactError(
            f"{source_run} is not a finished, trained run (no model.keras or thresholds in run.json); "
            "train one first with `python -m pipeline run`."
        )
    if source_run.resolve() == out.resolve():
        raise UsageError(f"--out {out} is the trained run itself; pass --out a new folder for the scored data")
    if src_meta.get("context"):  # before any ingest work: old weights cannot be carried over
        try:
            context.check_params(src_meta["context"])
        except ValueError as exc:
            raise store.ArtifactError(f"{source_run / store.RUN_META}: {exc}") from None
    if data is None:
        info = _slides_ingest(out)
        _claim_in_place(out, source_run, force)
    else:
        runfolder.claim_run_folder(out, "score", Path(data), source_run=source_run, force=force)
        info = ingest.ingest(data, out, workers=workers)
        print(ingest.summarise(info, out), flush=True)
    manifest = store.read_manifest(out)
    store.write_split(out, {pid: TEST for pid in manifest["patient_id"].unique()}, seed=None, fractions=(0, 0, 1))

    model_fp = store.fingerprint(src_meta["stages"]["train"]["fingerprint"], info["fingerprint"])
    if not store.stage_done(out, "train", model_fp, store.MODEL):
        with store.atomic_path(out / store.MODEL) as tmp:
            shutil.copyfile(source_run / store.MODEL, tmp)
        store.mark_stage(out, "train", model_fp, source_run=str(source_run.resolve()))
    store.update_meta(out, arch=src_meta.get("arch"), cam_layer=src_meta.get("cam_layer"),
                      source_run=str(source_run.resolve()),
                      source={"kind": "scored_with_run", "run": str(source_run.resolve()),
                              "run_source": store.provenance(src_meta)})
    # The source run's calibration and context weights are carried over, never refitted: new
    # patients have no labels to fit on, and refitting would change what a threshold means.
    score_fp = stage_score(out, model_fp, bool(src_meta.get("tta")),
                           calibration=src_meta.get("calibration", IDENTITY),
                           use_context=bool(src_meta.get("context")), context_params=src_meta.get("context"))
    n_unlabelled = int((manifest["label"] < 0).sum())
    if n_unlabelled:  # slides without annotations: scored, nothing to measure against
        return _unlabelled_report(out, score_fp, src_meta["thresholds"], source_run, n_unlabelled)
    report = evaluate.stage_evaluate(out, score_fp, thresholds=src_meta["thresholds"])
    store.update_meta(out, thresholds=report["thresholds"])
    print(evaluate.format_report(report), flush=True)
    return report


def _slides_ingest(out: Path) -> dict:
    """The ingest record of an ingest-slides run folder, which `score --run` without --data scores in place."""
    meta = store.read_meta(out) if out.is_dir() else {}
    if (meta.get("made_by") or {}).get("command") != "ingest-slides" or not store.stage_done(
            out, "ingest", (meta.get("stages", {}).get("ingest") or {}).get("fingerprint"), store.MANIFEST,
            store.PATCHES):
        raise UsageError(f"--out {out} is not a finished ingest-slides run folder: pass --data DIR (a dataset folder "
                         "to ingest), or tile the slides first with `python -m pipeline ingest-slides --slides ... "
                         f"--out {out}`")
    return meta["stages"]["ingest"]


# What scoring writes into a slides run folder scored in place (the rest is the slides' ingest).
SCORING_FILES = (store.MODEL, store.SCORES, store.EVALUATION, store.SPLIT)


def _claim_in_place(out: Path, source_run: Path, force: bool) -> None:
    """A slides run folder scored in place belongs to the trained run that scored it: scoring it with another
    run is refused (its scores and evaluation would be replaced), or with ``force`` the earlier scoring is moved
    aside to ``<out>.replaced-<time>`` (a run folder of its own, the ingest hard-linked in), never deleted."""
    meta = store.read_meta(out)
    previous, this = meta.get("source_run"), str(source_run.resolve())
    if not previous or previous == this or not any((out / f).exists() for f in SCORING_FILES):
        return
    problem = f"--out {out} was scored in place by another run ({previous}; this one is {this})"
    if not force:
        raise UsageError(f"{problem}: refusing to replace its scores and evaluation (nothing was changed). Score "
                         f"it with {previous} again, or add --force to move that scoring aside to "
                         f"{out.name}.replaced-<time> (the slides stay in {out}) and score {out} afresh.")
    aside = runfolder.aside_path(out)
    aside.mkdir()
    shutil.copy2(out / store.RUN_META, aside / store.RUN_META)
    for name in (store.MANIFEST, store.PATCHES, store.INGEST_REPORT, store.TISSUE_MASKS, store.REGION_MASKS):
        src = out / name
        if src.is_dir():  # the ingest is shared, not moved: hard links (a copy on another file system)
            shutil.copytree(src, aside / name, copy_function=runfolder.link_or_copy)
        elif src.exists():
            runfolder.link_or_copy(src, aside / name)
    for name in SCORING_FILES:
        if (out / name).exists():
            (out / name).rename(aside / name)
    store.update_meta(out, source_run=this)  # the folder is this scoring's now, even if it stops half-way
    print(f"--force: {problem}; moved its scores, model, split and evaluation aside to {aside} (with its ingest "
          "linked in, so it opens as before; nothing was deleted)", flush=True)


def _unlabelled_report(out: Path, score_fp: str, thresholds: dict, source_run: Path, n_unlabelled: int) -> dict:
    """evaluation.json for scores without labels: the trained run's thresholds and why there are no metrics."""
    fp = store.fingerprint(score_fp, thresholds, "unlabelled")
    report = {"thresholds": thresholds, "thresholds_chosen_on": {"split": f"val of the trained run {source_run.name}"},
              "splits": {}, "synthetic": False, "unlabelled": n_unlabelled,
              "warnings": [f"{n_unlabelled:,} patches have no label (slides without annotations): no metrics"]}
    if not store.stage_done(out, "evaluate", fp, store.EVALUATION):
        store.write_json(out / store.EVALUATION, report)
        store.mark_stage(out, "evaluate", fp)
    store.update_meta(out, thresholds=thresholds)
    print(f"score: {n_unlabelled:,} patches are unlabelled (slides without annotations): scored with the trained "
          f"run's thresholds, no metrics", flush=True)
    return report


# --------------------------------------------------------------------------- `score --model`: a user's model
CHECK_PATCHES = 32  # patches the wrapped model is checked on before scoring


def score_user_model(model_file: Path | str, data: Path | str, out: Path | str, *, input_range: str = "0-255",
                     output: str = "probability", idc_index: int = -1, cam_layer: str | None = None,
                     use_context: bool = False, tta: bool = False, seed: int = DEFAULT_SEED, workers: int | None = None,
                     force: bool = False) -> dict:
    """Score ``data`` with a user's own Keras model: a run folder like a trained one, Grad-CAM included.

    The model is checked and wrapped by model.user_model (its input range and output kind are the
    user's declaration, checked on a few real patches); the data is split by patient like a
    trained run (``seed``), so calibration, the optional neighbourhood context and the threshold
    presets are fitted on val and measured on test. The wrapped model is saved as the run's
    model.keras, so the app's Grad-CAM reads it (run.json's cam_layer), and the raw output is kept
    as prob_uncalibrated. ``out`` follows runfolder.claim_run_folder (the model file is part of
    what made it).
    """
    from model.user_model import UserModelError, check_on_patches, load_user_model  # imports TensorFlow

    model_file, out = Path(model_file), Path(out)
    if workers is not None:
        check_int("workers", workers, 1)
    try:  # before anything is written: a file that does not fit leaves nothing behind
        wrapped = load_user_model(model_file, PATCH_SIZE, input_range=input_range, output=output,
                                  idc_index=idc_index, cam_layer=cam_layer)
    except UserModelError as exc:
        raise UsageError(str(exc)) from None
    sha = store.file_sha256(model_file)
    runfolder.claim_run_folder(out, "score", Path(data), force=force, model_file=model_file)
    info = ingest.ingest(data, out, workers=workers)
    print(ingest.summarise(info, out), flush=True)
    split_fp = split.stage_split(out, seed)
    print(split.format_summary(out), flush=True)
    print(f"score: {model_file.name} scores every patch; calibration{', context' * use_context} and the threshold "
          "presets are fitted on the val split and measured on the test split (if the model was trained on any "
          "of these patients, its figures on them are optimistic)", flush=True)

    patches = store.read_patches(out)
    rows = np.unique(np.linspace(0, len(patches) - 1, min(CHECK_PATCHES, len(patches))).astype(int))
    try:
        for warning in check_on_patches(wrapped, np.asarray(patches[rows])):
            print(f"score: WARNING: {warning}", flush=True)
    except UserModelError as exc:
        raise UsageError(str(exc)) from None
    print(f"score: {model_file.name} checked on {len(rows)} patches (input {input_range}, output {output}); "
          + (f"Grad-CAM layer {wrapped.cam_layer}" if wrapped.cam_layer else f"Grad-CAM unavailable: "
             f"{wrapped.cam_unavailable}"), flush=True)

    described = wrapped.describe()
    model_fp = store.fingerprint(split_fp, sha, described)
    if not store.stage_done(out, "train", model_fp, store.MODEL):
        with store.atomic_path(out / store.MODEL, suffix=".keras") as tmp:
            wrapped.model.save(tmp)
        store.mark_stage(out, "train", model_fp, model_file=str(model_file.resolve()))
    source = {"kind": "user_model", "file": str(model_file.resolve()), "sha256": sha, **described}
    store.update_meta(out, arch=f"user model {model_file.name}", cam_layer=wrapped.cam_layer, source=source,
                      seed=seed)
    score_fp = stage_score(out, model_fp, tta, use_context=use_context)
    report = evaluate.stage_evaluate(out, score_fp)
    store.update_meta(out, thresholds=report["thresholds"])
    print(evaluate.format_report(report), flush=True)
    return report


# --------------------------------------------------------------------------- the `score` command
MODEL_ONLY = ("input_range", "output", "idc_index", "cam_layer", "context", "tta", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `score` command's options: --run (a trained run's model) or --model (a user's Keras model)."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", type=Path, help="the trained run folder whose model, calibration and thresholds "
                                                "score the new patients")
    which.add_argument("--model", type=Path,
                       help="a user's own Keras model (.keras; input 50x50x3): the data is split by patient, "
                            "calibrated and thresholded on val, measured on test")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset root with the patients to score (with --run it may be left out when --out is an "
                             "ingest-slides run folder: its slides are scored in place)")
    parser.add_argument("--out", type=Path, required=True, help="new run folder to write")
    parser.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    user = parser.add_argument_group("with --model")
    user.add_argument("--input-range", choices=("0-255", "0-1", "-1-1"), default=None,
                      help="the pixel range the model expects (default 0-255; the pipeline rescales to it)")
    user.add_argument("--output", choices=("probability", "logit"), default=None,
                      help="what the model outputs (default probability: a sigmoid unit or a 2-class softmax)")
    user.add_argument("--idc-index", type=int, choices=(-1, 0, 1), default=None,
                      help="the output column that is IDC, for a two-class output (default -1, the last)")
    user.add_argument("--cam-layer", default=None,
                      help="the layer Grad-CAM reads (default: the last Conv2D/SeparableConv2D/DepthwiseConv2D)")
    user.add_argument("--context", action="store_true", default=None,
                      help="add the neighbourhood context (pipeline.context), fitted on val (default: off)")
    user.add_argument("--tta", action="store_true", default=None, help="score with 8-fold dihedral TTA")
    user.add_argument("--seed", type=non_negative_int, default=None,
                      help=f"seed of the patient split (default {DEFAULT_SEED})")
    runfolder.add_force_argument(parser)


def run_command(args: argparse.Namespace) -> int:
    """`python -m pipeline score`: score the patients with --run or --model, then name the run folder."""
    if args.run is not None:
        given = [f"--{k.replace('_', '-')}" for k in MODEL_ONLY if getattr(args, k) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} apply to --model only; with --run the trained run's own "
                             "settings are used")
        score_new_data(args.run, args.data, args.out, workers=args.workers, force=args.force)
    elif args.data is None:
        raise UsageError("--model needs --data, the dataset root to score")
    else:
        score_user_model(args.model, args.data, args.out, input_range=args.input_range or "0-255",
                         output=args.output or "probability",
                         idc_index=-1 if args.idc_index is None else args.idc_index, cam_layer=args.cam_layer,
                         use_context=bool(args.context), tta=bool(args.tta), seed=DEFAULT_SEED if args.seed is None else args.seed,
                         workers=args.workers, force=args.force)
    print(f"run folder: {args.out}")
    return 0
