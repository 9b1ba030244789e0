"""Tests for pipeline.synth, the synthetic default cohort.

One 8-patient cohort is generated per module (about 6,000 patches) and shared by the layout,
label and shortcut checks; the determinism checks use 2-patient cohorts.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.names import MASK_DIR, SYNTHETIC_MARKER
from pipeline.synth import generate_cohort

NAME = re.compile(r"^(\d+)_idx5_x(\d+)_y(\d+)_class([01])\.png$")
N_PATIENTS = 8


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "cohort"
    meta = generate_cohort(root, n_patients=N_PATIENTS, seed=0, progress=False)
    return root, meta


@pytest.fixture(scope="module")
def patches(cohort):
    """Every patch as (patient, x, y, label, RGB array), checking name and folder on the way."""
    root, _ = cohort
    rows = []
    for pdir in sorted(p for p in root.iterdir() if p.name != MASK_DIR and p.is_dir()):
        for label_dir in sorted(pdir.iterdir()):
            for f in sorted(label_dir.iterdir()):
                m = NAME.match(f.name)
                assert m, f"bad file name {f}"
                assert m[1] == pdir.name and m[4] == label_dir.name, f
                with Image.open(f) as img:
                    assert img.mode == "RGB"
                    arr = np.asarray(img)
                rows.append((m[1], int(m[2]), int(m[3]), int(m[4]), arr))
    return rows


def _auc_on_patient_halves(features: np.ndarray, labels: np.ndarray, pids: np.ndarray) -> float:
    """Logistic regression on standardised features, trained on one half of the patients and
    scored on the other, both ways round; the mean ROC-AUC of the two."""
    order = sorted(set(pids))
    aucs = []
    for half in (order[0::2], order[1::2]):
        train = np.isin(pids, half)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(features[train], labels[train])
        aucs.append(roc_auc_score(labels[~train], model.predict_proba(features[~train])[:, 1]))
    return float(np.mean(aucs))


def _texture_features(stack: np.ndarray) -> np.ndarray:
    """Stain-independent structure of (N, 50, 50, 3) patches, one row of features per patch:
    blob-scale energies (nucleus size), contrast, edge energy and dark-blob count/size, all on
    grey levels divided by the patch mean so that stain strength drops out."""
    grey = stack.astype(np.float32).mean(axis=3)
    grey /= grey.mean(axis=(1, 2), keepdims=True) + 1e-6
    log = [-ndimage.gaussian_laplace(grey, s, axes=(1, 2)) * s * s for s in (0.7, 1.0, 1.5, 2.2)]
    columns = [response.clip(0).mean(axis=(1, 2)) for response in log]
    columns.append(grey.std(axis=(1, 2)))
    columns.append((np.diff(grey, axis=1) ** 2).mean(axis=(1, 2))
                   + (np.diff(grey, axis=2) ** 2).mean(axis=(1, 2)))
    dark = grey < np.minimum(np.median(grey, axis=(1, 2)) - 0.12, 0.8)[:, None, None]
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)  # blobs never span two patches
    blobs, _ = ndimage.label(dark, in_plane)
    sizes = np.bincount(blobs.ravel())[1:]
    patch_of_pixel = np.repeat(np.arange(len(stack), dtype=np.float64), grey[0].size)
    owner = np.rint(np.bincount(blobs.ravel(), patch_of_pixel)[1:] / sizes).astype(np.intp)
    count = np.bincount(owner, minlength=len(stack))
    area = np.bincount(owner, sizes, minlength=len(stack))
    area_sq = np.bincount(owner, sizes ** 2.0, minlength=len(stack))
    mean_area = area / np.maximum(count, 1)
    columns += [count, mean_area, np.sqrt(np.maximum(area_sq / np.maximum(count, 1)
                                                      - mean_area**2, 0)), dark.mean(axis=(1, 2))]
    return np.stack(columns, axis=1)


def test_layout_and_names(cohort, patches):
    root, meta = cohort
    pids = sorted({p[0] for p in patches})
    assert pids == [str(90001 + i) for i in range(N_PATIENTS)]
    assert all(len(pid) == 5 for pid in pids)
    assert not [f for f in root.rglob(".*")], "temporary files left behind"
    for pid in pids:
        own = [p for p in patches if p[0] == pid]
        xs, ys = np.array([p[1] for p in own]), np.array([p[2] for p in own])
        assert xs.min() >= 1 and ys.min() >= 1
        assert np.all((xs - 1) % 50 == 0) and np.all((ys - 1) % 50 == 0)
        assert len(set(zip(xs.tolist(), ys.tolist()))) == len(own), "duplicate coordinates"
        for _, x, y, _, arr in own:
            h, w = arr.shape[:2]
            assert arr.dtype == np.uint8 and arr.shape[2] == 3 and 1 <= h <= 50 and 1 <= w <= 50
            # Short patches only where the slide ends: the last row / column of the slide.
            assert w == 50 or x == xs.max(), (pid, x, y, arr.shape)
            assert h == 50 or y == ys.max(), (pid, x, y, arr.shape)
        assert 100 <= len(own) <= 2500
    short = [p for p in patches if p[4].shape[:2] != (50, 50)]
    assert short, "no edge patches narrower or shorter than 50 px"


def test_marker(cohort, patches):
    root, meta = cohort
    on_disk = json.loads((root / SYNTHETIC_MARKER).read_text())
    assert on_disk == meta
    assert meta["synthetic"] is True and meta["generator"] == "pipeline.synth"
    assert meta["version"] == 1 and meta["seed"] == 0 and meta["n_patients"] == N_PATIENTS
    assert meta["n_patches"] == len(patches)
    positives = sum(p[3] for p in patches)
    assert meta["positive_fraction"] == pytest.approx(positives / len(patches), abs=1e-4)
    assert "SYNTHETIC" in meta["note"] and "not for clinical use" in meta["note"]
    for pid, info in meta["patients"].items():
        own = [p for p in patches if p[0] == pid]
        assert info["n_patches"] == len(own)
        assert info["n_positive"] == sum(p[3] for p in own)
        rows, cols = info["grid"]
        assert max(p[2] for p in own) <= 50 * (rows - 1) + 1
        assert max(p[1] for p in own) <= 50 * (cols - 1) + 1


def test_masks_match_frame_and_labels(cohort, patches):
    root, _ = cohort
    fractions = {0: [], 1: []}
    for pid in sorted({p[0] for p in patches}):
        own = [p for p in patches if p[0] == pid]
        with Image.open(root / MASK_DIR / f"{pid}.png") as img:
            assert img.mode == "L" and set(np.unique(np.asarray(img))) <= {0, 255}
            mask = np.asarray(img) > 127
        max_x, max_y = max(p[1] for p in own), max(p[2] for p in own)
        assert mask.shape == (max_y - 1 + 50, max_x - 1 + 50)
        for _, x, y, label, arr in own:
            h, w = arr.shape[:2]
            fractions[label].append(mask[y - 1:y - 1 + h, x - 1:x - 1 + w].mean())
    assert np.mean(fractions[1]) > np.mean(fractions[0]) + 0.4
    # Labels come from a coarse outline with a few errors: mostly, not always, inside.
    assert np.mean(np.array(fractions[1]) > 0.2) > 0.8
    assert np.mean(np.array(fractions[0]) < 0.5) > 0.9


def test_class_balance(cohort, patches):
    _, meta = cohort
    assert 0.18 <= meta["positive_fraction"] <= 0.38
    per_patient = [info["n_positive"] / info["n_patches"] for info in meta["patients"].values()]
    assert min(per_patient) < 0.1 and max(per_patient) > 0.4


def test_mean_colour_is_no_shortcut_but_texture_is_signal(patches):
    full = [p for p in patches if p[4].shape[:2] == (50, 50)]  # edge slivers left out
    pids = np.array([p[0] for p in full])
    labels = np.array([p[3] for p in full])
    stack = np.stack([p[4] for p in full])
    colour_auc = _auc_on_patient_halves(stack.mean(axis=(1, 2)), labels, pids)
    texture_auc = _auc_on_patient_halves(_texture_features(stack), labels, pids)
    print(f"\nmean-RGB logistic regression AUC: {colour_auc:.3f}")
    print(f"texture-feature logistic regression AUC: {texture_auc:.3f}")
    assert colour_auc <= 0.75
    assert texture_auc >= colour_auc + 0.10


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*.png"))}


def test_deterministic_and_regeneration_replaces(tmp_path):
    """Same seed => byte-identical files, whatever the worker count; another seed differs; and
    generating into a folder that holds another cohort leaves no file of the old one."""
    first = generate_cohort(tmp_path / "a", n_patients=2, seed=0, workers=1, progress=False)
    files_first = _snapshot(tmp_path / "a")
    assert any(name.startswith(MASK_DIR) for name in files_first)

    other = generate_cohort(tmp_path / "b", n_patients=2, seed=1, workers=2, progress=False)
    files_other = _snapshot(tmp_path / "b")
    assert other["patients"] != first["patients"]
    shared = set(files_first) & set(files_other)
    assert all(files_first[n] != files_other[n] for n in shared if not n.startswith(MASK_DIR))

    again = generate_cohort(tmp_path / "b", n_patients=2, seed=0, workers=2, progress=False)
    assert again == first
    assert _snapshot(tmp_path / "b") == files_first


def test_real_data_code_never_imports_the_generator():
    """The dataset layout lives in pipeline.names: ingest and the run folder do not load pipeline.synth,
    and the generator (with its command-line hooks) does not load TensorFlow."""
    import subprocess
    import sys

    code = ("import sys, pipeline.ingest, pipeline.store\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('pipeline.synth'))\n"
            "import pipeline.synth\n"
            "print(loaded, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False"


def test_command_line_hooks(tmp_path, capsys):
    import argparse

    from pipeline.synth import add_arguments, run_command

    parser = argparse.ArgumentParser(prog="synth")
    add_arguments(parser)
    for option, value in (("--patients", "0"), ("--patients", "1.5"), ("--seed", "-1")):
        with pytest.raises(SystemExit):
            parser.parse_args(["--out", str(tmp_path / "x"), option, value])
        assert f"argument {option}: must be a whole number of at least" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    args = parser.parse_args(["--out", str(tmp_path / "c"), "--patients", "1", "--seed", "3"])
    assert (args.patients, args.seed) == (1, 3)
    assert run_command(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("synthetic cohort: 1 patients, ") and out.rstrip().endswith("SYNTHETIC, not real tissue")
    assert (tmp_path / "c" / SYNTHETIC_MARKER).exists()
