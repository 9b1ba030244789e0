"""Shared fixtures: a tiny synthetic cohort and a tiny trained run, built once per test session.

Everything is real: the generator writes PNGs, ingest decodes them, TensorFlow trains a model.
The run is small (4 patients, 2 epochs) so the whole suite stays fast on 2 CPU cores.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
REAL_SAMPLE = ROOT.parent / "shared" / "data" / "idc_sample"


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    from pipeline.synth import generate_cohort

    out = tmp_path_factory.mktemp("cohort") / "synthetic"
    generate_cohort(out, n_patients=5, seed=7, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_cohort) -> Path:
    """A finished run folder (ingest, split, train, score, evaluate) on the tiny cohort."""
    from model.config import TrainConfig
    from pipeline.run import run_pipeline

    out = tmp_path_factory.mktemp("runs") / "tiny-synthetic"
    run_pipeline(tiny_cohort, out, TrainConfig(epochs=2, seed=1))
    return out


@pytest.fixture
def real_sample() -> Path:
    if not REAL_SAMPLE.is_dir():
        pytest.skip(f"real patches not found at {REAL_SAMPLE} (../shared/data/idc_sample beside the project)")
    return REAL_SAMPLE
