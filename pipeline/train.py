"""Train a CNN on the run's training patients, early-stopped on validation PR-AUC.

Resumable: after every epoch the weights and optimizer state, the best model so far and a record
(``RESUME``: the training's fingerprint, epochs done, history, best epoch) are written atomically
into the run folder, so an interrupted training continues from its last finished epoch, and only
a training with the same fingerprint (data, split and settings) ever continues it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.errors import UsageError, check_int

RESUME = ".train_resume.json"  # the record; the files in BACKUP_DIR are used only as it names them
BACKUP_DIR = ".train_backup"  # epoch-NNNN.weights.h5 (last epoch's weights and optimizer state), best-NNNN.keras
# Written by earlier versions (Keras' ModelCheckpoint and CSVLogger); only ever removed now.
BEST = ".model_best.keras"
HISTORY_CSV = ".history.csv"


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    return tf, keras


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss (IDC is ~28% of patches)."""
    labels = np.asarray(labels)
    n, pos = len(labels), int(labels.sum())
    if pos == 0 or pos == n:
        return {0: 1.0, 1: 1.0}
    return {0: n / (2.0 * (n - pos)), 1: n / (2.0 * pos)}


def make_dataset(patches: np.ndarray, labels: np.ndarray, batch_size: int, training: bool, seed: int = 0,
                 stain_sigma: float = 0.05):
    """A tf.data pipeline over in-memory uint8 patches; augmentation runs batched, in the graph."""
    tf, _ = _tf()
    from model.augment import augment_batch

    ds = tf.data.Dataset.from_tensor_slices((patches, labels.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        counter = tf.data.Dataset.counter()
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda xy, i: (augment_batch(xy[0], tf.stack([tf.cast(seed, tf.int64), i]), stain_sigma), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def compile_for_training(model, n_train: int, batch_size: int, epochs: int, learning_rate: float) -> None:
    """Adam with a cosine learning-rate decay over the whole run; validation PR-AUC and ROC-AUC as metrics."""
    _, keras = _tf()
    steps = int(np.ceil(n_train / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps * epochs, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="roc_auc")],
    )


def _time_budget_callback(seconds: float):
    _, keras = _tf()

    class TimeBudget(keras.callbacks.Callback):
        """Stops when the budget is spent, or after an epoch when the next would overrun it (a fair comparison)."""

        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # A slow backbone may not finish one epoch in the budget: stop inside the epoch too.
            if time.perf_counter() - self.t0 > seconds:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.t0
            if elapsed * (epoch + 2) / (epoch + 1) > seconds:
                self.model.stop_training = True

    return TimeBudget()


def _throughput_callback(n_train: int, batch_size: int):
    _, keras = _tf()

    class Throughput(keras.callbacks.Callback):
        """Adds seconds and training patches/s per epoch to the logs (and so to history)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t0
            # Patches actually seen: the time budget may stop an epoch part-way (slow backbones).
            seen = min(self.batches * batch_size, n_train)
            logs["epoch_seconds"] = dt
            logs["train_patches_per_s"] = seen / dt
            print(f"epoch {epoch + 1}: {seen / dt:,.0f} training patches/s, "
                  f"val PR-AUC {logs.get('val_pr_auc', float('nan')):.3f}", flush=True)

    return Throughput()


def _discard_resume_state(run_dir: Path, why: str) -> None:
    """Remove an interrupted training's leftovers, saying which file made them unusable and why."""
    print(f"train: {why}; discarding the interrupted training's resume state and starting from epoch 1",
          flush=True)
    for name in (RESUME, BEST, HISTORY_CSV):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)


def _describe(settings) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) if isinstance(settings, dict) else "unknown"


def _resume_state(run_dir: Path, fingerprint: str, settings: dict) -> dict | None:
    """The interrupted training's state if it can be resumed by a training fingerprinted ``fingerprint``.

    Anything else found (state of other settings, an unreadable record, files of an older version
    without a record) is discarded with a message naming the file: resuming it would either crash
    or, worse, quietly continue a different model under this run's settings.
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
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _discard_resume_state(run_dir, f"{record} is unreadable ({type(exc).__name__}: {exc})")
        return None
    if state.get("fingerprint") != fingerprint:
        _discard_resume_state(run_dir, f"{record} belongs to a training with other settings or data "
                                       f"({_describe(state.get('settings'))}; this one: {_describe(settings)})")
        return None
    for needed in (weights, best):
        if not needed.is_file():
            _discard_resume_state(run_dir, f"{needed} is missing although {record} needs it")
            return None
    # Finished (epoch cap or early stopping) but killed before model.keras was written: nothing to train.
    last = done - 1
    state["finished"] = done >= settings["epochs"] or (last > 0 and last - best_epoch >= settings["patience"])
    return state | {"weights_path": weights, "best_path": best}


def _state_callback(run_dir: Path, fingerprint: str, settings: dict, patience: int, state: dict | None):
    """Keeps resume state, the best model and early stopping in one record, written atomically.

    After every epoch: the best model so far (if this epoch is the best) and the weights and
    optimizer state, each under a name of its own in BACKUP_DIR, then ``RESUME`` naming them,
    each renamed into place complete; only then are the files of the previous record removed. A
    kill at any moment leaves a record and the files it names, so a resumed training continues
    from the last finished epoch with its history, its best model and score and its
    early-stopping count: it cannot tell it was interrupted.
    """
    _, keras = _tf()
    backup = run_dir / BACKUP_DIR

    class TrainState(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = dict(state["history"]) if state else {}
            self.best_epoch = state["best_epoch"] if state else None
            self.best = state["best_val_pr_auc"] if state else None
            self.weights = state["weights"] if state else None
            self.best_file = state["best"] if state else None

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
            for key in sorted(set(self.history) | set(row)):
                self.history.setdefault(key, [float("nan")] * epoch).append(row.get(key, float("nan")))
            value = row.get("val_pr_auc", float("nan"))
            backup.mkdir(exist_ok=True)
            old = {self.weights, self.best_file}
            # The first epoch is always kept, so there is a best model even if PR-AUC is NaN.
            if self.best_epoch is None or value > self.best:
                self.best_epoch, self.best, self.best_file = epoch, value, f"best-{epoch + 1:04d}.keras"
                with store.atomic_path(backup / self.best_file, suffix=".keras") as tmp:
                    self.model.save(tmp)
            self.weights = f"epoch-{epoch + 1:04d}.weights.h5"
            with store.atomic_path(backup / self.weights, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            store.write_json(run_dir / RESUME, {
                "fingerprint": fingerprint, "settings": settings, "epochs_done": epoch + 1,
                "weights": self.weights, "best": self.best_file, "best_epoch": self.best_epoch,
                "best_val_pr_auc": self.best, "history": self.history})
            for name in old - {self.weights, self.best_file, None}:  # only now are they unneeded
                (backup / name).unlink(missing_ok=True)
            # Early stopping as keras.callbacks.EarlyStopping (no improvement for `patience`
            # epochs), but counted from the recorded best epoch, so it survives a resume.
            if epoch - self.best_epoch >= patience and epoch > 0:
                self.model.stop_training = True

    return TrainState()


def train(run_dir: Path | str, arch: str = "separable", epochs: int = 30, seed: int = 0,
          batch_size: int = 128, patience: int = 8, learning_rate: float = 2e-3, verbose: int | None = None,
          time_budget_s: float | None = None, width: int | None = None, fingerprint: str | None = None) -> dict:
    """Train on split 'train', select on 'val'; write model.keras and history.json into the run.

    ``time_budget_s`` stops training once the next epoch would not fit in that many seconds.
    ``fingerprint`` identifies the training's inputs and settings (pipeline.run computes it): an
    interrupted training is resumed only by one with the same fingerprint. Without it, one is made
    from the settings and the split.
    """
    tf, keras = _tf()
    from model.architectures import build_model, model_width

    run_dir = Path(run_dir)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    patience = check_int("patience", patience, 0)
    manifest = store.read_manifest(run_dir)
    split = store.read_split(run_dir)["patients"]
    which = manifest["patient_id"].map(split).to_numpy()
    labels = manifest["label"].to_numpy(np.int64)
    patches = store.read_patches(run_dir)
    tr, va = np.flatnonzero(which == "train"), np.flatnonzero(which == "val")
    if len(tr) == 0 or len(va) == 0:
        raise UsageError(f"{run_dir / store.SPLIT} has no training or no validation patches: "
                         "the data needs at least 3 patients with patches")

    width = model_width(arch, width)
    settings = {"arch": arch, "epochs": epochs, "seed": seed, "time_budget_s": time_budget_s,
                "batch_size": batch_size, "patience": patience, "width": width, "learning_rate": learning_rate}
    if fingerprint is None:
        fingerprint = store.fingerprint(settings, split, len(manifest))
    if verbose is None:  # Keras' live bar in a terminal, one line per epoch in logs and CI
        verbose = 1 if sys.stdout.isatty() else 2

    def fresh_model():
        keras.utils.set_random_seed(seed)
        model, cam_layer = build_model(arch, width)
        compile_for_training(model, len(tr), batch_size, epochs, learning_rate)
        return model, cam_layer

    model, cam_layer = fresh_model()
    state = _resume_state(run_dir, fingerprint, settings)
    if state:
        try:
            model.optimizer.build(model.trainable_variables)  # so its state loads with the weights
            model.load_weights(state["weights_path"])
            keras.models.load_model(state["best_path"])  # read at the end: check it now, not after training
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, it only costs the resume
            _discard_resume_state(run_dir, f"{state['weights_path']} or {state['best_path']} is unreadable "
                                           f"({type(exc).__name__}: {exc})")
            state = None
            model, cam_layer = fresh_model()  # a half-loaded model is not a fresh one
    if state and state["finished"]:
        print(f"train: the interrupted training had finished ({run_dir / RESUME}); saving its best model", flush=True)
    elif state:
        print(f"train: resuming from epoch {state['epochs_done'] + 1} with the state in {run_dir / RESUME}", flush=True)
    initial_epoch = state["epochs_done"] if state else 0

    # Patches are copied into memory once: random access to a memmap per batch is far slower.
    train_ds = make_dataset(np.asarray(patches[tr]), labels[tr], batch_size, True, seed)
    val_ds = make_dataset(np.asarray(patches[va]), labels[va], 512, False)
    # The state callback comes after the throughput one, which adds its figures to the epoch's logs.
    keeper = _state_callback(run_dir, fingerprint, settings, patience, state)
    callbacks = [_throughput_callback(len(tr), batch_size), keeper]
    if time_budget_s:
        callbacks.append(_time_budget_callback(time_budget_s))
    # Training time over every session of this training (a resumed one continues the clock).
    earlier_seconds = float(np.nansum(state["history"].get("epoch_seconds", []))) if state else 0.0
    t0 = time.perf_counter()
    if not (state and state["finished"]):
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                  class_weight=class_weights(labels[tr]), callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # the dataset shuffles itself
    seconds = time.perf_counter() - t0 + earlier_seconds

    best = keras.models.load_model(run_dir / BACKUP_DIR / keeper.best_file)
    with store.atomic_path(run_dir / store.MODEL, suffix=".keras") as tmp:  # Keras insists on the suffix
        best.save(tmp)
    history = keeper.history
    store.write_json(run_dir / store.HISTORY, history)
    for leftover in (RESUME, BEST, HISTORY_CSV):  # the record first: without it the rest is never resumed
        (run_dir / leftover).unlink(missing_ok=True)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
    best_epoch = keeper.best_epoch
    return {
        "arch": arch, "width": width, "cam_layer": cam_layer, "params": int(model.count_params()),
        "epochs_run": len(history["epoch"]),
        "best_epoch": best_epoch + 1, "best_val_pr_auc": float(history["val_pr_auc"][best_epoch]),
        "train_seconds": round(seconds, 1), "n_train": int(len(tr)), "n_val": int(len(va)),
        "train_patches_per_s": round(float(np.nanmedian(history["train_patches_per_s"])), 1),
    }
