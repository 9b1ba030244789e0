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
from pipeline.errors import UsageError, check_int

# What a run folder may hold besides run.json: its artifacts, the app's reviews (and SQLite's side
# files), and the pipeline's hidden temporary and resume files (every one starts with a dot).
RUN_FILES = frozenset({store.RUN_META, store.MANIFEST, store.PATCHES, store.INGEST_REPORT, store.SPLIT,
                       store.MODEL, store.HISTORY, store.SCORES, store.EVALUATION, store.REGION_MASKS,
                       store.REVIEWS, f"{store.REVIEWS}-wal", f"{store.REVIEWS}-shm", f"{store.REVIEWS}-journal"})


def _log(msg: str) -> None:
    print(msg, flush=True)


def _load_model(run_dir: Path):
    import keras

    path = run_dir / store.MODEL
    if not path.exists():
        raise store.ArtifactError(f"{path} is missing; train it with `python -m pipeline run --out {run_dir}`.")
    return keras.models.load_model(path)


def _made_by(meta: dict) -> dict:
    """What made a run folder: the command, its data root and, for `score`, the trained run it used.

    Runs written before this was recorded are read from what they do record (the data root that
    ingest wrote, the source run that `score` wrote), so they can still be resumed.
    """
    if meta.get("made_by"):
        return meta["made_by"]
    return {"command": "score" if meta.get("source_run") else "run", "data_root": meta.get("data_root"),
            "source_run": meta.get("source_run")}


def _differences(found: dict, wanted: dict) -> list[str]:
    names = {"command": "made by `pipeline {}`", "data_root": "data {}", "source_run": "scored with the model of {}"}
    return [names[k].format(found.get(k)) for k in names
            if found.get(k) is not None and found.get(k) != wanted.get(k)]


def claim_run_folder(out: Path, command: str, data: Path, source_run: Path | None = None,
                     force: bool = False) -> None:
    """Make sure ``out`` is this command's own run folder before anything is written into it.

    A new or empty folder, or one that the same command made from the same data (and, for `score`,
    the same trained run), is this run's: it is resumed, its unchanged stages skipped. Anything else
    (another run's artifacts, or files the pipeline does not write, which may be the user's) is
    refused, naming the folder and the fix, so that no run ever overwrites another or the user's
    files. With ``force`` the folder is moved aside to ``<out>.replaced-<time>``, never deleted.
    Used by both `run` and `score`, so the rule is the same for both.
    """
    out, data = Path(out), Path(data)
    wanted = {"command": command, "data_root": str(data.resolve()),
              "source_run": str(Path(source_run).resolve()) if source_run else None}
    # Checked before the run folder is made: a mistyped --data leaves nothing behind.
    try:
        what = "" if data.is_dir() else ("is not a folder" if data.exists() else "does not exist")
    except OSError as exc:
        what = f"cannot be read ({exc.strerror or exc})"
    if what:
        raise FileNotFoundError(f"data folder {data} {what}; pass the folder that holds the patient "
                                f"folders (or {ingest.ARCHIVE_SUBDIR}/) with --data")
    # Never in the folder the inputs live in, even with --force: moving it aside would move them too.
    resolved = out.resolve()
    for what, path in (("the data folder", data), ("the trained run", source_run)):
        if path is not None and (Path(path).resolve() == resolved or resolved in Path(path).resolve().parents):
            raise UsageError(f"--out {out} holds {what} {path}; pass --out a new folder outside it.")
    problem = _folder_problem(out, wanted)
    if problem and not force:
        raise UsageError(f"{problem}: refusing to write into it (nothing was changed). Pass --out a new folder, "
                         f"or add --force to move {out} aside to {out.name}.replaced-<time> and start afresh there.")
    if problem:
        aside = _move_aside(out)
        _log(f"--force: {problem}; moved it aside to {aside} (nothing in it was deleted)")
    out.mkdir(parents=True, exist_ok=True)
    meta = store.read_meta(out)
    if not meta.get("created"):
        store.update_meta(out, created=dt.datetime.now().isoformat(timespec="seconds"), name=out.name)
    if meta.get("made_by") != wanted:
        store.update_meta(out, made_by=wanted)


def _folder_problem(out: Path, wanted: dict) -> str | None:
    """Why ``out`` is not this command's own run folder, or None when it is (or is new or empty)."""
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} is a file, not a folder"
    entries = sorted(e.name for e in out.iterdir())
    if not entries:
        return None
    if store.RUN_META not in entries:
        foreign = [n for n in entries if n not in RUN_FILES and not n.startswith(".")]
        if foreign or any(n in RUN_FILES for n in entries):
            shown = ", ".join(foreign[:3] or entries[:3]) + (" ..." if len(foreign or entries) > 3 else "")
            return f"--out {out} is not empty ({shown}) and is not a run folder (it has no {store.RUN_META})"
        return None  # only hidden leftovers of a run killed before it wrote run.json
    try:
        meta = store.read_meta(out)
    except store.ArtifactError as exc:
        return f"--out {out} has an unreadable {store.RUN_META} ({exc})"
    differences = _differences(_made_by(meta), wanted)
    if differences:
        return f"--out {out} holds another run ({'; '.join(differences)})"
    return None


def _move_aside(out: Path) -> Path:
    """Rename ``out`` to ``<out>.replaced-<time>`` (with a counter if taken) and return the new path."""
    out = out.resolve()
    if out == Path.cwd() or out in Path.cwd().parents:  # the new run would be written into the moved folder
        raise UsageError(f"--force cannot move {out} aside: it holds the current folder; pass --out a new folder.")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside, n = out.with_name(f"{out.name}.replaced-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = out.with_name(f"{out.name}.replaced-{stamp}-{n}")
    out.rename(aside)
    return aside


def check_run_settings(epochs: int, patience: int, batch_size: int, seed: int, width: int | None,
                       workers: int | None) -> None:
    """The run's numeric settings, checked before any work (the CLI checks them too, in argparse)."""
    check_int("epochs", epochs, 1)
    check_int("patience", patience, 0)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    if width is not None:
        check_int("width", width, 1)
    if workers is not None:
        check_int("workers", workers, 1)


def _stage_split(run_dir: Path, seed: int, fractions) -> str:
    ingest_fp = store.read_meta(run_dir)["stages"]["ingest"]["fingerprint"]
    fp = store.fingerprint(ingest_fp, seed, list(fractions))
    if not store.stage_done(run_dir, "split", fp, store.SPLIT):
        manifest = store.read_manifest(run_dir)
        try:
            assignment = split.split_patients(manifest["patient_id"], manifest["label"], fractions, seed)
        except ValueError as exc:  # too few patients or bad fractions: the data's or the caller's, not a bug
            raise UsageError(f"cannot split {run_dir / store.MANIFEST} by patient: {exc}") from None
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
                 use_context: bool = True, width: int | None = None, force: bool = False) -> dict:
    """Ingest ``data``, split, train, score and evaluate into the run folder ``out``.

    ``use_context`` adds the neighbourhood-context stage (pipeline.context) to the patch scores;
    ``width`` sets the separable CNN's width (None: model.architectures.DEFAULT_WIDTH). ``out``
    must be new, empty or this same run's folder (see claim_run_folder; ``force`` moves another
    aside).
    """
    from model.architectures import ARCHITECTURES, model_width
    from pipeline import train  # TensorFlow is imported only when a model is needed

    out = Path(out)
    check_run_settings(epochs, patience, batch_size, seed, width, workers)
    if arch not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    claim_run_folder(out, "run", Path(data), force=force)
    if width is not None and model_width(arch, width) is None:
        _log(f"train: --width applies to the separable CNN only; ignored for --arch {arch}")
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
                             batch_size=batch_size, patience=patience, width=width, fingerprint=train_fp)
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


def score_new_data(source_run: Path | str, data: Path | str, out: Path | str, workers: int | None = None,
                   force: bool = False) -> dict:
    """Score new patient folders with a trained run's model, calibration and thresholds.

    Every new patient goes to the 'test' split: the model has never seen them. The new run
    carries the source run's calibration, neighbourhood-context weights and threshold presets, so
    its numbers mean exactly what they mean on the source run's own test split. ``out`` must be
    new, empty or this same scoring's folder (see claim_run_folder; ``force`` moves another aside).
    """
    source_run, out = Path(source_run), Path(out)
    if workers is not None:
        check_int("workers", workers, 1)
    src_meta = store.read_meta(source_run)
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
    claim_run_folder(out, "score", Path(data), source_run=source_run, force=force)
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
