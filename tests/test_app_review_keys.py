"""Fast review by keys (J next, K previous, A / W / U verdicts): one current patch per page carries the
shortcuts, a verdict saved by key goes through the review-save path and moves to the next patch.

AppTest cannot press keys, so these click the buttons that carry them and check the shortcuts they
carry; tests/test_browser_keyboard.py presses the keys in a real browser."""
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import patch_panel, selection
from pipeline import evaluate, reviews, store
from tests.apptest_helpers import sign_in, start



@pytest.fixture
def run_dir(tmp_path, tiny_run) -> Path:
    """A private copy of the tiny run (its own cohort store under tmp_path/runs/_cohorts)."""
    out = tmp_path / "runs" / "keys"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    return out


def shortcuts(at: AppTest) -> Counter:
    return Counter(b.proto.shortcut.upper() for b in at.button if b.proto.shortcut)


def saved(run_dir: Path):
    return reviews.open_for_run(run_dir).all().sort_values("id")


def an_error_threshold(run: store.Run) -> float:
    idc = run.table[run.table["label"] == 1]
    return float(np.nextafter(idc["prob"].min(), 1.0))  # at least one false negative


def test_gallery_keys_act_on_one_current_card_and_a_verdict_moves_on(monkeypatch, run_dir):
    run = store.load_run(run_dir)
    threshold = an_error_threshold(run)
    items = selection.errors(evaluate.split_rows(run.table, "all"), threshold)
    assert len(items) >= 3
    at = start(monkeypatch, run_dir, "views/errors.py", split="all", threshold=repr(threshold))
    assert not at.exception
    # Each key is bound once on the page, however many cards the page shows.
    expected = {patch_panel.NEXT_KEY, patch_panel.PREVIOUS_KEY, *patch_panel.VERDICT_KEYS.values()}
    assert set(shortcuts(at)) >= expected and all(shortcuts(at)[k] == 1 for k in expected)
    first, second, third = (int(r) for r in items.index[:3])
    assert at.session_state.gallery_current == first
    assert at.button(key="gallery_keys_agree").disabled  # nobody signed in: no review without a name

    at.button(key="gallery_keys_next").click().run()  # J
    assert at.session_state.gallery_current == second
    at.button(key="gallery_keys_previous").click().run()  # K
    assert at.session_state.gallery_current == first

    sign_in(at, "Dr Keys")
    at.button(key="gallery_keys_agree").click().run()  # A
    assert not at.exception
    assert any("Review saved: Agree with label" in s.value for s in at.success)
    assert at.session_state.gallery_current == second  # moved on
    at.button(key="gallery_keys_label_wrong").click().run()  # W
    assert at.session_state.gallery_current == third
    at.button(key=f"current_{first}").click().run()  # any card can be made the current one
    assert at.session_state.gallery_current == first

    found = saved(run_dir)
    assert found["verdict"].tolist() == ["agree", "label_wrong"]
    assert found["patient_id"].tolist() == [str(run.table.at[r, "patient_id"]) for r in (first, second)]
    assert found[["x", "y"]].values.tolist() == run.table.loc[[first, second], ["x", "y"]].values.tolist()
    assert (found["reviewer"] == "Dr Keys").all() and (found["run_name"] == run.name).all()
    assert np.allclose(found["threshold"], threshold)
    assert np.allclose(found["prob_shown"], run.table.loc[[first, second], "prob"], atol=1e-6)
    assert (found["source"] == "app").all()


def test_queue_keys_the_reviewed_patch_leaves_the_queue(monkeypatch, run_dir):
    at = start(monkeypatch, run_dir, "views/errors.py", split="all")
    sign_in(at, "Dr Queue")
    at.button_group(key="gallery_mode").set_value("Review queue").run()
    first = at.session_state.gallery_current
    at.button(key="gallery_keys_unsure").click().run()  # U
    assert not at.exception
    assert at.session_state.gallery_current != first
    assert saved(run_dir)["verdict"].tolist() == ["unsure"]
    assert "not reviewed by Dr Queue yet" in at.caption[0].value


def test_inspector_keys_step_through_the_patients_errors(monkeypatch, run_dir):
    run = store.load_run(run_dir)
    patient = str(run.table.at[int(run.table[run.table["label"] == 1]["prob"].idxmin()), "patient_id"])
    rows = run.table[run.table["patient_id"] == patient]
    # Just above the patient's second least probable IDC patch: at least two false negatives to step through.
    threshold = float(np.nextafter(np.sort(rows.loc[rows["label"] == 1, "prob"].to_numpy())[1], 1.0))
    steps = selection.step_order(rows, threshold, "errors")
    at = start(monkeypatch, run_dir, "views/inspector.py", patient=patient, patch=steps[0], threshold=repr(threshold))
    assert not at.exception
    expected = {patch_panel.NEXT_KEY, patch_panel.PREVIOUS_KEY, *patch_panel.VERDICT_KEYS.values()}
    assert all(shortcuts(at)[k] == 1 for k in expected)
    assert at.button(key="patch_keys_previous").disabled  # the first error has no previous
    sign_in(at, "Dr Inspector")
    at.button(key="patch_keys_label_wrong").click().run()  # W
    assert not at.exception
    found = saved(run_dir)
    assert found["verdict"].tolist() == ["label_wrong"]
    assert (int(found["x"].iat[0]), int(found["y"].iat[0])) == tuple(run.table.loc[steps[0], ["x", "y"]])
    assert len(steps) > 1  # the tiny run's patient has several errors at this threshold
    assert at.session_state.patch == steps[1] and at.query_params["patch"] == str(steps[1])
    at.button(key="patch_keys_previous").click().run()  # K
    assert at.session_state.patch == steps[0]
    at.button_group(key="step_order").set_value("all").run()
    at.button(key="patch_keys_next").click().run()  # J in reading order
    assert at.session_state.patch == selection.neighbours(selection.step_order(rows, threshold, "all"), steps[0])[1]


def test_in_the_patient_viewer_j_opens_the_first_error_when_no_patch_is_open(monkeypatch, run_dir):
    run = store.load_run(run_dir)
    patient = str(run.table.at[int(run.table[run.table["label"] == 1]["prob"].idxmin()), "patient_id"])
    rows = run.table[run.table["patient_id"] == patient]
    threshold = an_error_threshold(run)
    at = start(monkeypatch, run_dir, "views/patient.py", patient=patient, threshold=repr(threshold))
    assert not at.exception and at.session_state.patch is None
    start_button = at.button(key="patch_keys_start")
    assert start_button.proto.shortcut.upper() == patch_panel.NEXT_KEY and shortcuts(at)[patch_panel.NEXT_KEY] == 1
    assert start_button.label == "Open the first error"
    start_button.click().run()
    assert not at.exception
    first = selection.step_order(rows, threshold, "errors")[0]
    assert at.session_state.patch == first and at.query_params["patch"] == str(first)
    assert shortcuts(at)[patch_panel.NEXT_KEY] == 1  # now the open patch's Next carries J
    assert at.button(key="patch_keys_next").proto.shortcut.upper() == patch_panel.NEXT_KEY


def test_grad_cam_of_a_false_negative_defaults_to_the_models_own_call(monkeypatch, run_dir):
    run = store.load_run(run_dir)
    row = int(run.table[run.table["label"] == 1]["prob"].idxmin())
    threshold = float(np.nextafter(run.table.at[row, "prob"], 1.0))  # a sure false negative
    at = start(monkeypatch, run_dir, "views/inspector.py", patient=run.table.at[row, "patient_id"], patch=row,
               threshold=repr(threshold))
    assert not at.exception and not at.error

    def cam_caption():
        image = next(c for image in at.get("image") for c in image.captions if c.startswith("Grad-CAM:"))
        return image, " ".join(c.value for c in at.caption)

    image, text = cam_caption()
    assert image == "Grad-CAM: evidence against IDC"
    assert "Shows the evidence against IDC (the model's own call: not IDC)" in text
    at.button_group(key="cam_target_0").set_value(1).run()
    assert not at.exception and not at.error
    image, text = cam_caption()
    assert image == "Grad-CAM: evidence for IDC" and "evidence for IDC (not the model's call" in text
    bars = [c for image in at.get("image") for c in image.captions if "· bar " in c]
    assert any("bar 20 µm" in c for c in bars) and any("bar 100 µm" in c for c in bars)  # patch, neighbours


def test_another_list_starts_at_its_first_patch(monkeypatch, run_dir):
    run = store.load_run(run_dir)
    threshold = an_error_threshold(run)
    at = start(monkeypatch, run_dir, "views/errors.py", split="all", threshold=repr(threshold))
    at.button(key="gallery_keys_next").click().run()
    at.button(key="gallery_keys_next").click().run()
    assert at.session_state.gallery_current != int(selection.errors(evaluate.split_rows(run.table, "all"),
                                                                    threshold).index[0])
    at.button_group(key="gallery_mode").set_value("Review queue").run()
    queue = selection.review_queue(evaluate.split_rows(run.table, "all"), threshold, "uncertain")
    assert at.session_state.gallery_current == int(queue.index[0])  # not wherever the old current sits in it


def test_next_past_a_pages_last_card_turns_the_page(monkeypatch, run_dir):
    run = store.load_run(run_dir)
    threshold = 0.0  # every patch is called IDC: every non-IDC patch is a false positive, pages of them
    items = selection.errors(evaluate.split_rows(run.table, "all"), threshold)
    assert len(items) == int((run.table["label"] == 0).sum()) > 24 + 1  # more than one page (and a 26th card)
    at = start(monkeypatch, run_dir, "views/errors.py", split="all", threshold=repr(threshold))
    last = int(items.index[23])  # the first page's last card
    at.button(key=f"current_{last}").click().run()
    at.button(key="gallery_keys_next").click().run()  # J
    assert not at.exception
    assert at.session_state.gallery_current == int(items.index[24]) and at.session_state.gallery_page == 2
    assert f"current_{int(items.index[25])}" in {b.key for b in at.button}  # page 2's cards are drawn
    at.button(key="gallery_keys_previous").click().run()  # K back onto page 1
    assert at.session_state.gallery_current == last and at.session_state.gallery_page == 1
