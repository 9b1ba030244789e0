"""ingest-slides on tiny pyramidal TIFFs made here: tiling, scale, tissue, labels, bad slides, resume, Ray.

The slide: 2400 x 2000 px at 1.0 um/px (so 4:1 onto the dataset's 4 um/px: 12 x 10 patches of
50 px), pyramid levels at downsample 1, 2 and 8 (patches are read from level 1 and area-resized 2:1,
the tissue thumbnail from level 2), tissue an ellipse of known outline with one small hole (a
lumen, to be filled) and one tissue-coloured speck far from it (dust, to be removed), and an IDC
region given as a QuPath GeoJSON triangle in level-0 pixels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import ingest_slides, store, tissue, wsi
from pipeline.names import DATASET_MPP, PATCH_SIZE

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("openslide")

H, W, MPP = 2000, 2400, 1.0
SCALE = DATASET_MPP / MPP  # level-0 px per resampled px
CELL = int(PATCH_SIZE * SCALE)  # level-0 px per patch side
IDC_TRIANGLE = [[1300, 600], [2000, 900], [1500, 1500], [1300, 600]]


def _truth():
    yy, xx = np.mgrid[0:H, 0:W]
    ellipse = ((xx - 1200) / 950.0) ** 2 + ((yy - 1000) / 750.0) ** 2 <= 1
    hole = (xx - 900) ** 2 + (yy - 800) ** 2 <= 40 ** 2
    speck = (xx - 150) ** 2 + (yy - 150) ** 2 <= 15 ** 2
    return ellipse, hole, speck


def _write_slide(path: Path, mpp: float | None = MPP, levels=(1, 2, 8), seed=0) -> None:
    ellipse, hole, speck = _truth()
    rng = np.random.default_rng(seed)
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (244, 244, 246)  # glass
    pink = np.array([215, 140, 185], np.float32) + rng.normal(0, 12, (H, W, 1)).astype(np.float32)
    t = ellipse & ~hole
    img[t] = np.clip(pink[t], 0, 255).astype(np.uint8)
    img[speck] = (120, 40, 110)
    with tifffile.TiffWriter(path) as tw:
        for i, d in enumerate(levels):
            extra = {}
            if mpp:  # OpenSlide's generic-tiff driver reads openslide.mpp-x from XResolution in centimetres
                res = 1e4 / (mpp * d)
                extra = dict(resolution=(res, res), resolutionunit="CENTIMETER")
            tw.write(img[::d, ::d], photometric="rgb", compression="zlib", compressionargs={"level": 1},
                     tile=(256, 256), subfiletype=0 if i == 0 else 1, **extra)


def _annotation(path: Path, ring=IDC_TRIANGLE, cls="IDC") -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": cls, "color": [200, 0, 0]}}}]}))
    return path


def _cells(mask: np.ndarray) -> np.ndarray:
    """(rows, cols) share of each patch cell of a level-0 mask."""
    rows, cols = H // CELL, W // CELL
    return mask[:rows * CELL, :cols * CELL].reshape(rows, CELL, cols, CELL).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slides")
    _write_slide(d / "case 01.tif")  # a space: the patient id becomes case_01
    _annotation(d / "case 01.geojson")
    _write_slide(d / "noscale.tif", mpp=None, seed=1)
    data = (d / "case 01.tif").read_bytes()
    (d / "truncated.tif").write_bytes(data[:len(data) * 6 // 10])
    with tifffile.TiffFile(d / "case 01.tif") as tif:  # one tile of level 1 zeroed: opens, fails mid-read
        page = tif.pages[1]
        off, count = page.dataoffsets[len(page.dataoffsets) // 2], page.databytecounts[len(page.dataoffsets) // 2]
    damaged = bytearray(data)
    damaged[off:off + count] = bytes(count)
    (d / "damaged.tif").write_bytes(bytes(damaged))
    return d


@pytest.fixture(scope="module")
def run(slides, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "slides"
    record = ingest_slides.ingest_slides([slides / "case 01.tif", slides / "noscale.tif", slides / "truncated.tif",
                                          slides / "damaged.tif"], out, annotations=[slides], progress=False)
    return out, record


# --------------------------------------------------------------------------- pure functions
def test_otsu_and_tissue_mask_on_known_shapes():
    rng = np.random.default_rng(0)
    img = np.full((200, 200, 3), 245, np.uint8)
    img[40:160, 30:170] = (210, 120, 180)
    img[90:95, 90:95] = 245  # a 25 px hole: filled
    img[5:8, 5:8] = (210, 120, 180)  # a 9 px speck: removed
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    mask = tissue.tissue_mask(img, min_object_px=50, min_hole_px=50)
    truth = np.zeros((200, 200), bool)
    truth[40:160, 30:170] = True
    assert (mask == truth).mean() > 0.999
    assert not mask[5:8, 5:8].any() and mask[90:95, 90:95].all()
    assert not tissue.tissue_mask(np.full((50, 50, 3), 240, np.uint8)).any()  # bare glass: no tissue


def test_block_fraction_and_labels():
    m = np.zeros((20, 30), bool)
    m[:10, :15] = True
    m[10:, 15:20] = True
    f = tissue.block_fraction(m, 2, 3, 10)
    np.testing.assert_allclose(f, [[1, 0.5, 0], [0, 0.5, 0]])
    assert tissue.patch_labels(f).tolist() == [[1, 1, 0], [0, 1, 0]]


def test_pick_level_is_the_coarsest_at_or_above_the_resolution():
    assert wsi.pick_level((1, 4, 16, 64), 16) == 2
    assert wsi.pick_level((1, 4, 16, 64), 10) == 1
    assert wsi.pick_level((1.0, 4.0003, 16.001), 4.0) == 1  # rounded downsamples still fit
    assert wsi.pick_level((2, 8), 1) == 0  # nothing fine enough: the finest there is
    g = wsi.slide_geometry(100_000, 80_000, 0.25, (1, 4, 16, 64))
    assert (g.scale, g.level, g.cols, g.rows) == (16.0, 2, 125, 100)


def test_patient_id_from_name():
    assert ingest_slides.patient_id_from_name("case 01.svs") == "case_01"
    assert ingest_slides.patient_id_from_name("a.ome.tiff") == "a"
    assert ingest_slides.patient_id_from_name("\uff11\uff12.tif") == "12"  # full-width digits, NFKC
    assert ingest_slides.patient_id_from_name("../x/slide #3 (HE).svs") == "slide__3__HE_"
    for nothing_left in ("\u00e9.tif", "_.svs"):
        with pytest.raises(ValueError, match="rename the file"):
            ingest_slides.patient_id_from_name(nothing_left)


# --------------------------------------------------------------------------- a whole ingest
def test_the_slide_is_tiled_on_the_dataset_grid(run):
    out, record = run
    manifest = store.read_manifest(out)
    patches = store.read_patches(out)
    meta = store.read_meta(out)
    assert meta["mpp"] == DATASET_MPP and set(manifest["patient_id"]) == {"case_01"}
    info = meta["slides"]["case_01"]
    assert (info["slide_mpp"], info["scale"], info["level"], info["level_downsample"]) == (1.0, 4.0, 1, 2.0)
    assert info["file"] == "case 01.tif" and info["size_resampled"] == [600, 500]
    assert ((manifest["x"] - 1) % PATCH_SIZE == 0).all() and ((manifest["y"] - 1) % PATCH_SIZE == 0).all()
    assert (manifest[["width", "height"]] == PATCH_SIZE).all().all() and len(patches) == len(manifest)
    # Kept patches = cells at least half tissue by the truth, up to cells within a few % of the cut.
    ellipse, hole, speck = _truth()
    frac = _cells(ellipse)
    kept = np.zeros_like(frac, bool)
    kept[(manifest["y"] - 1) // PATCH_SIZE, (manifest["x"] - 1) // PATCH_SIZE] = True
    clear = np.abs(frac - 0.5) > 0.05
    assert (kept == (frac >= 0.5))[clear].all() and kept.sum() == pytest.approx((frac >= 0.5).sum(), abs=2)
    # Pixels: a patch is the level-0 area mean of its cell (4:1), within the noise of one read.
    r = manifest.iloc[len(manifest) // 2]
    src = tifffile.imread(_slide_path(out), level=0)
    x0, y0 = int(r.x - 1) * int(SCALE), int(r.y - 1) * int(SCALE)
    expect = src[y0:y0 + CELL, x0:x0 + CELL].reshape(50, 4, 50, 4, 3).mean(axis=(1, 3))
    assert np.abs(patches[len(manifest) // 2].astype(float) - expect).mean() < 4


def _slide_path(out: Path) -> Path:
    return Path(store.read_meta(out)["slides"]["case_01"]["path"])


def test_tissue_mask_matches_the_truth(run):
    out, _ = run
    from PIL import Image

    with Image.open(store.tissue_mask_path(out, "case_01")) as im:
        mask = np.asarray(im) > 127
    ellipse, hole, speck = _truth()
    k = ingest_slides.THUMB_PER_PATCH
    step = CELL // k  # level-0 px per thumbnail px
    truth = _cells_at(ellipse, step) >= 0.5  # the hole is filled and the speck dropped: the truth is the ellipse
    assert mask.shape == truth.shape == (10 * k, 12 * k)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.97
    assert not mask[: 300 // step, : 300 // step].any()  # the speck is gone
    assert mask[800 // step, 900 // step]  # the hole is filled


def _cells_at(mask, step):
    h, w = mask.shape[0] // step, mask.shape[1] // step
    return mask[:h * step, :w * step].reshape(h, step, w, step).mean(axis=(1, 3))


def test_labels_come_from_the_annotation(run):
    out, _ = run
    from skimage.draw import polygon

    manifest = store.read_manifest(out)
    idc = np.zeros((H, W), bool)
    ring = np.asarray(IDC_TRIANGLE, float)
    rr, cc = polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape=(H, W))
    idc[rr, cc] = True
    frac = _cells(idc)[(manifest["y"] - 1) // PATCH_SIZE, (manifest["x"] - 1) // PATCH_SIZE]
    clear = np.abs(frac - tissue.IDC_OVERLAP) > 0.03
    labels = manifest["label"].to_numpy()
    assert set(labels) <= {0, 1} and labels.sum() > 3
    assert (labels == (frac >= tissue.IDC_OVERLAP))[clear].all()
    assert store.read_region_mask(out, "case_01").shape == (500, 600)  # the region, for the app's outline


def test_bad_slides_are_reported_and_the_batch_goes_on(run):
    out, record = run
    report = store.read_ingest_report(out)
    reasons = dict(zip(report["file"].map(lambda f: Path(f).name), report["reason"]))
    assert "--mpp" in reasons["noscale.tif"] and "no scale" in reasons["noscale.tif"]
    assert "truncated" in reasons["truncated.tif"] and "re-copy" in reasons["truncated.tif"]
    assert "while reading its pixels" in reasons["damaged.tif"] and "re-copy" in reasons["damaged.tif"]
    assert not (out / ingest_slides.PARTS / "damaged.json").exists()  # not finished: retried on a re-run
    assert record["n_patients"] == 1 and record["slides_tiled"] == 1


def test_rerun_skips_finished_slides_and_mpp_rescues_the_unscaled_one(run, slides, capsys):
    out, _ = run
    args = [slides / "case 01.tif", slides / "noscale.tif", slides / "truncated.tif"]
    again = ingest_slides.ingest_slides(args, out, annotations=[slides], progress=False)
    assert again["slides_resumed"] == 1 and again["slides_tiled"] == 0 and again.get("skipped")
    assert "truncated.tif" in capsys.readouterr().err  # named on stderr again
    # With --mpp the unscaled slide is tiled; the finished one, which has its own scale, is still skipped.
    with_mpp = ingest_slides.ingest_slides(args[:2], out, annotations=[slides], mpp=1.0, progress=False)
    assert with_mpp["n_patients"] == 2 and not with_mpp.get("skipped")
    assert (with_mpp["slides_tiled"], with_mpp["slides_resumed"]) == (1, 1)
    manifest = store.read_manifest(out)
    assert set(manifest["patient_id"]) == {"case_01", "noscale"}
    assert (manifest.loc[manifest["patient_id"] == "noscale", "label"] == store.UNLABELLED).all()
    assert store.read_meta(out)["slides"]["noscale"]["mpp_source"] == "--mpp"


def test_a_slide_coarser_than_the_dataset_is_refused(slides, tmp_path):
    record = ingest_slides.ingest_slides([slides / "case 01.tif", slides / "noscale.tif"], tmp_path / "coarse",
                                         mpp=8.0, progress=False)
    reasons = store.read_ingest_report(tmp_path / "coarse")["reason"].tolist()
    assert record["n_patients"] == 1 and any("coarser than the dataset's 4 um/px" in r for r in reasons)


def test_the_project_export_is_read_in_the_resampled_frame(tmp_path):
    from pipeline import geojson

    rows = __import__("pandas").DataFrame({"patient_id": "p", "x": [51, 101], "y": [1, 1], "width": 50, "height": 50,
                                           "label": 0, "prob": [0.9, 0.1]})
    path = geojson.write_geojson(tmp_path / "p.geojson", geojson.patches_to_feature_collection(rows, 0.5))
    regions = ingest_slides.idc_regions(path, SCALE, "IDC")
    assert len(regions) == 1  # the tile classified IDC
    assert regions[0].bounds == (50 * SCALE, 0.0, 100 * SCALE, 50 * SCALE)  # level-0 pixels


def test_read_region_at_full_resolution(run):
    out, _ = run
    meta = store.read_meta(out)
    manifest = store.read_manifest(out)
    r = manifest.iloc[0]
    region = wsi.read_region_at_full_resolution(meta, "case_01", int(r.x), int(r.y))
    assert region.shape == (CELL, CELL, 3)
    src = tifffile.imread(_slide_path(out), level=0)
    x0, y0 = int(r.x - 1) * CELL // PATCH_SIZE, int(r.y - 1) * CELL // PATCH_SIZE
    np.testing.assert_array_equal(region, src[y0:y0 + CELL, x0:x0 + CELL])
    with pytest.raises(wsi.SlideError, match="no whole-slide image"):
        wsi.read_region_at_full_resolution(meta, "nobody", 1, 1)


def test_command_line(slides, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "cli"
    assert main(["ingest-slides", "--slides", str(slides / "case 01.tif"), "--out", str(out), "--min-tissue",
                 "0.9"]) == 0
    assert "patches of 1 slides" in capsys.readouterr().out
    manifest = store.read_manifest(out)
    assert (manifest["label"] == store.UNLABELLED).all()  # no --annotations: unlabelled
    assert main(["ingest-slides", "--slides", str(slides / "truncated.tif"), "--out", str(tmp_path / "bad")]) == 2


def test_ray_runs_the_same_per_slide_function(slides, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray==2.60.0)")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        record = ingest_slides.ingest_slides([slides / "case 01.tif", slides / "truncated.tif"], out,
                                             annotations=[slides], ray_address="local", progress=False)
    finally:
        ray.shutdown()
    assert record["n_patients"] == 1 and record["n_skipped"] == 1
    manifest = store.read_manifest(out)
    assert len(manifest) == record["n_patches"] > 0


# --------------------------------------------------------------------------- scoring with a trained model
def _trained_run(folder: Path) -> Path:
    """A trained run as `score --run` reads one: model.keras, thresholds, calibration, the train stage.

    A tiny untrained network stands in for a trained one (this tests the plumbing, not the model),
    so the test needs no training.
    """
    import keras

    inputs = keras.Input((PATCH_SIZE, PATCH_SIZE, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(keras.layers.Rescaling(1 / 255.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))
    folder.mkdir(parents=True)
    model.save(folder / store.MODEL)
    store.update_meta(folder, thresholds={"default": 0.5}, calibration={"temperature": 1.0, "bias": 0.0},
                      context=None, tta=False, arch="tiny", cam_layer="conv", source={"kind": "trained"},
                      stages={"train": {"fingerprint": "tiny"}})
    return folder


def test_score_run_scores_slide_runs_in_place(slides, tmp_path, capsys):
    from pipeline.cli import main

    trained = _trained_run(tmp_path / "trained")
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "unlabelled"
    ingest_slides.ingest_slides([slides / "case 01.tif"], labelled, annotations=[slides], progress=False)
    ingest_slides.ingest_slides([slides / "case 01.tif"], unlabelled, progress=False)
    assert main(["score", "--run", str(trained), "--out", str(labelled)]) == 0
    assert "Evaluation on the test split: 1 patients" in capsys.readouterr().out
    run = store.load_run(labelled)  # what the app loads
    assert len(run.table) == len(store.read_manifest(labelled)) and run.table["prob"].between(0, 1).all()
    assert (run.table["split"] == "test").all() and run.mpp == DATASET_MPP
    # Exported for QuPath in the slide's level-0 pixels; read back as annotations, its IDC tiles are the
    # patches the model called IDC (the round trip through the slide's own frame).
    assert main(["export-geojson", "--run", str(labelled), "--out", str(tmp_path / "qupath"),
                 "--threshold", "0.5"]) == 0
    fc = json.loads((tmp_path / "qupath" / "case_01.geojson").read_text())
    table = run.table.set_index(["x", "y"])
    for f in fc["features"]:
        x, y = int(f["properties"]["metadata"]["x"]), int(f["properties"]["metadata"]["y"])
        ring = np.asarray(f["geometry"]["coordinates"][0])
        w, h = table.loc[(x, y), ["width", "height"]]
        assert ring.min(axis=0).tolist() == [(x - 1) * SCALE, (y - 1) * SCALE]
        assert ring.max(axis=0).tolist() == [(x - 1 + w) * SCALE, (y - 1 + h) * SCALE]
    again = tmp_path / "again"
    ingest_slides.ingest_slides([slides / "case 01.tif"], again, annotations=[tmp_path / "qupath"], progress=False)
    relabelled = store.read_manifest(again).set_index(["x", "y"])["label"]
    called = (table["prob"] >= 0.5).astype(int)
    assert relabelled.loc[called.index].tolist() == called.tolist()
    assert main(["score", "--run", str(trained), "--out", str(unlabelled)]) == 0
    assert "unlabelled" in capsys.readouterr().out
    assert store.load_run(unlabelled).thresholds == {"default": 0.5}  # carried over; no metrics without labels
    assert main(["score", "--run", str(trained), "--out", str(tmp_path / "none")]) == 2  # not a slides run
    assert "ingest-slides" in capsys.readouterr().err


def test_score_in_place_by_another_run_is_refused_or_moved_aside_with_force(slides, tmp_path, capsys):
    from pipeline.cli import main
    from tests.faults.conftest import tree_checksums

    a, b = _trained_run(tmp_path / "trained-a"), _trained_run(tmp_path / "trained-b")
    slides_run = tmp_path / "slides-run"
    ingest_slides.ingest_slides([slides / "case 01.tif"], slides_run, annotations=[slides], progress=False)
    assert main(["score", "--run", str(a), "--out", str(slides_run)]) == 0
    assert main(["score", "--run", str(a), "--out", str(slides_run)]) == 0  # the same run again: resumed
    capsys.readouterr()
    before = tree_checksums(slides_run)
    assert main(["score", "--run", str(b), "--out", str(slides_run)]) == 2
    err = capsys.readouterr().err
    assert f"--out {slides_run} was scored in place by another run ({a.resolve()}" in err and "--force" in err
    assert tree_checksums(slides_run) == before  # run A's scores and evaluation are kept
    assert main(["score", "--run", str(b), "--out", str(slides_run), "--force"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("slides-run.replaced-")]
    assert len(aside) == 1 and str(aside[0]) in capsys.readouterr().out
    kept, visible = tree_checksums(aside[0]), {k: v for k, v in before.items() if not k.startswith(".")}
    assert {k: kept.get(k) for k in visible} == visible  # A's scoring whole, beside the ingest (hard links)
    assert all(before[k] == v for k, v in tree_checksums(slides_run).items() if k.startswith("."))  # resume state
    assert store.load_run(aside[0]).meta["source_run"] == str(a.resolve())  # and it opens as a run
    assert store.read_meta(slides_run)["source_run"] == str(b.resolve())
    assert store.load_run(slides_run).table["prob"].between(0, 1).all()


def test_rasterise_regions_with_holes_and_edges():
    from pipeline.geojson import Region

    outer = np.array([[0, 0], [40, 0], [40, 40], [0, 40]], float)
    hole = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
    beyond = np.array([[70, 70], [200, 70], [200, 200], [70, 200]], float)  # runs off the mask
    mask = tissue.rasterise_regions([Region(outer, (hole,)), Region(beyond)], (50, 50), scale=2.0)
    expect = np.zeros((50, 50), bool)
    expect[:20, :20] = True
    expect[5:15, 5:15] = False
    expect[35:, 35:] = True
    np.testing.assert_array_equal(mask, expect)


def test_composite_on_white():
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128]]], np.uint8)
    assert wsi.composite_on_white(rgba).tolist() == [[[10, 20, 30], [255, 255, 255], [127, 127, 127]]]
