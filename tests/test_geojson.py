"""GeoJSON for QuPath (pipeline/geojson.py): patch tiles out, annotated regions in, overlap fractions."""
import json
import uuid

import numpy as np
import pandas as pd
import pytest

from pipeline import geojson as gj

THRESHOLD = 0.4


@pytest.fixture
def slide_rows() -> pd.DataFrame:
    """One patient's 4 x 3 grid of patches; the last column and row are edge patches (narrower/shorter)."""
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(1 + 50 * np.arange(4), 1 + 50 * np.arange(3))
    x, y = xs.ravel(), ys.ravel()
    width = np.where(x == x.max(), 23, 50)
    height = np.where(y == y.max(), 9, 50)
    prob = rng.random(len(x)).astype(np.float32)
    prob[0] = THRESHOLD  # exactly at the threshold: called IDC
    rows = pd.DataFrame({"patient_id": "10253", "x": x.astype(np.int32), "y": y.astype(np.int32),
                         "width": width.astype(np.int16), "height": height.astype(np.int16),
                         "label": rng.integers(0, 2, len(x)).astype(np.int8), "prob": prob,
                         "split": "test"})
    return rows.sample(frac=1, random_state=2)  # any order in, reading order out


@pytest.fixture
def reviews() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [1, 2, 3, 4, 5],
        "patient_id": ["10253", "10253", "10253", "10253", "99"],
        "x": [1, 1, 1, 51, 1], "y": [1, 1, 1, 51, 1],
        "verdict": ["agree", "label_wrong", "unsure", "agree", "agree"],
        "reviewer": ["ann", "ann", "bob", "ann", "ann"],
        "created_at": ["2025-01-01T09:00:00.000+00:00", "2025-01-01T10:00:00.000+00:00",
                       "2025-01-01T09:30:00.000+00:00", "2025-01-01T09:00:00.000+00:00",
                       "2025-01-01T09:00:00.000+00:00"],
    })


def test_every_feature_is_a_closed_square_at_the_patch_pixels(slide_rows, reviews):
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD, reviews)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(slide_rows)
    by_key = slide_rows.set_index(["x", "y"])
    order = []
    for f in fc["features"]:
        assert f["type"] == "Feature"
        geometry = f["geometry"]
        assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 1
        ring = geometry["coordinates"][0]
        assert len(ring) == 5 and ring[0] == ring[-1]
        assert all(isinstance(c, int) for pos in ring for c in pos)
        meta = f["properties"]["metadata"]
        x, y = int(meta["x"]), int(meta["y"])
        order.append((y, x))
        patch = by_key.loc[(x, y)]
        x0, y0 = x - 1, y - 1
        x1, y1 = x0 + int(patch["width"]), y0 + int(patch["height"])
        pts = np.array(ring)
        assert (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()) == (x0, y0, x1, y1)
        assert set(map(tuple, ring[:4])) == {(x0, y0), (x1, y0), (x1, y1), (x0, y1)}  # a box, no diagonal
        # counter-clockwise by RFC 7946's right-hand rule (positive shoelace area), as the module says
        assert gj.signed_area(ring) == (x1 - x0) * (y1 - y0)
        assert str(uuid.UUID(f["id"])) == f["id"] == gj.patch_id("10253", x, y)
    assert order == sorted(order)  # reading order
    edge = [f for f in fc["features"] if f["properties"]["metadata"]["x"] == "151"
            and f["properties"]["metadata"]["y"] == "101"][0]
    assert edge["geometry"]["coordinates"][0][2] == [150 + 23, 100 + 9]


def test_polygons_line_up_with_the_rebuilt_slide(slide_rows):
    from app.slides import rebuild_slide

    n = len(slide_rows)
    colours = np.arange(1, n + 1, dtype=np.uint8)
    patches = np.broadcast_to(colours[:, None, None, None], (n, 50, 50, 3)).copy()
    slide = rebuild_slide(patches, slide_rows["x"].to_numpy(), slide_rows["y"].to_numpy(),
                          slide_rows["width"].to_numpy(), slide_rows["height"].to_numpy())
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD)
    colour_of = dict(zip(zip(slide_rows["x"], slide_rows["y"]), colours))
    covered = np.zeros(slide.shape[:2], int)
    for f in fc["features"]:
        pts = np.array(f["geometry"]["coordinates"][0])
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        meta = f["properties"]["metadata"]
        assert (slide[y0:y1, x0:x1] == colour_of[(int(meta["x"]), int(meta["y"]))]).all()
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()  # the tiles tile the slide frame exactly, without overlap


def test_classification_and_properties_as_qupath_writes_them(slide_rows, reviews):
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD, reviews)
    rows = slide_rows.set_index(["x", "y"])
    for f in fc["features"]:
        props = f["properties"]
        assert props["objectType"] == "tile"
        meta, meas = props["metadata"], props["measurements"]
        patch = rows.loc[(int(meta["x"]), int(meta["y"]))]
        predicted = int(float(patch["prob"]) >= THRESHOLD)
        cls = props["classification"]
        assert set(cls) == {"name", "color"}
        assert cls["name"] == ("IDC" if predicted else "Non-IDC")
        assert cls["color"] == list(gj.CLASS_COLOURS[cls["name"]])
        assert len(cls["color"]) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in cls["color"])
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in meas.values())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
        assert meas["P(IDC)"] == float(patch["prob"]) and meas["label"] == int(patch["label"])
        assert meas["predicted"] == predicted and meas["threshold"] == THRESHOLD
        assert meta["outcome"] == ("TN", "FP", "FN", "TP")[2 * int(patch["label"]) + predicted]
        assert meta["label"] == ("IDC" if patch["label"] else "Non-IDC")
    first = next(f for f in fc["features"] if f["properties"]["metadata"]["x"] == "1"
                 and f["properties"]["metadata"]["y"] == "1")
    assert first["properties"]["classification"]["name"] == "IDC"  # prob == threshold counts as IDC
    meta, meas = first["properties"]["metadata"], first["properties"]["measurements"]
    # ann's latest verdict (label_wrong, 10:00) replaces her earlier agree; bob's stands beside it
    assert {k: v for k, v in meta.items() if k.startswith("verdict: ")} == {
        "verdict: ann": "label_wrong", "verdict: bob": "unsure"}
    assert (meas["reviews: agree"], meas["reviews: label_wrong"], meas["reviews: unsure"]) == (0, 1, 1)
    assert fc["idc_review"]["threshold"] == THRESHOLD and fc["idc_review"]["patient_id"] == "10253"
    json.dumps(fc, allow_nan=False)  # plain JSON


def test_write_read_round_trip(tmp_path, slide_rows, reviews):
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD, reviews, slide_name="slide A")
    path = gj.write_geojson(tmp_path / "10253.geojson", fc)
    assert [p.name for p in tmp_path.iterdir()] == ["10253.geojson"]  # no temporary file left behind
    assert json.loads(path.read_text()) == fc
    features = gj.read_geojson(path)
    rows, verdicts = gj.features_to_patches(features)
    expected = slide_rows.sort_values(["y", "x"]).reset_index(drop=True)
    for c in ("patient_id", "x", "y", "width", "height", "label"):
        assert rows[c].astype(str).tolist() == expected[c].astype(str).tolist(), c
    assert (rows["prob"].to_numpy(np.float32) == expected["prob"].to_numpy(np.float32)).all()  # exact
    predicted = (expected["prob"].to_numpy(np.float64) >= THRESHOLD).astype(int)
    assert rows["predicted"].tolist() == predicted.tolist()
    assert rows["outcome"].tolist() == [("TN", "FP", "FN", "TP")[2 * lab + p]
                                        for lab, p in zip(expected["label"], predicted)]
    assert (rows["threshold"] == THRESHOLD).all()
    assert verdicts.sort_values(["x", "y", "reviewer"]).values.tolist() == [
        ["10253", 1, 1, "ann", "label_wrong"], ["10253", 1, 1, "bob", "unsure"], ["10253", 51, 51, "ann", "agree"]]
    # bytes and file objects read the same
    assert gj.read_geojson(path.read_bytes()) == features
    with open(path, "rb") as fh:
        assert gj.read_geojson(fh) == features


def test_a_failed_write_leaves_nothing(tmp_path, slide_rows):
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD)
    fc["features"][0]["geometry"]["coordinates"][0].pop()  # ring no longer closed
    with pytest.raises(gj.GeoJSONError, match="feature 0"):
        gj.write_geojson(tmp_path / "x.geojson", fc)
    assert list(tmp_path.iterdir()) == []


def test_one_collection_per_patient(tmp_path, slide_rows, reviews):
    other = slide_rows.assign(patient_id="8863")
    both = pd.concat([slide_rows, other])
    with pytest.raises(ValueError, match="2 patients"):
        gj.patches_to_feature_collection(both, THRESHOLD)
    paths = gj.write_patient_geojson(tmp_path, both, THRESHOLD, reviews)
    assert sorted(paths) == ["10253", "8863"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10253.geojson", "8863.geojson"]
    rows, verdicts = gj.features_to_patches(gj.read_geojson(paths["8863"]))
    assert (rows["patient_id"] == "8863").all() and len(rows) == len(other) and verdicts.empty


def test_bad_rows_are_refused(slide_rows):
    for change in ({"prob": np.nan}, {"prob": 1.5}, {"width": 0}, {"height": 51}, {"label": 2}, {"x": 0}):
        with pytest.raises(ValueError):
            gj.patches_to_feature_collection(slide_rows.assign(**change), THRESHOLD)
    with pytest.raises(ValueError):
        gj.patches_to_feature_collection(slide_rows, 1.2)
    with pytest.raises(ValueError):
        gj.patches_to_feature_collection(slide_rows, THRESHOLD, object_type="cell")
    with pytest.raises(ValueError, match="appears once"):
        gj.patches_to_feature_collection(pd.concat([slide_rows, slide_rows.iloc[:1]]), THRESHOLD)
    annotation = gj.patches_to_feature_collection(slide_rows, THRESHOLD, object_type="annotation")
    assert {f["properties"]["objectType"] for f in annotation["features"]} == {"annotation"}


# --------------------------------------------------------------------------- reading QuPath's files
SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]
HOLE = [[25, 25], [25, 75], [75, 75], [75, 25], [25, 25]]
QUPATH_04 = {  # as QuPath 0.4+ writes it (File > Object data... > Export as GeoJSON)
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
         "geometry": {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
         "properties": {"objectType": "annotation", "classification": {"name": "IDC", "color": [200, 0, 0]}}},
        {"type": "Feature", "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
         "geometry": {"type": "MultiPolygon", "coordinates": [
             [[[200, 0], [300, 0], [300, 50], [200, 50], [200, 0]]],
             [[[400.5, 0], [450.5, 0], [450.5, 50], [400.5, 0]]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "IDC", "color": [200, 0, 0]},
                        "isLocked": True}},
        {"type": "Feature", "id": "b1a0f6c2-3a7e-4a5b-9c1d-2e3f4a5b6c7d",
         "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
         "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
         "properties": {"objectType": "detection", "classification": {"name": "IDC", "color": [200, 0, 0]},
                        "measurements": {"Area": 1.0}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]},
         "properties": {"objectType": "annotation", "classification": {"name": "IDC", "color": [200, 0, 0]}}},
    ],
}
QUPATH_03 = [  # v0.3: a JSON array, packed colorRGB, measurements as a list, no objectType on one
    {"type": "Feature", "id": "PathAnnotationObject",
     "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
     "properties": {"classification": {"name": "IDC", "colorRGB": -3670016},
                    "measurements": [{"name": "Area", "value": 10000.0}]}},
]


def test_read_qupath_files_and_regions():
    features = gj.read_geojson(json.dumps(QUPATH_04).encode())
    assert len(features) == 5
    regions = gj.regions_from_geojson(features)  # IDC annotations; the point has no area
    assert [r.feature_index for r in regions] == [0, 1, 1]
    assert len(regions[0].holes) == 1 and regions[0].exterior.shape == (4, 2)
    assert regions[0].bounds == (0.0, 0.0, 100.0, 100.0)
    assert [r.feature_index for r in gj.regions_from_geojson(features, "Stroma")] == [2]
    assert len(gj.regions_from_geojson(features, object_types=None)) == 4
    assert len(gj.regions_from_geojson(features, classification=None)) == 4
    assert gj.classification_colour(features[0]) == (200, 0, 0)
    old = gj.read_geojson(json.dumps(QUPATH_03).encode())
    assert gj.classification_name(old[0]) == "IDC" and gj.object_type(old[0]) == "annotation"
    assert gj.classification_colour(old[0]) == (200, 0, 0)  # -3670016 = 0xFFC80000
    assert len(gj.regions_from_geojson(old)) == 1
    single = gj.read_geojson(json.dumps(QUPATH_04["features"][0]).encode())
    assert len(single) == 1
    derived = {"properties": {"classification": {"names": ["Tumor", "Positive"], "color": [1, 2, 3]}}}
    assert gj.classification_name(derived) == "Tumor: Positive"


@pytest.mark.parametrize("broken,reason", [
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE[:-1]]}}, "not closed"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}}, "at least 4"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [1, 1], [0, 0]]]}},
     "finite numbers"),
    ({"type": "Feature", "geometry": {"type": "Hexagon", "coordinates": []}}, "unknown geometry type"),
    ({"type": "Feature", "geometry": None}, "geometry must be"),
    ({"type": "Polygon", "coordinates": [SQUARE]}, "not a Feature"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]}, "properties": []}, "properties"),
])
def test_read_geojson_names_the_broken_feature(broken, reason):
    fc = {"type": "FeatureCollection", "features": [QUPATH_04["features"][0], broken]}
    with pytest.raises(gj.GeoJSONError, match=f"feature 1: .*{reason}"):
        gj.read_geojson(json.dumps(fc).encode())


def test_read_geojson_refuses_non_geojson(tmp_path):
    for data in (b"{not json", b'{"type": "Topology"}', b"\xff\xfe", b'{"type": "FeatureCollection"}'):
        with pytest.raises(gj.GeoJSONError):
            gj.read_geojson(data)
    with pytest.raises(gj.GeoJSONError, match="not a patch tile"):
        gj.features_to_patches(gj.read_geojson(json.dumps(QUPATH_04).encode()))


# --------------------------------------------------------------------------- overlap fractions
def region(*rings):
    return gj.Region(np.asarray(rings[0], float)[:-1], tuple(np.asarray(r, float)[:-1] for r in rings[1:]))


@pytest.mark.parametrize("box,expected", [
    ((10, 10, 50, 50), (2500 - 35 * 35) / 2500),  # the hole covers 25..60 of the box on both axes
    ((0, 0, 25, 25), 1.0),              # corner, clear of the hole
    ((80, 80, 50, 50), 0.16),           # 20 x 20 of 50 x 50
    ((-25, 0, 50, 50), 0.5),            # half outside on the left
    ((200, 200, 10, 10), 0.0),          # far away
    ((100, 0, 10, 10), 0.0),            # touching an edge only
    ((25, 25, 50, 50), 0.0),            # exactly the hole
    ((0, 0, 100, 100), 0.75),           # the square minus the hole
    ((20, 20, 10, 10), 0.75),           # straddling the hole's corner: 100 - 5 x 5
])
def test_overlap_fraction_on_a_square_with_a_hole(box, expected):
    assert gj.patch_overlap_fraction([region(SQUARE, HOLE)], *box) == pytest.approx(expected, abs=1e-12)


def test_overlap_fraction_on_triangles_and_concave_shapes():
    triangle = region([[0, 0], [50, 0], [0, 50], [0, 0]])  # the half below the box's anti-diagonal
    assert gj.patch_overlap_fraction([triangle], 0, 0, 50, 50) == pytest.approx(0.5, abs=1e-12)
    # a U shape (concave): 60 x 60 minus a 20 x 40 notch from the top middle
    u = region([[0, 0], [20, 0], [20, 40], [40, 40], [40, 0], [60, 0], [60, 60], [0, 60], [0, 0]])
    assert gj.patch_overlap_fraction([u], 0, 0, 60, 60) == pytest.approx((3600 - 800) / 3600, abs=1e-12)
    assert gj.patch_overlap_fraction([u], 20, 0, 20, 40) == pytest.approx(0.0, abs=1e-12)
    assert gj.patch_overlap_fraction([u], 10, 0, 20, 20) == pytest.approx(0.5, abs=1e-12)
    # orientation of the ring does not matter
    reversed_u = gj.Region(u.exterior[::-1].copy())
    assert gj.patch_overlap_fraction([reversed_u], 0, 0, 60, 60) == pytest.approx((3600 - 800) / 3600)


def test_overlapping_annotations_count_once():
    a = region([[0, 0], [30, 0], [30, 50], [0, 50], [0, 0]])
    b = region([[20, 0], [50, 0], [50, 50], [20, 50], [20, 0]])  # overlaps a on 20..30
    assert gj.patch_overlap_fraction([a, b], 0, 0, 50, 50) == pytest.approx(1.0)
    c = region([[0, 0], [10, 0], [10, 50], [0, 50], [0, 0]])  # inside a
    assert gj.patch_overlap_fraction([a, c], 0, 0, 50, 50) == pytest.approx(0.6)
    # disjoint parts are summed exactly
    d = region([[40, 0], [50, 0], [50, 50], [40, 50], [40, 0]])
    assert gj.patch_overlap_fraction([a, d], 0, 0, 50, 50) == pytest.approx(0.8, abs=1e-12)
    # a diagonal overlap is sampled: within a few parts in a thousand
    t1 = region([[0, 0], [50, 0], [0, 50], [0, 0]])
    t2 = region([[0, 0], [50, 50], [0, 50], [0, 0]])  # together: 3/4 of the box
    assert gj.patch_overlap_fraction([t1, t2], 0, 0, 50, 50) == pytest.approx(0.75, abs=0.005)


def test_exact_clipping_agrees_with_sampling_on_random_polygons():
    rng = np.random.default_rng(4)
    for _ in range(10):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
        radii = rng.uniform(10, 60, 12)  # a star-shaped, usually concave, polygon
        ring = np.c_[60 + radii * np.cos(angles), 60 + radii * np.sin(angles)]
        r = gj.Region(ring)
        box = (*rng.uniform(20, 70, 2), 50, 50)
        exact = gj.patch_overlap_fraction([r], *box)
        sampled = gj._inside(r, *(a.ravel() for a in np.meshgrid(box[0] + (np.arange(400) + 0.5) / 8,
                                                                  box[1] + (np.arange(400) + 0.5) / 8))).mean()
        assert exact == pytest.approx(sampled, abs=0.01)


def test_overlap_fractions_for_dataset_patches(slide_rows):
    # an IDC annotation over the first column of patches: pixels 0..50 wide, 0..150 high
    r = region([[0, 0], [50, 0], [50, 150], [0, 150], [0, 0]])
    fr = gj.overlap_fractions([r], slide_rows["x"], slide_rows["y"], slide_rows["width"], slide_rows["height"])
    expected = np.where(slide_rows["x"].to_numpy() == 1, 1.0, 0.0)
    np.testing.assert_allclose(fr, expected)
    half = region([[0, 0], [25, 0], [25, 150], [0, 150], [0, 0]])
    fr = gj.overlap_fractions([half], slide_rows["x"], slide_rows["y"], slide_rows["width"], slide_rows["height"])
    np.testing.assert_allclose(fr, np.where(slide_rows["x"].to_numpy() == 1, 0.5, 0.0))
    assert gj.overlap_fractions([], [1], [1], [50], [50]).tolist() == [0.0]
    with pytest.raises(ValueError):
        gj.patch_overlap_fraction([r], 0, 0, 0, 50)


def test_exported_tiles_read_back_as_regions(slide_rows):
    """What we export can come back as regions: IDC tiles cover exactly the predicted-IDC patches."""
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD)
    regions = gj.regions_from_geojson(gj.read_geojson(json.dumps(fc).encode()), "IDC", object_types=("tile",))
    fr = gj.overlap_fractions(regions, slide_rows["x"], slide_rows["y"], slide_rows["width"], slide_rows["height"])
    np.testing.assert_allclose(fr, (slide_rows["prob"].to_numpy(np.float64) >= THRESHOLD).astype(float))


def test_unlabelled_patches_export_without_a_label_or_an_outcome(slide_rows):
    """A whole-slide image without annotations (label -1): tiles carry the prediction, never a made-up label."""
    rows = slide_rows.assign(label=np.int8(-1), patient_id="case_01")
    fc = gj.patches_to_feature_collection(rows, THRESHOLD)
    gj.validate_feature_collection(fc)
    props = [f["properties"] for f in fc["features"]]
    assert {p["metadata"]["outcome"] for p in props} == {gj.UNLABELLED_OUTCOME}
    assert {p["metadata"]["label"] for p in props} == {gj.UNLABELLED_OUTCOME}
    assert all("label" not in p["measurements"] for p in props)
    called = {p["metadata"]["predicted"] for p in props}
    assert called <= {gj.CLASS_IDC, gj.CLASS_NON_IDC} and len(called) == 2
    mixed = slide_rows.assign(label=np.where(np.arange(len(slide_rows)) % 2, -1, slide_rows["label"]))
    outcomes = {f["properties"]["metadata"]["outcome"] for f in gj.patches_to_feature_collection(mixed, THRESHOLD)["features"]}
    assert gj.UNLABELLED_OUTCOME in outcomes and outcomes - {gj.UNLABELLED_OUTCOME} <= set(gj.OUTCOMES)


def test_a_whole_slide_runs_export_is_in_the_slides_level_0_pixels(slide_rows, tmp_path):
    scale = 4.0 / 0.25  # a 0.25 um/px scan tiled at the dataset's 4 um/px: 16 level-0 pixels per run pixel
    fc = gj.patches_to_feature_collection(slide_rows, THRESHOLD, scale=scale)
    gj.validate_feature_collection(fc)
    assert fc[gj.FOREIGN_MEMBER]["scale"] == scale
    for f in fc["features"]:
        meta = f["properties"]["metadata"]
        x, y = int(meta["x"]), int(meta["y"])
        row = slide_rows[(slide_rows["x"] == x) & (slide_rows["y"] == y)].iloc[0]
        x0, y0 = (x - 1) * scale, (y - 1) * scale
        x1, y1 = x0 + int(row["width"]) * scale, y0 + int(row["height"]) * scale
        assert f["geometry"]["coordinates"][0] == [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    # Read back in the run's frame: the same patches, sizes and figures as written.
    path = gj.write_geojson(tmp_path / "slide.geojson", fc)
    rows, _ = gj.features_to_patches(gj.read_geojson(path))
    want = slide_rows.sort_values(["y", "x"])
    assert rows[["x", "y", "width", "height"]].to_numpy().tolist() == \
        want[["x", "y", "width", "height"]].to_numpy().astype(int).tolist()
    with pytest.raises(ValueError, match="scale"):
        gj.patches_to_feature_collection(slide_rows, THRESHOLD, scale=0)


def test_annotations_from_our_export_land_on_the_slides_level_0(tmp_path):
    from pipeline import ingest_slides

    rows = pd.DataFrame({"patient_id": "p", "x": [51, 101], "y": [1, 1], "width": 50, "height": 50,
                         "label": 0, "prob": [0.9, 0.1]})
    scale = 8.0
    box = (50 * scale, 0.0, 100 * scale, 50 * scale)  # the IDC tile (51, 1) on the slide, level-0 pixels
    for written_with in (scale, 1.0):  # a whole-slide run's export, and one in the run's frame
        path = gj.write_geojson(tmp_path / f"p{written_with}.geojson",
                                gj.patches_to_feature_collection(rows, 0.5, scale=written_with))
        regions = ingest_slides.idc_regions(path, scale, "IDC")
        assert [r.bounds for r in regions] == [box]
