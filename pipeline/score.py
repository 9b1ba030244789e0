"""Score patches with a trained model, and calibrate the probabilities on validation.

Scoring streams the memory-mapped store in chunks through one compiled function that takes uint8
(4x less to copy than float32), so it runs at full-dataset scale in bounded memory. Temperature
scaling (Guo et al. 2017, plus a bias, see fit_calibration) maps the model's logit through one
affine function fitted on validation, which makes probabilities honest without moving the ranking.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from tqdm import tqdm

EPS = 1e-6


@lru_cache(maxsize=8)
def _compiled(model, tta: bool):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from model.augment import dihedral_views

    @tf.function(reduce_retracing=True)
    def predict(x_uint8):
        x = tf.cast(x_uint8, tf.float32)
        if not tta:
            return model(x, training=False)[:, 0]
        # Dihedral test-time augmentation: average the 8 flips/rotations' probabilities.
        return tf.reduce_mean(tf.stack([model(v, training=False)[:, 0] for v in dihedral_views(x)]), axis=0)

    return predict


def predict_probabilities(model, patches: np.ndarray, rows=None, batch_size: int = 1024, tta: bool = False,
                          progress: bool = False) -> np.ndarray:
    """P(IDC) (uncalibrated) for ``patches[rows]`` (all rows if None), as float32."""
    rows = np.arange(len(patches)) if rows is None else np.asarray(rows)
    predict = _compiled(model, tta)
    out = np.empty(len(rows), dtype=np.float32)
    with tqdm(total=len(rows), unit="patch", desc="score", disable=not progress) as bar:
        for s in range(0, len(rows), batch_size):
            sel = rows[s:s + batch_size]
            # Contiguous row ranges read the memmap as one slice (no fancy-index copy of indices).
            batch = patches[sel[0]:sel[-1] + 1] if sel[-1] - sel[0] == len(sel) - 1 else patches[sel]
            out[s:s + len(sel)] = predict(np.ascontiguousarray(batch)).numpy()
            bar.update(len(sel))
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


IDENTITY = {"temperature": 1.0, "bias": 0.0}


def apply_calibration(prob: np.ndarray, calibration: dict) -> np.ndarray:
    """Calibrated probabilities sigmoid(logit(p) / T + b)."""
    z = logit(prob) / calibration["temperature"] + calibration["bias"]
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def fit_calibration(prob: np.ndarray, labels: np.ndarray) -> dict:
    """Temperature T and bias b minimising validation log-loss of sigmoid(logit / T + b).

    Temperature alone (Guo et al. 2017) fixes over-confidence; the bias is needed too because
    training with class weights shifts every logit towards IDC (the model learns a 50% prior
    while about 28% of patches are IDC). Both keep the ranking, so ROC/PR-AUC are unchanged.
    Returns the identity when validation has a single class.
    """
    from scipy.optimize import minimize

    y = np.asarray(labels, np.float64)
    if len(y) == 0 or y.min() == y.max():
        return dict(IDENTITY)
    z = logit(prob)

    def nll(params):
        s = z * np.exp(-params[0]) + params[1]
        return float(np.mean(np.logaddexp(0.0, s) - y * s))  # log(1 + e^s) - y s, stably

    res = minimize(nll, x0=np.zeros(2), method="L-BFGS-B", bounds=[(np.log(0.05), np.log(20.0)), (-10, 10)])
    if not res.success:
        return dict(IDENTITY)
    return {"temperature": float(np.exp(res.x[0])), "bias": float(res.x[1])}
