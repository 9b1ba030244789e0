"""Ingest on hand-made dataset folders: layouts, bad files, edge patches, skip and resume."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import ingest, store


def _png(path: Path, w=50, h=50, seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return arr


def _patch(root: Path, pid: str, x: int, y: int, label: int, **kw):
    return _png(root / pid / str(label) / f"{pid}_idx5_x{x}_y{y}_class{label}.png", **kw)


@pytest.fixture
def messy_root(tmp_path) -> Path:
    root = tmp_path / "data"
    for i, (x, y) in enumerate([(1, 1), (51, 1), (1, 51), (51, 51)]):
        _patch(root, "100", x, y, i % 2, seed=i)
    _patch(root, "100", 101, 101, 0, h=20, seed=9)                     # edge patch, 50 wide 20 high
    for i in range(3):
        _patch(root, "200", 1 + 50 * i, 1, 1, seed=10 + i)
    (root / "200" / "0").mkdir()
    (root / "200" / "0" / "200_idx5_x1_y51_class0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # corrupt
    good = root / "200" / "1" / "200_idx5_x101_y1_class1.png"
    (root / "200" / "0" / "200_idx5_x51_y51_class0.png").write_bytes(good.read_bytes()[:120])  # truncated
    shutil.copy(good, root / "200" / "0" / "200_idx5_x101_y51_class1.png")  # name says 1, folder says 0
    _png(root / "200" / "0" / "200_idx5_x151_y51_class0.png", mode="RGBA")  # not RGB
    _png(root / "200" / "0" / "200_idx5_x201_y51_class0.png", w=60, h=60)  # oversized
    (root / "200" / "0" / "notes.txt").write_text("stray")
    (root / "README.txt").write_text("stray file at the root")
    return root


def test_bad_files_are_listed_never_fatal(messy_root, tmp_path):
    run = tmp_path / "run"
    info = ingest.ingest(messy_root, run, workers=1, progress=False)
    m = store.read_manifest(run)
    assert info["n_patches"] == len(m) == 8
    assert info["n_patients"] == 2
    report = store.read_ingest_report(run)
    reasons = dict(zip(report["file"], report["reason"]))
    assert "corrupt or truncated" in reasons["200/0/200_idx5_x1_y51_class0.png"]
    assert "corrupt or truncated" in reasons["200/0/200_idx5_x51_y51_class0.png"]
    assert "folder says class 0" in reasons["200/0/200_idx5_x101_y51_class1.png"]
    assert "not an RGB image" in reasons["200/0/200_idx5_x151_y51_class0.png"]
    assert "oversized" in reasons["200/0/200_idx5_x201_y51_class0.png"]
    assert "notes.txt" in " ".join(reasons) and "README.txt" in reasons
    assert len(report) == info["n_skipped"] == 7
    assert "7 files skipped" in ingest.summarise(info, run)


def test_patches_round_trip_and_edge_patch_is_padded(tmp_path):
    root = tmp_path / "data"
    full = _patch(root, "300", 1, 1, 0, seed=1)
    edge = _patch(root, "300", 1, 51, 1, h=17, seed=2)
    run = tmp_path / "run"
    ingest.ingest(root, run, workers=1, progress=False)
    m, p = store.read_manifest(run), store.read_patches(run)
    assert p.shape == (2, 50, 50, 3) and p.dtype == np.uint8
    assert (m["width"].tolist(), m["height"].tolist()) == ([50, 50], [50, 17])
    np.testing.assert_array_equal(p[0], full)
    np.testing.assert_array_equal(p[1, :17], edge)
    assert (p[1, 17:] == store.PAD_VALUE).all()


def test_archive_layout_with_every_patient_twice_is_deduplicated(tmp_path):
    root = tmp_path / "download"
    for base in (root, root / ingest.ARCHIVE_SUBDIR):
        for i in range(3):
            _patch(base, "400", 1 + 50 * i, 1, i % 2, seed=i)
        _patch(base, "401", 1, 1, 0, seed=5)
    run = tmp_path / "run"
    info = ingest.ingest(root, run, workers=1, progress=False)
    assert info["n_patches"] == 4 and info["duplicate_patient_copies"] == 2
    assert store.read_ingest_report(run).empty


def test_missing_or_empty_data_folder_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest.ingest(tmp_path / "nope", tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no patient folders"):
        ingest.ingest(tmp_path / "empty", tmp_path / "run")


def test_rerun_is_skipped_until_an_input_changes(messy_root, tmp_path):
    run = tmp_path / "run"
    ingest.ingest(messy_root, run, workers=2, progress=False)
    assert ingest.ingest(messy_root, run, workers=2, progress=False).get("skipped")
    _patch(messy_root, "100", 151, 1, 1, seed=42)
    again = ingest.ingest(messy_root, run, workers=2, progress=False)
    assert not again.get("skipped") and again["n_patches"] == 9


def test_interrupted_ingest_resumes_without_redoing_chunks(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for i in range(10):
        _patch(root, "500", 1 + 50 * i, 1, i % 2, seed=i)
    fresh = tmp_path / "fresh"
    ingest.ingest(root, fresh, workers=1, progress=False)
    monkeypatch.setattr(ingest, "CHUNK", 3)
    real = ingest._decode_chunk
    calls = []

    def failing(args):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the third chunk
        calls.append(args[0])
        return real(args)

    run = tmp_path / "run"
    monkeypatch.setattr(ingest, "_decode_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest(root, run, workers=1, progress=False)
    assert not (run / store.PATCHES).exists() and (run / ingest.PROGRESS).exists()

    resumed = []
    monkeypatch.setattr(ingest, "_decode_chunk", lambda args: (resumed.append(args[0]), real(args))[1])
    ingest.ingest(root, run, workers=1, progress=False)
    assert resumed == [2, 3]  # chunks 0 and 1 were kept from the interrupted run
    np.testing.assert_array_equal(store.read_patches(run), store.read_patches(fresh))
    assert not (run / ingest.PROGRESS).exists() and not (run / ingest.PARTIAL).exists()
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]
