"""Every page on runs of whole-slide images without (or with only some) annotations.

A slide ingested without annotations has label store.UNLABELLED on every patch: the app measures its
metrics on the labelled patches only, says how many it left out, and still shows the predictions.
The runs are made as tests/test_wsi.py makes them: tiny pyramidal TIFFs, ingest-slides, and `score`
with a tiny untrained Keras model (the plumbing is tested, not the model).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import cam_overlay, overlays, selection
from pipeline import reviews, store
from tests.apptest_helpers import start

pytest.importorskip("tifffile")
pytest.importorskip("openslide")



# --------------------------------------------------------------------------- pure helpers
def test_outcomes_errors_and_queue_leave_unlabelled_patches_without_an_outcome():
    rows = pd.DataFrame({"label": [0, 1, -1, -1, 1], "prob": [0.9, 0.1, 0.9, 0.45, 0.8],
                         "patient_id": ["a", "a", "b", "b", "c"]}, index=[10, 11, 12, 13, 14])
    assert selection.outcome_names(rows["label"], rows["prob"], 0.5).tolist() == ["FP", "FN", "unlabelled",
                                                                                  "unlabelled", "TP"]
    assert selection.outcome_codes([-1], [0.9], 0.5).tolist() == [selection.UNLABELLED_CODE]
    assert selection.errors(rows, 0.5).index.tolist() == [10, 11]  # errors only among labelled patches
    queue = selection.review_queue(rows, 0.5, "uncertain")
    assert queue.index.tolist()[0] == 13 and 12 in queue.index  # unlabelled ones queued by uncertainty
    assert queue.loc[13, "outcome"] == "unlabelled"
    assert 12 not in selection.review_queue(rows, 0.5, "confident_errors").index
    assert selection.labelled_rows(rows).index.tolist() == [10, 11, 14]
    counts = selection.unlabelled_counts(rows)
    assert counts == {"n_patches": 2, "n_patients": 1, "n_patients_partly": 0}
    assert selection.unlabelled_text(counts, 5).startswith("2 of 5 patches are unlabelled")
    assert selection.unlabelled_text(selection.unlabelled_counts(rows.iloc[:2]), 2) == ""


def test_error_overlay_is_transparent_on_unlabelled_patches_and_cam_follows_the_call():
    rows = pd.DataFrame({"x": [1, 51], "y": [1, 1], "label": [-1, 1], "prob": [0.9, 0.9]})
    errors = overlays.build(overlays.ERRORS, rows, 0.5, (1, 2))
    assert np.isnan(errors.grid[0, 0]) and errors.grid[0, 1] == selection.OUTCOMES.index("TP")
    assert np.isnan(overlays.build("Ground truth", rows, 0.5, (1, 2)).grid[0, 0])
    assert overlays.build("Prediction", rows, 0.5, (1, 2)).grid[0, 0] == 0  # the call is drawn
    assert cam_overlay.own_call_target("unlabelled", True) == cam_overlay.EVIDENCE_FOR_IDC
    assert cam_overlay.own_call_target("unlabelled", False) == cam_overlay.EVIDENCE_AGAINST_IDC
    with pytest.raises(ValueError):
        cam_overlay.own_call_target("unlabelled")


# --------------------------------------------------------------------------- the app on slide runs
@pytest.fixture(scope="module")
def slide_runs(tmp_path_factory) -> tuple[Path, Path]:
    """(an unlabelled run, a partly labelled run), each alone in its runs folder, scored."""
    from pipeline import ingest_slides
    from pipeline.cli import main
    from tests.test_wsi import _annotation, _trained_run, _write_slide

    d = tmp_path_factory.mktemp("slides")
    _write_slide(d / "case 01.tif")
    _annotation(d / "case 01.geojson")
    _write_slide(d / "case 02.tif", seed=1)  # no annotation: unlabelled
    trained = _trained_run(tmp_path_factory.mktemp("trained") / "trained")
    unlabelled = tmp_path_factory.mktemp("runs_unlabelled") / "unlabelled"
    mixed = tmp_path_factory.mktemp("runs_mixed") / "mixed"
    ingest_slides.ingest_slides([d / "case 02.tif"], unlabelled, progress=False)
    ingest_slides.ingest_slides([d / "case 01.tif", d / "case 02.tif"], mixed, annotations=[d], progress=False)
    for out in (unlabelled, mixed):
        assert main(["score", "--run", str(trained), "--out", str(out)]) == 0
    return unlabelled, mixed


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def test_every_page_on_an_unlabelled_run(monkeypatch, slide_runs):
    run_dir = slide_runs[0]
    run = store.load_run(run_dir)
    assert not store.labelled(run.table["label"]).any()
    patient = str(run.table["patient_id"].iat[0])

    at = start(monkeypatch, run_dir, "views/overview.py", split="all")
    assert not at.exception
    assert "Metrics need labels" in texts(at.info) and "--annotations" in texts(at.info)
    assert {m.label: m.value for m in at.metric}["Patches"] == f"{len(run.table):,}"
    assert at.get("plotly_chart")  # the histogram of P(IDC)

    at = start(monkeypatch, run_dir, "views/patient.py", patient=patient)
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Sensitivity"] == shown["True IDC"] == "not defined (no labels)"
    assert shown["Predicted IDC"].endswith("%")
    assert "This patient is unlabelled" in texts(at.caption)
    assert at.button_group(key="overlays").value == ["Probability"]
    at.button_group(key="overlays").set_value(["Prediction", "Probability", overlays.ERRORS, "Ground truth"]).run()
    assert not at.exception
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "heatmap" in [t["type"] for t in chart["data"]]

    row = int(run.table.index[run.table["patient_id"] == patient][0])
    at = start(monkeypatch, run_dir, "views/inspector.py", patient=patient, patch=row)
    assert not at.exception
    body = texts(at.markdown)
    assert "**True label:** none (unlabelled slide)" in body and "unlabelled" in body.split("At threshold", 1)[1]
    own = cam_overlay.own_call_target("unlabelled", bool(run.table.at[row, "prob"] >= 0.5))
    assert at.button_group(key=f"cam_target_{own}").value == own
    assert not at.error  # Grad-CAM of the tiny model draws
    # the patch read live from the slide at level 0 (1 um/px here: 200 x 200 px for a 4 um/px patch)
    full = [e for e in at.expander if e.label == "At the slide's full resolution"]
    assert len(full) == 1
    assert [type(c).__name__ for c in full[0].children.values()] == ["Image"]  # the image, not the warning
    at.text_input(key="sign_in_name").input("Dr Unlabelled")
    at.button(key="sign_in").click().run()
    at.button(key="patch_keys_agree").click().run()  # a review of an unlabelled patch is saved like any other
    assert not at.exception
    saved = reviews.open_for_run(run_dir).all()
    assert saved["verdict"].tolist() == ["agree"] and saved["patient_id"].tolist() == [patient]

    at = start(monkeypatch, run_dir, "views/errors.py", split="all")
    assert not at.exception
    assert "Nothing to show" in texts(at.success) and "are unlabelled" in texts(at.caption)
    at.button_group(key="gallery_mode").set_value("Review queue").run()
    assert not at.exception and not at.success
    assert "unlabelled" in texts(at.markdown)  # the cards' outcome badges


def test_a_partly_labelled_run_measures_the_labelled_patches(monkeypatch, slide_runs):
    run_dir = slide_runs[1]
    run = store.load_run(run_dir)
    has_label = store.labelled(run.table["label"])
    assert has_label.any() and not has_label.all()

    at = start(monkeypatch, run_dir, "views/overview.py", split="all")
    assert not at.exception
    captions = texts(at.caption)
    assert f"{int((~has_label).sum()):,} of {len(run.table):,} patches are unlabelled" in captions
    assert "1 patient without any label" in captions
    assert f"{int(has_label.sum()):,} patches" in captions  # the scope: labelled patches only

    unlabelled = str(run.table.loc[~has_label, "patient_id"].iat[0])
    at = start(monkeypatch, run_dir, "views/patient.py", patient=unlabelled)
    assert not at.exception and "This patient is unlabelled" in texts(at.caption)
    labelled = str(run.table.loc[has_label, "patient_id"].iat[0])
    at = start(monkeypatch, run_dir, "views/patient.py", patient=labelled)
    assert not at.exception and {m.label: m.value for m in at.metric}["Errors (FP / FN)"] != "not defined (no labels)"


def test_slide_hover_says_unlabelled_not_minus_one():
    import pandas as pd

    from app import charts

    rows = pd.DataFrame({"x": [1, 51], "y": [1, 1], "label": [store.UNLABELLED, 1], "prob": [0.2, 0.9]})
    hover = list(charts._patch_markers(rows, np.array(["unlabelled", "TP"])).text)
    assert hover[0].startswith("none (unlabelled)") and "-1" not in hover[0]
    assert hover[1].startswith("1<br>TP")
