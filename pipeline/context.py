"""Neighbourhood context: a patch's score combined with the scores of the tissue around it.

IDC is a region, not a scattered patch property: the dataset's labels come from region outlines,
so a patch whose neighbours look like carcinoma is itself likely to be carcinoma. The CNN sees one
50x50 patch; this stage adds what a pathologist sees at lower magnification. For every patch it
smooths the patient's map of CNN logits with a Gaussian: the mean of the logits of the patient's
patches weighted by exp(-d^2 / 2 sigma^2) of their distance d on the slide, the patch itself
included with weight 1 (so a patch alone on its slide keeps its own score, and the context does
not depend on how densely a slide was sampled). A logistic regression on (own logit, context)
fitted on validation patients gives the final, calibrated P(IDC); sigma is chosen there too.

Only unlabelled model scores of the same patient are used, so the stage works exactly the same on
new patients (``pipeline score``). Grad-CAM still explains the CNN, i.e. the patch's own part.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.logistic import fit_logistic, sigmoid

SIGMAS_PX = (100.0, 200.0, 400.0, 800.0)  # Gaussian widths tried on validation (a patch is 50 px)
VERSION = 2  # of the context's definition; part of the score stage's fingerprint, so a change re-scores
ROW_CHUNK = 2048  # rows of the distance matrix at a time: bounded memory on patients with thousands of patches
L2 = 1e-3  # the (own, context) weights' penalty in the validation fit


def neighbour_context(patient_ids, x, y, logits, sigma_px: float) -> np.ndarray:
    """The Gaussian-smoothed logit map of each patient, read at each of its patches.

    context_i = sum_j w_ij z_j / sum_j w_ij, w_ij = exp(-d_ij^2 / (2 sigma^2)), j over the patches
    of i's patient, i itself included (w_ii = 1). Vectorised per patient; float32 of the inputs' length.
    """
    codes, _ = pd.factorize(pd.Series(np.asarray(patient_ids)).astype(str))
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    z = np.asarray(logits, np.float64)
    if not (len(codes) == len(x) == len(y) == len(z)):
        raise ValueError(f"patient_ids, x, y and logits must have equal lengths, got "
                         f"{len(codes)}, {len(x)}, {len(y)}, {len(z)}")
    if not sigma_px > 0:
        raise ValueError(f"sigma_px must be positive, got {sigma_px!r}")
    out = np.zeros(len(z), np.float32)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds):
        px, py, pz = x[rows], y[rows], z[rows]
        for s in range(0, len(rows), ROW_CHUNK):
            part = slice(s, s + ROW_CHUNK)
            d2 = (px[part, None] - px[None, :]) ** 2 + (py[part, None] - py[None, :]) ** 2
            w = np.exp(-d2 / (2.0 * sigma_px ** 2))
            out[rows[part]] = (w @ pz) / w.sum(axis=1)
    return out


def _features(patient_ids, x, y, logits, sigma_px: float) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    return np.stack([z, neighbour_context(patient_ids, x, y, z, sigma_px)], axis=1)


def fit_context(patient_ids, x, y, logits, labels, sigmas=SIGMAS_PX) -> dict | None:
    """Choose the Gaussian width and the (own, context) weights on validation by log-loss.

    Returns the parameters for ``apply_context`` (JSON-ready), or None when validation has a single
    class (nothing to fit; the caller keeps the patch-only calibration).
    """
    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    best = None
    for sigma in sigmas:
        # Start from the patch alone (w_patch 1, w_context 0), lightly L2-regularised.
        (w_patch, w_context, bias), nll, _ = fit_logistic(_features(patient_ids, x, y, logits, sigma), labels,
                                                          x0=(1.0, 0.0, 0.0), l2=L2)
        if best is None or nll < best["val_log_loss"]:
            best = {"version": VERSION, "sigma_px": float(sigma), "w_patch": float(w_patch),
                    "w_context": float(w_context), "bias": float(bias), "val_log_loss": nll}
    return best


def check_params(params: dict) -> None:
    """Refuse weights fitted for another definition of the context: they would mean something else.

    Version 1 (no ``version`` key) left the patch itself out and shrank towards 0.
    """
    fitted_for = params.get("version", 1)
    if fitted_for != VERSION:
        raise ValueError(f"the neighbourhood-context weights were fitted for context version {fitted_for}, this code "
                         f"computes version {VERSION}; re-run `python -m pipeline run` on that run to refit them")


def apply_context(params: dict, patient_ids, x, y, logits) -> np.ndarray:
    """Final P(IDC) = sigmoid(w_patch * z + w_context * context + bias), float32."""
    check_params(params)
    ctx = neighbour_context(patient_ids, x, y, logits, params["sigma_px"])
    s = params["w_patch"] * np.asarray(logits, np.float64) + params["w_context"] * ctx + params["bias"]
    return sigmoid(s).astype(np.float32)
