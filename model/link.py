"""The logistic function and its inverse, the logit: the link between a model's score and P(IDC).

Defined once here, in NumPy, for model/ (the wrapped user model's expected outputs, the Explainer's
probabilities) and for the pipeline, which imports them through pipeline.logistic (calibration and
neighbourhood context are logistic regressions on the logit). ``EPS`` is the one clipping bound:
a probability is clipped to [EPS, 1 - EPS] before its logit is taken, so a model's 0 or 1 stays
finite (model/user_model.py clips by it too, inside the wrapped Keras model).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before the logit: a model's 0 or 1 stays finite


def logit(p) -> np.ndarray:
    """log(p / (1 - p)) in float64, with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    """1 / (1 + e^-z), in the precision of ``z`` (callers store float32)."""
    return 1.0 / (1.0 + np.exp(-z))
