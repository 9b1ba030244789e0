"""The train stage: a run's training patients -> model.keras and history.json, resumable.

The network and how it is trained are model/'s (model.fit: the fit loop, early stopping on
validation PR-AUC, the time budget); this stage reads the run's manifest, split and patches through
pipeline.store, hands model.fit a ``TrainConfig``, and keeps the run folder's files.

Resumable: after every epoch (model.fit's ``on_epoch_end``) the weights and optimizer state, the
best model so far and a record (``RESUME``: the training's fingerprint, epochs done, history, best
epoch) are written atomically into the run folder, so an interrupted training continues from its
last finished epoch, and only a training with the same fingerprint (data, split and settings) ever
continues it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from model.config import TrainConfig
from model.fit import FitState
from pipeline import store
from pipeline.errors import UsageError
from pipeline.names import PATCH_SIZE
from pipeline.store import TRAIN, VAL

RESUME = ".train_resume.json"  # the record; the files in BACKUP_DIR are used only as it names them
BACKUP_DIR = ".train_backup"  # epoch-NNNN.weights.h5 (last epoch's weights and optimizer state), best-NNNN.keras
# Written by earlier versions (Keras' ModelCheckpoint and CSVLogger); only ever removed now.
BEST = ".model_best.keras"
HISTORY_CSV = ".history.csv"


def _discard_resume_state(run_dir: Path, why: str) -> None:
    """Remove an interrupted training's leftovers, saying which file made them unusable and why."""
    print(f"train: {why}; discarding the interrupted training's resume state and starting from epoch 1",
          flush=True)
    for name in (RESUME, BEST, HISTORY_CSV):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)


def _describe(settings) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) if isinstance(settings, dict) else "unknown"


def _resume_state(run_dir: Path, fingerprint: str, config: TrainConfig) -> dict | None:
    """The interrupted training's record if a training fingerprinted ``fingerprint`` can resume it.

    Returns the record with ``fit_state`` (model.fit.FitState), ``weights_path`` and ``best_path``
    added. Anything else found (state of other settings, an unreadable record, files of an older
    version without a record) is discarded with a message naming the file: resuming it would either
    crash or, worse, quietly continue a different model under this run's settings.
    """
    record = run_dir / RESUME
    leftovers = [n for n in (RESUME, BACKUP_DIR, BEST, HISTORY_CSV) if (run_dir / n).exists()]
    if not leftovers:
        return None
    if not record.exists():
        found = " and ".join(str(run_dir / n) for n in leftovers)
        _discard_resume_state(run_dir, f"{found}: no {RESUME} beside them says which training wrote them "
                                       "(left by a kill before the first epoch ended, or by an older version)")
        return None
    try:
        state = json.loads(record.read_text())
        done = state["epochs_done"]
        history, best_epoch = state["history"], state["best_epoch"]
        if not (isinstance(done, int) and 0 < done and isinstance(history, dict)
                and all(len(v) == done for v in history.values()) and 0 <= best_epoch < done):
            raise ValueError("inconsistent epoch counts")
        weights, best = run_dir / BACKUP_DIR / state["weights"], run_dir / BACKUP_DIR / state["best"]
        fit_state = FitState(done, history, best_epoch, state["best_val_pr_auc"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _discard_resume_state(run_dir, f"{record} is unreadable ({type(exc).__name__}: {exc})")
        return None
    if state.get("fingerprint") != fingerprint:
        _discard_resume_state(run_dir, f"{record} belongs to a training with other settings or data "
                                       f"({_describe(state.get('settings'))}; this one: {_describe(config.as_dict())})")
        return None
    for needed in (weights, best):
        if not needed.is_file():
            _discard_resume_state(run_dir, f"{needed} is missing although {record} needs it")
            return None
    return state | {"fit_state": fit_state, "weights_path": weights, "best_path": best}


def _save_epoch(run_dir: Path, record: dict, model, state: FitState, improved: bool) -> None:
    """Keep one finished epoch: the best model (if this epoch is the best), the weights, then the record.

    Each file goes under a name of its own in BACKUP_DIR, then ``RESUME`` names them, each renamed
    into place complete; only then are the files of the previous record removed. A kill at any
    moment leaves a record and the files it names, so a resumed training continues from the last
    finished epoch with its history, its best model and score and its early-stopping count: it
    cannot tell it was interrupted. ``record`` (fingerprint, settings, file names) is updated in place.
    """
    backup = run_dir / BACKUP_DIR
    backup.mkdir(exist_ok=True)
    old = {record.get("weights"), record.get("best")}
    if improved:
        record["best"] = f"best-{state.best_epoch + 1:04d}.keras"
        with store.atomic_path(backup / record["best"], suffix=".keras") as tmp:
            model.save(tmp)
    record["weights"] = f"epoch-{state.epochs_done:04d}.weights.h5"
    with store.atomic_path(backup / record["weights"], suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    store.write_json(run_dir / RESUME, {
        "fingerprint": record["fingerprint"], "settings": record["settings"], "epochs_done": state.epochs_done,
        "weights": record["weights"], "best": record["best"], "best_epoch": state.best_epoch,
        "best_val_pr_auc": state.best_val_pr_auc, "history": state.history})
    for name in old - {record["weights"], record["best"], None}:  # only now are they unneeded
        (backup / name).unlink(missing_ok=True)


def _fit_rows(run_dir: Path):
    """(manifest, split assignment, labels, patches, train rows, validation rows) of the run."""
    manifest = store.read_manifest(run_dir)
    split = store.read_split(run_dir)["patients"]
    which = manifest["patient_id"].map(split).to_numpy()
    labels = manifest["label"].to_numpy(np.int64)
    patches = store.read_patches(run_dir)
    tr, va = np.flatnonzero(which == TRAIN), np.flatnonzero(which == VAL)
    if len(tr) == 0 or len(va) == 0:
        raise UsageError(f"{run_dir / store.SPLIT} has no training or no validation patches: "
                         "the data needs at least 3 patients with patches")
    return manifest, split, labels, patches, tr, va


def train(run_dir: Path | str, config: TrainConfig, fingerprint: str | None = None,
          verbose: int | None = None, labels: np.ndarray | None = None, keep: np.ndarray | None = None) -> dict:
    """Train on split 'train', select on 'val'; write model.keras and history.json into the run.

    ``config`` holds every setting (checked when it was made). ``fingerprint`` identifies the
    training's inputs and settings (pipeline.run computes it): an interrupted training is resumed
    only by one with the same fingerprint. Without it, one is made from the settings and the
    split. ``verbose`` is model.fit's (None: Keras' live bar in a terminal, a line per epoch in logs).
    Returns what run.json records under "train": arch, width, cam_layer, params, epochs_run,
    best_epoch (1-based), best_val_pr_auc, train_seconds, n_train, n_val, train_patches_per_s.

    ``labels`` and ``keep`` (row-aligned with the manifest; pipeline.run passes the reviewed labels
    and the patches not left out as unsure): the labels to fit and early-stop on instead of the
    dataset's, and the rows of train and val to use; ``fingerprint`` must cover them.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a model.config.TrainConfig, got {type(config).__name__}")
    import keras

    from model import fit as fitting

    run_dir = Path(run_dir)
    manifest, split, dataset_labels, patches, tr, va = _fit_rows(run_dir)
    labels = dataset_labels if labels is None else np.asarray(labels, np.int64)
    if len(labels) != len(manifest):
        raise ValueError(f"labels has {len(labels)} rows; the manifest has {len(manifest)}")
    if keep is not None:
        keep = np.asarray(keep, bool)
        tr, va = tr[keep[tr]], va[keep[va]]
        if len(tr) == 0 or len(va) == 0:
            raise UsageError("the reviews leave no training or no validation patch (all left out as unsure)")
    if fingerprint is None:
        fingerprint = store.fingerprint(config.fingerprint_settings(), split, len(manifest))

    model, cam_layer = fitting.build_for_training(config, len(tr), patch_size=PATCH_SIZE)
    state = _resume_state(run_dir, fingerprint, config)
    if state:
        try:
            fitting.load_training_weights(model, state["weights_path"])
            keras.models.load_model(state["best_path"])  # read at the end: check it now, not after training
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, it only costs the resume
            _discard_resume_state(run_dir, f"{state['weights_path']} or {state['best_path']} is unreadable "
                                           f"({type(exc).__name__}: {exc})")
            state = None
            model, cam_layer = fitting.build_for_training(config, len(tr), patch_size=PATCH_SIZE)  # not half-loaded
    resume = state["fit_state"] if state else None
    if resume and resume.finished(config):
        print(f"train: the interrupted training had finished ({run_dir / RESUME}); saving its best model", flush=True)
    elif resume:
        print(f"train: resuming from epoch {resume.epochs_done + 1} with the state in {run_dir / RESUME}", flush=True)

    record = {"fingerprint": fingerprint, "settings": config.as_dict(),
              "weights": state["weights"] if state else None, "best": state["best"] if state else None}
    # Patches are copied into memory once: random access to a memmap per batch is far slower.
    result = fitting.fit(model, np.asarray(patches[tr]), labels[tr], np.asarray(patches[va]), labels[va], config,
                         resume=resume, verbose=verbose,
                         on_epoch_end=lambda m, s, improved: _save_epoch(run_dir, record, m, s, improved))

    best = keras.models.load_model(run_dir / BACKUP_DIR / record["best"])
    with store.atomic_path(run_dir / store.MODEL, suffix=".keras") as tmp:  # Keras insists on the suffix
        best.save(tmp)
    store.write_json(run_dir / store.HISTORY, result.history)
    for leftover in (RESUME, BEST, HISTORY_CSV):  # the record first: without it the rest is never resumed
        (run_dir / leftover).unlink(missing_ok=True)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
    return {
        "arch": config.arch, "width": config.width, "cam_layer": cam_layer, "params": int(model.count_params()),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch + 1, "best_val_pr_auc": float(result.history["val_pr_auc"][result.best_epoch]),
        "train_seconds": round(result.train_seconds, 1), "n_train": int(len(tr)), "n_val": int(len(va)),
        "train_patches_per_s": round(result.train_patches_per_s, 1),
    }
