"""Inspector, Grad-CAM, errors gallery and reviews: what a pathologist does with a misclassified patch."""
import uuid
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from app import selection
from model.explain import METHODS
from pipeline import evaluate, store

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def start_app(monkeypatch, runs_dir: Path, page: str, **query) -> AppTest:
    monkeypatch.setenv("IDC_RUNS", str(runs_dir))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in query.items()})
    return at.run().switch_page(page).run()


def a_false_negative(run: store.Run) -> tuple[int, str, float]:
    """The IDC patch with the lowest probability, and a threshold just above it: a sure false negative."""
    idc = run.table[run.table["label"] == 1]
    row = int(idc["prob"].idxmin())
    threshold = float(np.nextafter(run.table.at[row, "prob"], 1.0))
    return row, run.table.at[row, "patient_id"], threshold


def test_grad_cam_renders_for_a_misclassified_patch(monkeypatch, tiny_run):
    row, patient, threshold = a_false_negative(store.load_run(tiny_run))
    at = start_app(monkeypatch, tiny_run.parent, "views/inspector.py", patient=patient, patch=row,
                   threshold=repr(threshold))
    assert not at.exception and not at.error
    assert any("FN · false negative" in m.value for m in at.markdown)
    for method in METHODS:
        at.button_group(key="cam_method").set_value(method).run()
        assert not at.exception and not at.error, method
        captions = [c for image in at.get("image") for c in image.captions]
        assert any(c.startswith(f"{method}:") for c in captions), captions
    assert len(at.get("image")) == 3  # patch, CAM, neighbourhood


def test_a_review_is_saved_and_survives_an_app_restart(monkeypatch, tiny_run):
    row, patient, threshold = a_false_negative(store.load_run(tiny_run))
    note = f"DCIS, not invasive {uuid.uuid4().hex[:8]}"
    at = start_app(monkeypatch, tiny_run.parent, "views/inspector.py", patient=patient, patch=row,
                   threshold=repr(threshold))
    assert at.button(key="save_review").disabled  # nobody signed in: no review without a name
    at.text_input(key="sign_in_name").input("Dr Test")
    at.button(key="sign_in").click().run()  # once per session, in the sidebar
    at.radio(key="review_verdict").set_value("label_wrong")
    at.text_area(key="review_note").input(note)
    at.button(key="save_review").click().run()
    assert any("Review saved" in s.value for s in at.success)
    assert at.session_state.reviewer == "Dr Test"  # kept for the next review
    assert any("Reviewing as **Dr Test**" in c.value for c in at.caption)

    restarted = start_app(monkeypatch, tiny_run.parent, "views/review_log.py")
    table = restarted.dataframe[0].value
    saved = table[table["note"] == note]
    assert len(saved) == 1 and saved.iloc[0]["verdict"] == "label_wrong" and saved.iloc[0]["row"] == row
    assert saved.iloc[0]["reviewer"] == "Dr Test"
    inspector = start_app(monkeypatch, tiny_run.parent, "views/inspector.py", patient=patient, patch=row)
    assert any(note in set(d.value["note"]) for d in inspector.dataframe)  # the patch's review history


def test_errors_gallery_lists_the_errors_most_confident_first(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    _, _, threshold = a_false_negative(run)  # a threshold with at least one error, whatever the model learnt
    at = start_app(monkeypatch, tiny_run.parent, "views/errors.py", split="all", threshold=repr(threshold))
    expected = selection.errors(evaluate.split_rows(run.table, "all"), threshold)
    assert len(expected)
    assert not at.exception
    assert f"{len(expected):,} patches, most confident error first" in at.caption[0].value
    first = int(expected.index[0])
    at.button(key=f"inspect_{first}").click().run()
    assert not at.exception
    assert at.session_state.patch == first and at.session_state.patient == run.table.at[first, "patient_id"]
    assert any(h.value == "Patch inspector" for h in at.title)  # state.go_to switched the page
    assert any(h.value.startswith("Patch x") for h in at.subheader)

    at = start_app(monkeypatch, tiny_run.parent, "views/errors.py", split="all", threshold=repr(threshold))
    at.button_group(key="gallery_mode").set_value("Review queue").run()
    assert not at.exception
    assert "most uncertain first" in at.caption[0].value
