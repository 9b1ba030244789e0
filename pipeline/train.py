"""Train a CNN on the run's training patients, early-stopped on validation PR-AUC.

Resumable: Keras' BackupAndRestore keeps the last finished epoch in the run folder, so an
interrupted training continues from there; the best model so far is kept as it is reached.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import store

BACKUP_DIR = ".train_backup"
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


def train(run_dir: Path | str, arch: str = "separable", epochs: int = 30, seed: int = 0,
          batch_size: int = 128, patience: int = 8, learning_rate: float = 2e-3, verbose: int | None = None,
          time_budget_s: float | None = None, width: int | None = None) -> dict:
    """Train on split 'train', select on 'val'; write model.keras and history.json into the run.

    ``time_budget_s`` stops training once the next epoch would not fit in that many seconds.
    """
    tf, keras = _tf()
    from model.architectures import build_model, model_width

    run_dir = Path(run_dir)
    manifest = store.read_manifest(run_dir)
    split = store.read_split(run_dir)["patients"]
    which = manifest["patient_id"].map(split).to_numpy()
    labels = manifest["label"].to_numpy(np.int64)
    patches = store.read_patches(run_dir)
    tr, va = np.flatnonzero(which == "train"), np.flatnonzero(which == "val")
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"{run_dir / store.SPLIT} has no training or no validation patches")

    if verbose is None:  # Keras' live bar in a terminal, one line per epoch in logs and CI
        verbose = 1 if sys.stdout.isatty() else 2
    keras.utils.set_random_seed(seed)
    width = model_width(arch, width)
    model, cam_layer = build_model(arch, width)
    compile_for_training(model, len(tr), batch_size, epochs, learning_rate)
    # Patches are copied into memory once: random access to a memmap per batch is far slower.
    train_ds = make_dataset(np.asarray(patches[tr]), labels[tr], batch_size, True, seed)
    val_ds = make_dataset(np.asarray(patches[va]), labels[va], 512, False)

    history_csv = run_dir / HISTORY_CSV
    best_so_far = None
    if history_csv.exists():  # resuming: keep the best validation score reached before the stop
        best_so_far = float(pd.read_csv(history_csv)["val_pr_auc"].max())
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR)),
        keras.callbacks.ModelCheckpoint(str(run_dir / BEST), monitor="val_pr_auc", mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.EarlyStopping(monitor="val_pr_auc", mode="max", patience=patience),
        _throughput_callback(len(tr), batch_size),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
    ]
    if time_budget_s:
        callbacks.append(_time_budget_callback(time_budget_s))
    t0 = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weights(labels[tr]),
              callbacks=callbacks, verbose=verbose, shuffle=False)  # the dataset shuffles itself
    seconds = time.perf_counter() - t0

    best = keras.models.load_model(run_dir / BEST)
    tmp = run_dir / ".model.partial.keras"  # Keras insists on the .keras suffix
    best.save(tmp)
    os.replace(tmp, run_dir / store.MODEL)
    history = pd.read_csv(history_csv).to_dict(orient="list")
    store.write_json(run_dir / store.HISTORY, history)
    for leftover in (run_dir / BEST, history_csv):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
    best_epoch = int(np.argmax(history["val_pr_auc"]))
    return {
        "arch": arch, "width": width, "cam_layer": cam_layer, "params": int(model.count_params()),
        "epochs_run": len(history["epoch"]),
        "best_epoch": best_epoch + 1, "best_val_pr_auc": float(history["val_pr_auc"][best_epoch]),
        "train_seconds": round(seconds, 1), "n_train": int(len(tr)), "n_val": int(len(va)),
        "train_patches_per_s": round(float(np.median(history["train_patches_per_s"])), 1),
    }
