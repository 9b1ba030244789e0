"""The logistic function, its inverse (both from model.link) and the one logistic-regression fit that the
pipeline uses.

Both the temperature calibration (pipeline.score) and the neighbourhood context (pipeline.context)
are logistic regressions on the model's logit, fitted on the validation patients by minimising the
mean log-loss with L-BFGS-B; they differ only in their features and in how the weights are
parametrised, which ``fit_logistic`` takes as arguments.
"""
from __future__ import annotations

import numpy as np

from model.link import EPS, logit, sigmoid  # defined in model/ (which imports nothing of pipeline/); re-exported

__all__ = ["EPS", "fit_logistic", "log_loss", "logit", "sigmoid"]


def log_loss(s, labels) -> float:
    """Mean log-loss of P = sigmoid(s) for 0/1 ``labels``: log(1 + e^s) - y s, computed stably."""
    return float(np.mean(np.logaddexp(0.0, s) - labels * s))


def fit_logistic(features: np.ndarray, labels, x0, *, l2: float = 0.0, bounds=None,
                 log_weights: bool = False) -> tuple[np.ndarray, float, bool]:
    """Fit P(y = 1) = sigmoid(features @ w + b) by minimising the mean log-loss (+ l2 * |w|^2).

    ``x0`` is the start (w..., b). With ``log_weights`` the parameters are (-log w..., b), so every
    weight stays positive (temperature scaling: w = 1/T, the parameter is log T); ``bounds`` are on
    the parameters, for L-BFGS-B. Returns (parameters, mean log-loss at them without the penalty,
    whether the optimiser converged).
    """
    from scipy.optimize import minimize

    features = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)

    def linear(params):
        w = np.exp(-params[:-1]) if log_weights else params[:-1]
        return features @ w + params[-1]

    def loss(params):
        value = log_loss(linear(params), y)
        return value + l2 * np.sum(params[:-1] ** 2) if l2 else value

    res = minimize(loss, x0=np.asarray(x0, np.float64), method="L-BFGS-B", bounds=bounds)
    return res.x, log_loss(linear(res.x), y), bool(res.success)
