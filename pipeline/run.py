"""The pipeline's stages in order, each skipped when its inputs have not changed since it finished.

    raw patches -> ingest (manifest + patch store) -> split -> train -> score (+calibrate) -> evaluate

Each stage records a fingerprint of its inputs (the previous stage's fingerprint plus its own
settings) in run.json, so a re-run with the same inputs does nothing and a changed setting redoes
only the stages after it.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np

from pipeline import context, evaluate, ingest, score, split, store


def _log(msg: str) -> None:
    print(msg, flush=True)


def _load_model(run_dir: Path):
    import keras

    path = run_dir / store.MODEL
    if not path.exists():
        raise store.ArtifactError(f"{path} is missing; train it with `python -m pipeline run --out {run_dir}`.")
    return keras.models.load_model(path)


def _stage_split(run_dir: Path, seed: int, fractions) -> str:
    ingest_fp = store.read_meta(run_dir)["stages"]["ingest"]["fingerprint"]
    fp = store.fingerprint(ingest_fp, seed, list(fractions))
    if not store.stage_done(run_dir, "split", fp, store.SPLIT):
        manifest = store.read_manifest(run_dir)
        assignment = split.split_patients(manifest["patient_id"], manifest["label"], fractions, seed)
        store.write_split(run_dir, assignment, seed, fractions)
        store.mark_stage(run_dir, "split", fp)
    return fp


def final_scores(raw, manifest, val, calibration: dict | None = None, use_context: bool = True,
                 context_params: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict, dict | None]:
    """The model's raw P(IDC) of every manifest row -> (final prob, patch-alone prob, calibration, context).

    Calibration and context are fitted on the rows ``val`` (mask or indices) unless given; with no
    context (off, or nothing to fit) the final score is the patch alone and the context is None.
    """
    labels = manifest["label"].to_numpy()
    if calibration is None:
        calibration = score.fit_calibration(raw[val], labels[val])
    prob_patch = score.apply_calibration(raw, calibration)
    where = (manifest["patient_id"].to_numpy(), manifest["x"].to_numpy(), manifest["y"].to_numpy())
    if use_context and context_params is None:
        context_params = context.fit_context(*(a[val] for a in where), score.logit(raw[val]), labels[val])
        if context_params is None:
            _log("context: validation has a single class, nothing to fit; scores are the patch alone")
    if use_context and context_params:
        return context.apply_context(context_params, *where, score.logit(raw)), prob_patch, calibration, context_params
    return prob_patch, prob_patch, calibration, None


def _stage_score(run_dir: Path, upstream_fp: str, tta: bool, calibration: dict | None = None,
                 use_context: bool = True, context_params: dict | None = None) -> str:
    """Score every patch; fit the calibration and the neighbourhood context on validation unless given.

    Writes three probabilities per patch: the model's raw output, the patch alone calibrated, and
    the final score with neighbourhood context (the same as the patch alone when context is off).
    """
    fp = store.fingerprint(upstream_fp, tta, calibration, use_context and context.VERSION, context_params)
    if store.stage_done(run_dir, "score", fp, store.SCORES):
        return fp
    model = _load_model(run_dir)
    patches = store.read_patches(run_dir)
    raw = score.predict_probabilities(model, patches, tta=tta, progress=True)
    manifest = store.read_manifest(run_dir)
    val = (manifest["patient_id"].map(store.read_split(run_dir)["patients"]) == "val").to_numpy()
    prob, prob_patch, calibration, context_params = final_scores(
        raw, manifest, val, calibration=calibration, use_context=use_context, context_params=context_params)
    store.write_scores(run_dir, prob, raw, prob_patch)
    ingest_fp = store.read_meta(run_dir)["stages"]["ingest"]["fingerprint"]
    store.update_meta(run_dir, calibration=calibration, context=context_params, tta=tta)
    store.mark_stage(run_dir, "score", fp, manifest=ingest_fp)
    return fp


def _stage_evaluate(run_dir: Path, upstream_fp: str, thresholds: dict | None = None) -> dict:
    fp = store.fingerprint(upstream_fp, thresholds)
    if store.stage_done(run_dir, "evaluate", fp, store.EVALUATION):
        return store.read_json(run_dir / store.EVALUATION)
    run = store.load_run(run_dir)
    mean_rgb = np.concatenate([np.asarray(run.patches[s:s + 65536], np.float32).mean(axis=(1, 2))
                               for s in range(0, len(run.patches), 65536)])
    report = evaluate.evaluate(run.table, thresholds, mean_rgb=mean_rgb, context=run.meta.get("context"))
    report["synthetic"] = run.synthetic
    store.write_json(run_dir / store.EVALUATION, report)
    store.mark_stage(run_dir, "evaluate", fp)
    return report


def run_pipeline(data: Path | str, out: Path | str, arch: str = "separable", epochs: int = 30, seed: int = 0,
                 fractions=split.DEFAULT_FRACTIONS, tta: bool = False, workers: int | None = None,
                 time_budget_s: float | None = None, batch_size: int = 128, patience: int = 8,
                 use_context: bool = True, width: int | None = None) -> dict:
    """Ingest ``data``, split, train, score and evaluate into the run folder ``out``.

    ``use_context`` adds the neighbourhood-context stage (pipeline.context) to the patch scores;
    ``width`` sets the separable CNN's width (None: model.architectures.DEFAULT_WIDTH).
    """
    from model.architectures import model_width
    from pipeline import train  # TensorFlow is imported only when a model is needed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not store.read_meta(out).get("created"):
        store.update_meta(out, created=dt.datetime.now().isoformat(timespec="seconds"), name=out.name)
    info = ingest.ingest(data, out, workers=workers)
    _log(ingest.summarise(info, out))

    split_fp = _stage_split(out, seed, fractions)
    _log(evaluate_split_summary(out))

    width = model_width(arch, width)
    train_settings = {"arch": arch, "epochs": epochs, "seed": seed, "time_budget_s": time_budget_s,
                      "batch_size": batch_size, "patience": patience, "width": width}
    train_fp = store.fingerprint(split_fp, train_settings)
    if store.stage_done(out, "train", train_fp, store.MODEL):
        _log("train: unchanged inputs and settings, reusing model.keras")
    else:
        _log(f"train: {arch}, up to {epochs} epochs (early stopping on validation PR-AUC)")
        result = train.train(out, arch=arch, epochs=epochs, seed=seed, time_budget_s=time_budget_s,
                             batch_size=batch_size, patience=patience, width=width)
        store.update_meta(out, arch=arch, cam_layer=result["cam_layer"], seed=seed, train=result)
        store.mark_stage(out, "train", train_fp)
        _log(f"train: best epoch {result['best_epoch']}/{result['epochs_run']}, val PR-AUC "
             f"{result['best_val_pr_auc']:.3f}, {result['train_seconds']:.0f} s, "
             f"{result['train_patches_per_s']:,.0f} patches/s")

    score_fp = _stage_score(out, train_fp, tta, use_context=use_context)
    report = _stage_evaluate(out, score_fp)
    store.update_meta(out, thresholds=report["thresholds"])
    _log(evaluate.format_report(report))
    return report


def evaluate_split_summary(run_dir: Path) -> str:
    manifest = store.read_manifest(run_dir)
    table = manifest.assign(split=manifest["patient_id"].map(store.read_split(run_dir)["patients"]))
    summary = split.split_summary(table)
    return "split by patient:\n" + "\n".join(
        f"  {r.Index:<6}{r.patients:>5} patients {r.patches:>9,} patches  {r.idc_fraction:.1%} IDC"
        for r in summary.itertuples())


def score_new_data(source_run: Path | str, data: Path | str, out: Path | str, workers: int | None = None) -> dict:
    """Score new patient folders with a trained run's model, calibration and thresholds.

    Every new patient goes to the 'test' split: the model has never seen them. The new run
    carries the source run's calibration, neighbourhood-context weights and threshold presets, so
    its numbers mean exactly what they mean on the source run's own test split.
    """
    source_run, out = Path(source_run), Path(out)
    src_meta = store.read_meta(source_run)
    if "thresholds" not in src_meta or not (source_run / store.MODEL).exists():
        raise store.ArtifactError(
            f"{source_run} is not a finished, trained run (no model.keras or thresholds in run.json); "
            "train one first with `python -m pipeline run`."
        )
    if source_run.resolve() == out.resolve():
        raise ValueError("--out must be a new folder, not the trained run itself")
    if src_meta.get("context"):  # before any ingest work: old weights cannot be carried over
        try:
            context.check_params(src_meta["context"])
        except ValueError as exc:
            raise store.ArtifactError(f"{source_run / store.RUN_META}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    if not store.read_meta(out).get("created"):
        store.update_meta(out, created=dt.datetime.now().isoformat(timespec="seconds"), name=out.name)
    info = ingest.ingest(data, out, workers=workers)
    _log(ingest.summarise(info, out))
    manifest = store.read_manifest(out)
    store.write_split(out, {pid: "test" for pid in manifest["patient_id"].unique()}, seed=None, fractions=(0, 0, 1))

    model_fp = store.fingerprint(src_meta["stages"]["train"]["fingerprint"], info["fingerprint"])
    if not store.stage_done(out, "train", model_fp, store.MODEL):
        with store.atomic_path(out / store.MODEL) as tmp:
            shutil.copyfile(source_run / store.MODEL, tmp)
        store.mark_stage(out, "train", model_fp, source_run=str(source_run.resolve()))
    store.update_meta(out, arch=src_meta.get("arch"), cam_layer=src_meta.get("cam_layer"),
                      source_run=str(source_run.resolve()))
    # The source run's calibration and context weights are carried over, never refitted: new
    # patients have no labels to fit on, and refitting would change what a threshold means.
    score_fp = _stage_score(out, model_fp, bool(src_meta.get("tta")),
                            calibration=src_meta.get("calibration", score.IDENTITY),
                            use_context=bool(src_meta.get("context")), context_params=src_meta.get("context"))
    report = _stage_evaluate(out, score_fp, thresholds=src_meta["thresholds"])
    store.update_meta(out, thresholds=report["thresholds"])
    _log(evaluate.format_report(report))
    return report
