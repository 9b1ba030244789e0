"""GeoJSON for QuPath: patches out as square tiles, annotated regions back in. Owns the format.

Writing: one ``FeatureCollection`` per slide (a QuPath image is one slide; this dataset's slide is
one patient), one ``Feature`` per patch, which QuPath 0.4 / 0.5 imports by dragging the file onto
the open image (or File > Object data... > Import objects). Reading: any GeoJSON QuPath exports
(File > Object data... > Export as GeoJSON, or ``exportObjectsToGeoJson``), checked for structure,
and the polygons of annotations of one class, to label patches by how much of them a pathologist's
region covers (:func:`overlap_fractions`).

What QuPath writes, and so what is written here (checked against QuPath's source and docs):

* Feature: ``{"type": "Feature", "id": <UUID string>, "geometry": {...}, "properties": {...}}``.
  The ``id`` is a UUID since v0.4.0 (v0.2 stored the object type there); QuPath keeps a valid
  UUID as the object's id. Here it is a UUID 5 of the patch identity, so a re-export gives each
  patch the same id. Source: ``PathObjectTypeAdapters.PathObjectTypeAdapter.write/read``,
  qupath/qupath, qupath-core/src/main/java/qupath/lib/io/PathObjectTypeAdapters.java.
* ``properties.objectType``: "annotation", "detection", "tile", "cell", "tmaCore" or "root" (the
  same file; v0.3 read ``object_type``, still accepted); a feature without one is imported as an
  annotation. Patches are written as **"tile"**: QuPath's tile objects are the detections made by
  Analyze > Tiles & superpixels > Create tiles, a regular grid like this dataset's patches; they
  are light (thousands per slide are fine, unlike annotations), hidden and shown with the
  detections, and "Tile classifications to annotations" (qupath.lib.plugins.objects.
  TileClassificationsToAnnotationsPlugin: "Plugin to merge classified tiles into annotation
  objects") turns the IDC tiles into an IDC region. ``object_type="detection"`` or
  ``"annotation"`` can be asked for instead.
* ``properties.classification``: ``{"name": "IDC", "color": [r, g, b]}`` since v0.4
  (GsonTools.PathClassTypeAdapter writes ``name``, or ``names`` for a derived class, and ``color``
  as a 3-element int array, 4 when the alpha is not 0 or 255; qupath/qupath pull request #1099
  "Improved GeoJSON support", 2022-10-28: "Simplified representation of PathClass ... color
  (3-element int array)"). Up to v0.3 QuPath wrote the class's Java fields, ``{"name": ...,
  "colorRGB": <packed signed ARGB int>}``; v0.4+ still reads that, and :func:`read_geojson` does.
* ``properties.measurements``: a JSON object name -> number since v0.4 (before: an array of
  ``{"name", "value"}``, both read here). Numbers only; QuPath shows them in the measurement table
  and can colour and filter by them.
* ``properties.metadata``: string -> string; QuPath keeps it for objects that store metadata and
  ignores it otherwise, as it ignores every other property it does not know. ``isLocked``,
  ``name`` and ``color`` (the object's own colour) are the other properties it reads.
* Coordinates: "pixel units, taking the origin (0, 0) as the top left corner of the
  full-resolution image" (QuPath docs, "Exporting annotations": qupath/qupath-docs
  docs/advanced/exporting_annotations.md, published at
  https://qupath.readthedocs.io/en/0.4/docs/advanced/exporting_annotations.html).
  Import by drag and drop: qupath/qupath pull request #698 "Improved object import/export" (v0.3).

Pixel frame. The dataset's x, y are 1-based: patch (x, y) covers slide pixels columns x-1 ..
x-2+width and rows y-1 .. y-2+height (app/slides.py rebuild_slide places it at
[y-1 : y-1+height, x-1 : x-1+width]), so in QuPath's frame it is the square from (x-1, y-1) to
(x-1+width, y-1+height): an image of the slide rebuilt by the app lines up with the tiles, and an
edge patch keeps its true, smaller size.

Whole-slide runs (ingest-slides) tile a slide in a frame resampled to the dataset's 4 um/px, while
QuPath opens the slide itself at level 0. Their export is written with the slide's ``scale``
(level-0 pixels per resampled pixel, run.json ``slides``): every ring is multiplied by it, so the
tiles lie on the slide in QuPath, and the collection's ``idc_review`` member and each feature's
metadata record it ("scale"), so :func:`features_to_patches` reads the dataset coordinates back.

Ring orientation. The exterior ring is (x0, y0) -> (x1, y0) -> (x1, y1) -> (x0, y1) -> (x0, y0):
5 positions, first = last. Its signed (shoelace) area is +width*height, i.e. counter-clockwise in
the x-right / y-up sense RFC 7946 section 3.1.6 states its right-hand rule in, so GeoJSON
validators, which test the numbers, accept it. On screen, where image y points down, the same ring
runs clockwise. QuPath does not depend on orientation (JTS normalises geometries).

Properties of a patch feature (all in QuPath's own slots, so nothing is lost in QuPath):
``measurements``: "P(IDC)", "label" (1 IDC, 0 not), "predicted" (at the threshold), "threshold",
"reviews: agree" / "reviews: label_wrong" / "reviews: unsure" (counts of reviewers' latest
verdicts). ``metadata``: "patient_id", "x", "y" (the dataset's coordinates), "label" and
"predicted" as class names, "outcome" (TP / FP / FN / TN at the threshold), and
"verdict: <reviewer>" for each reviewer's latest verdict. The classification is the predicted
class at the threshold (IDC when P(IDC) >= threshold, as everywhere in this project).
"""
from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import agreement, store
from pipeline.metrics import check_threshold
from pipeline.names import PATCH_SIZE

FORMAT_VERSION = 1
CLASS_IDC = "IDC"
CLASS_NON_IDC = "Non-IDC"
# Okabe-Ito, as app/overlays.py: vermillion for IDC (its IDC_COLOUR), blue for the rest.
CLASS_COLOURS = {CLASS_IDC: (213, 94, 0), CLASS_NON_IDC: (0, 114, 178)}
OBJECT_TYPES = ("tile", "detection", "annotation")  # what a patch may be written as
OUTCOMES = ("TN", "FP", "FN", "TP")  # code 2 * label + predicted, as app/selection.py
UNLABELLED_OUTCOME = "unlabelled"  # a patch without ground truth (a slide without annotations): no outcome
PATCH_COLUMNS = ("patient_id", "x", "y", "width", "height", "label", "prob")
FOREIGN_MEMBER = "idc_review"  # RFC 7946 section 6.1 foreign member on the collection; QuPath ignores it
_NAMESPACE = uuid.UUID("6f1c1a52-4a0e-5b8e-9d7e-2c9a3f4b5d61")  # fixed: patch ids stay stable across exports
VERDICT_PREFIX = "verdict: "
REVIEW_COUNT_PREFIX = "reviews: "


class GeoJSONError(ValueError):
    """A GeoJSON file or object that is not what the reader expects; the message says where and why."""


# --------------------------------------------------------------------------- geometry helpers
def patch_box(x, y, width, height):
    """The patch's pixel box in QuPath's frame, (x0, y0, width, height): (x - 1, y - 1, width, height)."""
    return np.asarray(x) - 1, np.asarray(y) - 1, np.asarray(width), np.asarray(height)


def patch_ring(x: int, y: int, width: int, height: int, scale: float = 1.0) -> list[list[float]]:
    """The closed exterior ring of patch (x, y) in QuPath pixel coordinates (see the module docstring);
    ``scale``: level-0 pixels per run pixel (a whole-slide run's; 1 for the dataset's patches)."""
    x0, y0 = int(x) - 1, int(y) - 1
    x1, y1 = x0 + int(width), y0 + int(height)
    if scale != 1:
        x0, y0, x1, y1 = (round(v * scale, 3) for v in (x0, y0, x1, y1))
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def check_scale(scale) -> float:
    """A slide's level-0 pixels per run pixel: a finite number > 0, else ValueError."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"scale must be a number > 0 (level-0 pixels per run pixel), got {scale!r}")
    return value


def signed_area(ring) -> float:
    """Shoelace area of a ring (closed or not); positive when counter-clockwise with y pointing up."""
    p = np.asarray(ring, np.float64)
    if len(p) and np.array_equal(p[0], p[-1]):
        p = p[:-1]
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def patch_id(patient_id: str, x: int, y: int) -> str:
    """The stable UUID string a patch's feature gets."""
    return str(uuid.uuid5(_NAMESPACE, f"{patient_id}/{int(x)}/{int(y)}"))


# --------------------------------------------------------------------------- writing
def _classification(name: str) -> dict:
    return {"name": name, "color": list(CLASS_COLOURS[name])}


def _check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in PATCH_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"patch rows lack the columns {missing}; need {list(PATCH_COLUMNS)}")
    out = rows.astype({"patient_id": str, "x": "int64", "y": "int64", "width": "int64", "height": "int64",
                       "label": "int64", "prob": "float64"})
    problems = []
    if ((out["x"] < 1) | (out["y"] < 1)).any():
        problems.append("x and y start at 1")
    if ((out["width"] < 1) | (out["width"] > PATCH_SIZE) | (out["height"] < 1)
            | (out["height"] > PATCH_SIZE)).any():
        problems.append(f"width and height are 1..{PATCH_SIZE}")
    if not out["label"].isin([0, 1, store.UNLABELLED]).all():
        problems.append(f"label is 0, 1 or {store.UNLABELLED} (unlabelled)")
    prob = out["prob"].to_numpy()
    if not (np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()):
        problems.append("prob is a probability (finite, 0..1)")
    if out.duplicated(["patient_id", "x", "y"]).any():
        problems.append("each patch (patient_id, x, y) appears once")
    if problems:
        raise ValueError(f"bad patch rows: {'; '.join(problems)}")
    return out


def patches_to_feature_collection(rows: pd.DataFrame, threshold: float, verdicts: pd.DataFrame | None = None,
                                  slide_name: str | None = None, object_type: str = "tile",
                                  scale: float = 1.0) -> dict:
    """One slide's patches as a QuPath-ready FeatureCollection (a dict; :func:`write_geojson` writes it).

    ``rows``: one patient's patches with patient_id, x, y, width, height, label, prob (e.g. the
    run table's rows of that patient). ``threshold``: the decision threshold (IDC when prob >=
    threshold) behind the classification, "predicted" and "outcome". ``verdicts``: a reviews table
    (as pipeline.reviews gives it; superseded reviews may be in it): each reviewer's latest verdict goes
    into the patch's feature; reviews of patches not in ``rows`` are not written. ``slide_name``
    (default: the patient id) is recorded in the collection's ``idc_review`` member. ``scale``: the
    slide's level-0 pixels per run pixel, for a whole-slide run (see the module docstring). Features
    are in reading order (y, then x). Raises ValueError for rows of several patients or bad values.
    """
    threshold = check_threshold(threshold)
    scale = check_scale(scale)
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
    patches = _check_rows(rows)
    patients = patches["patient_id"].unique()
    if len(patients) > 1:
        raise ValueError(f"rows hold {len(patients)} patients; a QuPath image is one slide: write one collection "
                         "per patient (feature_collections_by_patient)")
    patient_id = str(patients[0]) if len(patients) else ""
    patches = patches.sort_values(["y", "x"], kind="stable")
    by_patch: dict[tuple, dict] = {}
    if verdicts is not None and len(verdicts):
        mine = verdicts[verdicts["patient_id"].astype(str) == patient_id] if patient_id else verdicts.iloc[:0]
        for r in agreement.latest_per_reviewer(mine).itertuples(index=False):
            by_patch.setdefault((int(r.x), int(r.y)), {})[r.reviewer] = r.verdict
    label = patches["label"].to_numpy(np.int64)
    prob = patches["prob"].to_numpy(np.float64)
    predicted = (prob >= threshold).astype(np.int64)
    has_label = store.labelled(label)
    outcome = np.where(has_label, np.asarray(OUTCOMES)[2 * np.clip(label, 0, 1) + predicted], UNLABELLED_OUTCOME)
    names = {0: CLASS_NON_IDC, 1: CLASS_IDC, store.UNLABELLED: UNLABELLED_OUTCOME}
    features = []
    for x, y, w, h, lab, p, pred, out in zip(patches["x"].tolist(), patches["y"].tolist(),
                                             patches["width"].tolist(), patches["height"].tolist(),
                                             label.tolist(), prob.tolist(), predicted.tolist(), outcome.tolist()):
        votes = by_patch.get((x, y), {})
        tally = {v: 0 for v in agreement.VERDICTS}
        for v in votes.values():
            tally[v] += 1
        metadata = {"patient_id": patient_id, "x": str(x), "y": str(y), "label": names[lab],
                    "predicted": names[pred], "outcome": out, **({} if scale == 1 else {"scale": repr(scale)}),
                    **{f"{VERDICT_PREFIX}{r}": v for r, v in sorted(votes.items())}}
        features.append({
            "type": "Feature",
            "id": patch_id(patient_id, x, y),
            "geometry": {"type": "Polygon", "coordinates": [patch_ring(x, y, w, h, scale)]},
            "properties": {
                "objectType": object_type,
                "name": f"{patient_id}_idx5_x{x}_y{y}",
                "classification": _classification(names[pred]),
                "measurements": {"P(IDC)": p, **({} if lab == store.UNLABELLED else {"label": lab}),
                                 "predicted": pred, "threshold": threshold,
                                 **{f"{REVIEW_COUNT_PREFIX}{v}": n for v, n in tally.items()}},
                "metadata": metadata,
            },
        })
    return {
        "type": "FeatureCollection",
        FOREIGN_MEMBER: {"format_version": FORMAT_VERSION, "slide": slide_name or patient_id,
                         "patient_id": patient_id, "threshold": threshold, "object_type": object_type,
                         "n_patches": len(features), "scale": scale, "note": "Research tool, not for clinical use."},
        "features": features,
    }


def feature_collections_by_patient(rows: pd.DataFrame, threshold: float, verdicts: pd.DataFrame | None = None,
                                   object_type: str = "tile", scales: dict[str, float] | None = None
                                   ) -> dict[str, dict]:
    """patient_id -> its FeatureCollection, for every patient in ``rows`` (sorted by patient id);
    ``scales``: patient -> its slide's level-0 pixels per run pixel (whole-slide runs; 1 when absent)."""
    out, scales = {}, scales or {}
    pid = rows["patient_id"].astype(str)
    vpid = verdicts["patient_id"].astype(str) if verdicts is not None and len(verdicts) else None
    for patient in sorted(pid.unique()):
        mine = None if vpid is None else verdicts[vpid == patient]
        out[patient] = patches_to_feature_collection(rows[pid == patient], threshold, mine, object_type=object_type,
                                                     scale=scales.get(patient, 1.0))
    return out


def geojson_bytes(fc: dict) -> bytes:
    """``fc`` as UTF-8 JSON (checked first), e.g. for a download button."""
    validate_feature_collection(fc)
    return json.dumps(fc, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_geojson(path: Path | str, fc: dict) -> Path:
    """Write ``fc`` to ``path`` atomically (a temporary file in the same folder, renamed into place)."""
    data = geojson_bytes(fc)
    path = Path(path)
    with store.atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_patient_geojson(folder: Path | str, rows: pd.DataFrame, threshold: float,
                          verdicts: pd.DataFrame | None = None, object_type: str = "tile",
                          scales: dict[str, float] | None = None) -> dict[str, Path]:
    """One ``<patient_id>.geojson`` per patient in ``folder`` (each written atomically); patient -> path."""
    folder = Path(folder)
    return {pid: write_geojson(folder / f"{pid}.geojson", fc)
            for pid, fc in feature_collections_by_patient(rows, threshold, verdicts, object_type, scales).items()}


# --------------------------------------------------------------------------- validation and reading
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ring_problem(ring) -> str | None:
    if not isinstance(ring, list) or len(ring) < 4:
        return "a linear ring needs at least 4 positions"
    for pos in ring:
        if not isinstance(pos, list) or len(pos) not in (2, 3) or not all(_is_number(c) for c in pos):
            return f"position {pos!r} is not 2 or 3 finite numbers"
    if ring[0][:2] != ring[-1][:2]:
        return "the ring is not closed (first position != last)"
    return None


def _geometry_problem(geometry) -> str | None:
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        return "geometry must be an object with a type"
    kind = geometry["type"]
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            return "a GeometryCollection needs a geometries list"
        return next((p for p in map(_geometry_problem, parts) if p), None)
    coords = geometry.get("coordinates")
    if not isinstance(coords, list):
        return f"{kind} has no coordinates list"
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords
    elif kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        return None
    else:
        return f"unknown geometry type {kind!r}"
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            return "a polygon needs at least its exterior ring"
        for ring in polygon:
            problem = _ring_problem(ring)
            if problem:
                return problem
    return None


def _feature_problem(feature) -> str | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return 'not a Feature (an object with "type": "Feature")'
    problem = _geometry_problem(feature.get("geometry"))
    if problem:
        return problem
    props = feature.get("properties")
    if props is not None and not isinstance(props, dict):
        return "properties must be an object or null"
    return None


def _raise_problems(problems: list[str], where: str) -> None:
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise GeoJSONError(f"{where}: " + "; ".join(problems[:10]) + more)


def validate_feature_collection(fc: dict) -> None:
    """Raise GeoJSONError unless ``fc`` is a FeatureCollection of valid features."""
    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection" or not isinstance(fc.get("features"), list):
        raise GeoJSONError('not a FeatureCollection (an object with "type": "FeatureCollection" and a features list)')
    _raise_problems([f"feature {i}: {p}" for i, f in enumerate(fc["features"]) if (p := _feature_problem(f))],
                    "invalid GeoJSON")


def read_geojson(path_or_buffer) -> list[dict]:
    """The features of a GeoJSON file (path, bytes or file object), structure checked.

    Accepts a FeatureCollection, a single Feature, or a JSON array of features (what QuPath's
    ``exportObjectsToGeoJson`` writes without "FEATURE_COLLECTION"). Every feature must be a
    Feature with a geometry whose polygons have closed rings of >= 4 finite positions; otherwise
    GeoJSONError names the feature (its index) and the reason. ``properties`` null becomes {}.
    """
    try:
        if isinstance(path_or_buffer, (str, os.PathLike)):
            text = Path(path_or_buffer).read_bytes()
        elif isinstance(path_or_buffer, (bytes, bytearray)):
            text = bytes(path_or_buffer)
        else:
            text = path_or_buffer.read()
        obj = json.loads(text.decode("utf-8-sig") if isinstance(text, (bytes, bytearray)) else text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise GeoJSONError(f"not a JSON file: {exc}") from None
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise GeoJSONError("the FeatureCollection has no features list")
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, list):
        features = obj
    else:
        raise GeoJSONError("expected a FeatureCollection, a Feature or a list of features")
    _raise_problems([f"feature {i}: {p}" for i, f in enumerate(features) if (p := _feature_problem(f))],
                    "invalid GeoJSON")
    return [{**f, "properties": f.get("properties") or {}} for f in features]


def _measurements(props: dict) -> dict:
    m = props.get("measurements")
    if isinstance(m, list):  # QuPath before v0.4: [{"name": ..., "value": ...}, ...]
        return {d.get("name"): d.get("value") for d in m if isinstance(d, dict)}
    return m if isinstance(m, dict) else {}


def classification_name(feature: dict) -> str | None:
    """The feature's QuPath class as QuPath names it ("Tumor", or "Tumor: Positive" for a derived
    class written as ``names``), from v0.4+ or older files or a plain string; None when unclassified."""
    c = (feature.get("properties") or {}).get("classification")
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        if isinstance(c.get("names"), list):
            return ": ".join(str(n) for n in c["names"])
        if c.get("name") is not None:
            return str(c["name"])
    return None


def classification_colour(feature: dict) -> tuple[int, int, int] | None:
    """The class colour as (r, g, b), from v0.4+ ``color`` [r, g, b(, a)] or older packed ``colorRGB``."""
    c = (feature.get("properties") or {}).get("classification")
    if not isinstance(c, dict):
        return None
    if isinstance(c.get("color"), list) and len(c["color"]) >= 3:
        return tuple(int(v) for v in c["color"][:3])
    if _is_number(c.get("colorRGB")):
        v = int(c["colorRGB"]) & 0xFFFFFF
        return (v >> 16) & 255, (v >> 8) & 255, v & 255
    return None


def object_type(feature: dict) -> str:
    """QuPath's object type of a feature; "annotation" when none is given, as QuPath imports it."""
    props = feature.get("properties") or {}
    return str(props.get("objectType", props.get("object_type", props.get("type", "annotation"))))


def features_to_patches(features: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read patch features written by :func:`patches_to_feature_collection` back.

    Returns (rows, verdicts): rows has patient_id, x, y, width, height, label, prob, predicted,
    outcome, threshold (from the geometry, measurements and metadata), in file order; verdicts has
    patient_id, x, y, reviewer, verdict (each reviewer's latest verdict as written). Raises
    GeoJSONError for a feature that is not a patch tile of this format (naming it).
    """
    rows, votes, problems = [], [], []
    for i, f in enumerate(features):
        props = f.get("properties") or {}
        meta, meas = props.get("metadata") or {}, _measurements(props)
        geometry = f.get("geometry") or {}
        if geometry.get("type") != "Polygon" or "patient_id" not in meta or "P(IDC)" not in meas:
            problems.append(f"feature {i}: not a patch tile (a Polygon with metadata.patient_id and "
                            "measurements P(IDC))")
            continue
        ring = np.asarray(geometry["coordinates"][0], np.float64)[:, :2]
        try:  # a whole-slide run's export is in level-0 pixels: back to the run's frame
            ring = np.round(ring / check_scale(meta.get("scale", 1.0)), 3)
        except ValueError as exc:
            problems.append(f"feature {i}: metadata {exc}")
            continue
        x0, y0 = ring.min(axis=0)
        x1, y1 = ring.max(axis=0)
        x, y = int(x0) + 1, int(y0) + 1
        if str(x) != meta.get("x", str(x)) or str(y) != meta.get("y", str(y)):
            problems.append(f"feature {i}: the polygon is at x={x}, y={y} but its metadata says "
                            f"x={meta.get('x')}, y={meta.get('y')}")
            continue
        rows.append({"patient_id": str(meta["patient_id"]), "x": x, "y": y, "width": int(x1 - x0),
                     "height": int(y1 - y0), "label": int(meas["label"]), "prob": float(meas["P(IDC)"]),
                     "predicted": int(meas["predicted"]), "outcome": str(meta.get("outcome", "")),
                     "threshold": float(meas["threshold"])})
        votes += [{"patient_id": str(meta["patient_id"]), "x": x, "y": y, "reviewer": k[len(VERDICT_PREFIX):],
                   "verdict": v} for k, v in meta.items() if k.startswith(VERDICT_PREFIX)]
    _raise_problems(problems, "not patch features")
    dtypes = {"patient_id": str, "x": "int64", "y": "int64", "width": "int64", "height": "int64", "label": "int64",
              "prob": "float64", "predicted": "int64", "outcome": str, "threshold": "float64"}
    out = pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)
    verdicts = pd.DataFrame(votes, columns=["patient_id", "x", "y", "reviewer", "verdict"]).astype(
        {"patient_id": str, "x": "int64", "y": "int64", "reviewer": str, "verdict": str})
    return out, verdicts


# --------------------------------------------------------------------------- regions and overlap
@dataclass(frozen=True)
class Region:
    """One polygon of an annotation: exterior and holes as (n, 2) float arrays, rings open (the
    closing position dropped), in QuPath pixel coordinates."""

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    classification: str | None = None
    feature_index: int = -1

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y)."""
        (x0, y0), (x1, y1) = self.exterior.min(axis=0), self.exterior.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


def _open_ring(ring) -> np.ndarray:
    p = np.asarray(ring, np.float64)[:, :2]
    return p[:-1] if len(p) > 1 and np.array_equal(p[0], p[-1]) else p


def _polygons(geometry: dict):
    kind = geometry.get("type")
    if kind == "Polygon":
        yield geometry["coordinates"]
    elif kind == "MultiPolygon":
        yield from geometry["coordinates"]
    elif kind == "GeometryCollection":
        for g in geometry.get("geometries", []):
            yield from _polygons(g)


def regions_from_geojson(features: list[dict], classification: str | None = CLASS_IDC,
                         object_types: tuple[str, ...] | None = ("annotation",)) -> list[Region]:
    """The polygons (MultiPolygons split) of the features of one class, e.g. a pathologist's IDC
    annotations exported from QuPath. ``classification`` None: every class, unclassified included;
    else the exact QuPath class name (see :func:`classification_name`). ``object_types`` None: any;
    a feature without objectType counts as an annotation, as in QuPath. Points and lines have no
    area and are skipped."""
    out = []
    for i, f in enumerate(features):
        name = classification_name(f)
        if classification is not None and name != classification:
            continue
        if object_types is not None and object_type(f) not in object_types:
            continue
        for polygon in _polygons(f.get("geometry") or {}):
            out.append(Region(_open_ring(polygon[0]), tuple(_open_ring(h) for h in polygon[1:]), name, i))
    return out


def _clip(points: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """Sutherland-Hodgman against one axis-aligned half-plane, vectorised over the ring's edges."""
    if len(points) == 0:
        return points
    nxt = np.roll(points, -1, axis=0)
    inside = points[:, axis] >= bound if keep_above else points[:, axis] <= bound
    inside_next = np.roll(inside, -1)
    cross = inside != inside_next
    delta = nxt[:, axis] - points[:, axis]
    t = np.divide(bound - points[:, axis], delta, out=np.zeros(len(points)), where=cross)
    hit = points + t[:, None] * (nxt - points)
    hit[:, axis] = bound
    both = np.stack([points, hit], axis=1).reshape(-1, 2)  # for each edge: its start, then the crossing
    mask = np.stack([inside, cross], axis=1).reshape(-1)
    return both[mask]


def _clipped_area(ring: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> float:
    """Area of the part of the ring's polygon inside the box (exact; correct for concave rings too)."""
    p = ring
    for axis, bound, above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        p = _clip(p, axis, bound, above)
    return abs(signed_area(p))


def _inside(region: Region, px: np.ndarray, py: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Even-odd point-in-polygon over the region's rings (holes excluded), vectorised."""
    parity = np.zeros(len(px), bool)
    for ring in (region.exterior, *region.holes):
        xi, yi = ring[:, 0], ring[:, 1]
        xj, yj = np.roll(xi, -1), np.roll(yi, -1)
        for s in range(0, len(ring), chunk):
            a, b, c, d = xi[s:s + chunk], yi[s:s + chunk], xj[s:s + chunk], yj[s:s + chunk]
            spans = (b[None, :] > py[:, None]) != (d[None, :] > py[:, None])
            with np.errstate(divide="ignore", invalid="ignore"):
                xcross = a[None, :] + (py[:, None] - b[None, :]) * (c - a)[None, :] / (d - b)[None, :]
            parity ^= (np.count_nonzero(spans & (px[:, None] < xcross), axis=1) % 2).astype(bool)
    return parity


def patch_overlap_fraction(regions: list[Region], x0: float, y0: float, w: float, h: float,
                           samples_per_pixel: int = 4) -> float:
    """The share (0..1) of the box [x0, x0+w] x [y0, y0+h] (QuPath pixel coordinates; use
    :func:`patch_box` for a dataset patch) covered by the union of ``regions``.

    Exact (Sutherland-Hodgman clipping of each ring to the box, holes subtracted) when at most one
    region reaches into the box or the parts inside it do not overlap, the usual case. Where
    annotations overlap inside the box, their union is measured on a grid of samples_per_pixel^2
    points per pixel instead (within about 1/samples_per_pixel px along their edges)."""
    if w <= 0 or h <= 0:
        raise ValueError(f"the box needs a positive width and height, got {w} x {h}")
    x1, y1 = x0 + w, y0 + h
    parts = []
    for r in regions:
        bx0, by0, bx1, by1 = r.bounds
        if bx1 <= x0 or bx0 >= x1 or by1 <= y0 or by0 >= y1:
            continue
        area = _clipped_area(r.exterior, x0, y0, x1, y1) - sum(_clipped_area(hole, x0, y0, x1, y1) for hole in r.holes)
        if area > 0:
            parts.append((r, area, (max(bx0, x0), max(by0, y0), min(bx1, x1), min(by1, y1))))
    disjoint = all(a[2][2] <= b[2][0] or b[2][2] <= a[2][0] or a[2][3] <= b[2][1] or b[2][3] <= a[2][1]
                   for i, a in enumerate(parts) for b in parts[i + 1:])
    if disjoint:
        return float(min(1.0, max(0.0, sum(p[1] for p in parts) / (w * h))))
    s = int(samples_per_pixel)
    nx, ny = max(1, int(round(w * s))), max(1, int(round(h * s)))
    gx = x0 + (np.arange(nx) + 0.5) * (w / nx)
    gy = y0 + (np.arange(ny) + 0.5) * (h / ny)
    px, py = (a.ravel() for a in np.meshgrid(gx, gy))
    covered = np.zeros(len(px), bool)
    for r, _, _ in parts:
        covered |= _inside(r, px, py)
    return float(covered.mean())


def overlap_fractions(regions: list[Region], x, y, width, height, samples_per_pixel: int = 4) -> np.ndarray:
    """:func:`patch_overlap_fraction` for every patch (the dataset's 1-based x, y and true size)."""
    x0, y0, w, h = (np.asarray(a, np.float64) for a in patch_box(x, y, width, height))
    out = np.zeros(len(x0))
    if not regions or not len(x0):
        return out
    b = np.array([r.bounds for r in regions])
    near = ((x0[:, None] < b[None, :, 2]) & (x0[:, None] + w[:, None] > b[None, :, 0])
            & (y0[:, None] < b[None, :, 3]) & (y0[:, None] + h[:, None] > b[None, :, 1]))
    for i in np.flatnonzero(near.any(axis=1)):
        out[i] = patch_overlap_fraction([regions[j] for j in np.flatnonzero(near[i])], x0[i], y0[i], w[i], h[i],
                                        samples_per_pixel)
    return out
