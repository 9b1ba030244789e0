"""The fit loop: a model trained on uint8 patches, early-stopped on validation PR-AUC, resumable.

One definition of how every model of the project is trained (the pipeline's train stage, the bench
scripts): the tf.data pipeline with batched in-graph augmentation (model/augment.py), class weights,
Adam with a cosine decay, validation PR-AUC and ROC-AUC, early stopping counted from the best epoch,
an optional time budget, and the throughput figures written into the history. Every setting comes
from a ``TrainConfig``.

Nothing here writes files. Persistence is the caller's: ``fit`` calls ``on_epoch_end(model, state,
improved)`` after every finished epoch (the pipeline writes its resume state there), and continues
an interrupted fit from a ``FitState`` the caller restored (``resume``), after the caller loaded
that epoch's weights and optimizer state into the model (``load_training_weights``).

Importing this module imports no TensorFlow (``class_weights`` and ``FitState`` are NumPy only).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from model.config import TrainConfig

EVAL_BATCH = 512  # validation patches per step (no effect on the metrics, only on speed and memory)


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss (IDC is ~28% of patches)."""
    labels = np.asarray(labels)
    n, pos = len(labels), int(labels.sum())
    if pos == 0 or pos == n:
        return {0: 1.0, 1: 1.0}
    return {0: n / (2.0 * (n - pos)), 1: n / (2.0 * pos)}


def make_dataset(patches: np.ndarray, labels: np.ndarray, batch_size: int, training: bool, seed: int = 0,
                 stain_sigma: float = TrainConfig.stain_sigma):
    """A tf.data pipeline over in-memory uint8 patches; augmentation runs batched, in the graph."""
    import tensorflow as tf

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


def compile_for_training(model, n_train: int, config: TrainConfig) -> None:
    """Adam with a cosine learning-rate decay over the whole run; validation PR-AUC and ROC-AUC as metrics."""
    keras = _keras()
    steps = int(np.ceil(n_train / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps * config.epochs,
                                                      alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="roc_auc")],
    )


def build_for_training(config: TrainConfig, n_train: int, *, patch_size: int):
    """(model, Grad-CAM layer name): the model ``config`` describes, seeded and compiled, ready for ``fit``.

    Seeds Python, NumPy and TensorFlow with ``config.seed`` first, so the same config always starts
    from the same weights. ``patch_size`` is the patch side (model.architectures.build_model).
    """
    keras = _keras()
    from model.architectures import build_model

    keras.utils.set_random_seed(config.seed)
    model, cam_layer = build_model(config.arch, config.width, patch_size=patch_size)
    compile_for_training(model, n_train, config)
    return model, cam_layer


def load_training_weights(model, path) -> None:
    """Load weights and optimizer state saved with ``model.save_weights`` into a compiled model.

    The optimizer is built first, so its state (Adam's moments, the step count that drives the
    learning-rate schedule) loads with the weights.
    """
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


# --------------------------------------------------------------------------- the state of a fit
@dataclass(frozen=True)
class FitState:
    """Where a fit stands after its last finished epoch: everything resuming it needs besides the weights.

    ``history`` maps each logged figure ("epoch", "loss", "val_pr_auc", "epoch_seconds",
    "train_patches_per_s", ...) to one value per finished epoch; ``best_epoch`` is 0-based.
    """

    epochs_done: int
    history: dict[str, list[float]]
    best_epoch: int
    best_val_pr_auc: float

    def finished(self, config: TrainConfig) -> bool:
        """True when a fit with ``config`` would train no further epoch (epoch cap or early stopping)."""
        last = self.epochs_done - 1
        return self.epochs_done >= config.epochs or (last > 0 and last - self.best_epoch >= config.patience)

    @property
    def seconds(self) -> float:
        """Training time of the finished epochs (over every session of an interrupted fit)."""
        return float(np.nansum(self.history.get("epoch_seconds", [])))


@dataclass(frozen=True)
class FitResult(FitState):
    """The outcome of ``fit``: the final state, the total training time and whether the best weights are loaded.

    ``train_seconds`` counts every session of a resumed fit. ``best_restored`` is True when the
    model now holds the best epoch's weights; False when the best epoch was trained in an earlier
    session (before a resume) and this session did not beat it: the caller's saved best model is
    then the best one, and the model holds the last epoch's weights.
    """

    train_seconds: float = 0.0
    best_restored: bool = False

    @property
    def epochs_run(self) -> int:
        return self.epochs_done

    @property
    def train_patches_per_s(self) -> float:
        """Median training throughput over the epochs (patches actually seen per second)."""
        return float(np.nanmedian(self.history["train_patches_per_s"]))


EpochCallback = Callable[[object, FitState, bool], None]


# --------------------------------------------------------------------------- callbacks
def _throughput_callback(n_train: int, batch_size: int, show: bool):
    keras = _keras()

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
            if show:
                print(f"epoch {epoch + 1}: {seen / dt:,.0f} training patches/s, "
                      f"val PR-AUC {logs.get('val_pr_auc', float('nan')):.3f}", flush=True)

    return Throughput()


def _state_callback(patience: int, resume: FitState | None, on_epoch_end: EpochCallback | None):
    """History, the best epoch and early stopping in one place; hands each finished epoch's state on.

    Early stopping as keras.callbacks.EarlyStopping (no improvement for ``patience`` epochs), but
    counted from the recorded best epoch, so it survives a resume.
    """
    keras = _keras()

    class Keeper(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = {k: list(v) for k, v in resume.history.items()} if resume else {}
            self.best_epoch = resume.best_epoch if resume else None
            self.best = resume.best_val_pr_auc if resume else None
            self.best_weights = None  # the best epoch's weights, when it ran in this session
            self.done = resume.epochs_done if resume else 0

        def state(self) -> FitState:
            return FitState(self.done, {k: list(v) for k, v in self.history.items()}, self.best_epoch, self.best)

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
            for key in sorted(set(self.history) | set(row)):
                self.history.setdefault(key, [float("nan")] * epoch).append(row.get(key, float("nan")))
            value = row.get("val_pr_auc", float("nan"))
            # The first epoch is always kept, so there is a best model even if PR-AUC is NaN.
            improved = self.best_epoch is None or value > self.best
            if improved:
                self.best_epoch, self.best = epoch, value
                self.best_weights = self.model.get_weights()
            self.done = epoch + 1
            if on_epoch_end is not None:
                on_epoch_end(self.model, self.state(), improved)
            if epoch - self.best_epoch >= patience and epoch > 0:
                self.model.stop_training = True

    return Keeper()


def _time_budget_callback(seconds: float):
    keras = _keras()

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


# --------------------------------------------------------------------------- the loop
def fit(model, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
        config: TrainConfig, *, resume: FitState | None = None, on_epoch_end: EpochCallback | None = None,
        verbose: int | None = None) -> FitResult:
    """Train ``model`` (compiled by ``compile_for_training``, e.g. from ``build_for_training``) on uint8 patches.

    Trains up to ``config.epochs`` epochs, stops ``config.patience`` epochs after the best
    validation PR-AUC, or when the next epoch would overrun ``config.time_budget_s``; at the end
    the model holds the best epoch's weights (see FitResult.best_restored). Arrays are used as
    given: pass in-memory arrays (random access to a memmap per batch is far slower).

    ``on_epoch_end(model, state, improved)`` runs after each finished epoch, before early stopping
    and the time budget are checked; ``improved`` says this epoch is the new best. ``resume``
    continues an interrupted fit from its last finished epoch (history, best epoch and score,
    early-stopping count): the caller has loaded that epoch's weights into ``model`` with
    ``load_training_weights``. A finished ``resume`` (``resume.finished(config)``) trains nothing.
    ``verbose`` is Keras' (None: its live bar in a terminal, one line per epoch in logs and CI;
    0 also silences the per-epoch throughput line).
    """
    keras = _keras()
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    train_y, val_y = np.asarray(train_y), np.asarray(val_y)
    train_ds = make_dataset(train_x, train_y, config.batch_size, True, config.seed, config.stain_sigma)
    val_ds = make_dataset(val_x, val_y, EVAL_BATCH, False)
    # Order matters: the throughput figures join the epoch's logs before the state is kept, and the
    # time budget looks last, so a stop it makes comes after the epoch was handed on.
    keeper = _state_callback(config.patience, resume, on_epoch_end)
    callbacks: list[keras.callbacks.Callback] = [_throughput_callback(len(train_y), config.batch_size, verbose != 0),
                                                 keeper]
    if config.time_budget_s:
        callbacks.append(_time_budget_callback(config.time_budget_s))
    earlier_seconds = resume.seconds if resume else 0.0
    t0 = time.perf_counter()
    if not (resume and resume.finished(config)):
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                  initial_epoch=resume.epochs_done if resume else 0,
                  class_weight=class_weights(train_y), callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # the dataset shuffles itself
    seconds = time.perf_counter() - t0 + earlier_seconds
    if keeper.best_weights is not None:
        model.set_weights(keeper.best_weights)
    state = keeper.state()
    return FitResult(state.epochs_done, state.history, state.best_epoch, state.best_val_pr_auc,
                     train_seconds=seconds, best_restored=keeper.best_weights is not None)
