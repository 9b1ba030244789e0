"""P(IDC) of many patches: one compiled function per (model, TTA), fed uint8 chunks of a memmap.

The function takes uint8 (4x less to copy than float32) and casts in the graph, so scoring the
memory-mapped store runs at full-dataset scale in bounded memory. With ``tta`` it averages the
probabilities of the 8 flips/rotations (model/augment.py's ``dihedral_views``). Compiled functions
are cached per model; a caller that builds many models in one process (bench/learning_curve.py)
calls ``release_compiled()`` when it is done with one, so the old graphs can be freed.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from tqdm import tqdm


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


def release_compiled() -> None:
    """Forget every cached compiled function (and with them the models they hold)."""
    _compiled.cache_clear()


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
