"""The review loop in the app: who reviewed, one cohort store shared by two runs, slide progress,
agreement between reviewers, the queue without one's own reviews, and metrics on reviewed labels."""
import shutil
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score
from streamlit.testing.v1 import AppTest

from app import identity, selection
from pipeline import evaluate, reviews, store
from tests.apptest_helpers import MAIN, sign_in, start



@pytest.fixture
def two_runs(tmp_path, tiny_run) -> tuple[Path, Path]:
    """Two runs of the one tiny cohort under one runs folder: they share the cohort's review store."""
    runs = tmp_path / "runs"
    out = []
    for name in ("run-a", "run-b"):
        shutil.copytree(tiny_run, runs / name, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
        out.append(runs / name)
    return out[0], out[1]


def review(at: AppTest, verdict: str, note: str) -> AppTest:
    at.radio(key="review_verdict").set_value(verdict)
    at.text_area(key="review_note").input(note)
    return at.button(key="save_review").click().run()


def test_reviewers_file_lists_named_reviewers(tmp_path):
    path = tmp_path / "reviewers.toml"
    path.write_text('[[reviewer]]\nname = "Dr A"\nemail = "a@example.org"\n\n[[reviewer]]\nname = "Dr B"\n')
    assert identity.read_reviewers(path) == [{"name": "Dr A", "email": "a@example.org"}, {"name": "Dr B", "email": ""}]
    path.write_text('[[reviewer]]\nname = "Dr A"\n[[reviewer]]\nname = "Dr A"\n')
    with pytest.raises(ValueError, match="listed twice"):
        identity.read_reviewers(path)


def test_sign_in_from_the_reviewers_file(monkeypatch, two_runs):
    run_a, _ = two_runs
    path = run_a.parent / "reviewers.toml"
    path.write_text('[[reviewer]]\nname = "Dr A"\n[[reviewer]]\nname = "Dr B"\n')
    monkeypatch.setenv("IDC_RUNS", str(run_a.parent))
    monkeypatch.setenv(identity.REVIEWERS_ENV, str(path))
    at = AppTest.from_file(MAIN, default_timeout=180).run()
    assert at.selectbox(key="sign_in_pick").options == ["Dr A", "Dr B"]
    at.selectbox(key="sign_in_pick").set_value("Dr B")
    at.button(key="sign_in").click().run()
    assert at.session_state.reviewer == "Dr B"
    assert any("Signed in as **Dr B**" in c.value for c in at.sidebar.caption)
    at.button(key="switch_reviewer").click().run()
    assert at.session_state.reviewer == "" and at.selectbox(key="sign_in_pick")


def test_a_review_in_one_run_shows_in_the_other_and_slides_are_marked_done(monkeypatch, two_runs):
    run_a, run_b = two_runs
    table = store.load_run(run_a).table
    row = int(table.index[0])
    patient = str(table.at[row, "patient_id"])
    at = start(monkeypatch, run_a, "views/inspector.py", patient=patient, patch=row)
    assert at.button(key="save_review").disabled  # nobody signed in yet
    assert any("Sign in in the sidebar" in w.value for w in at.warning)
    sign_in(at, "Dr A")
    review(at, "label_wrong", "seen in run A")
    assert any("Review saved" in s.value and "by Dr A" in s.value for s in at.success)
    at.button(key="switch_reviewer").click().run()
    sign_in(at, "Dr B")
    review(at, "agree", "second opinion")

    saved = reviews.open_for_run(run_a).all()
    assert set(saved["reviewer"]) == {"Dr A", "Dr B"}  # both kept, each with its name
    first = saved[saved["reviewer"] == "Dr A"].iloc[0]
    assert first["run_name"] == "run-a" and first["source"] == "app"
    assert first["prob_shown"] == pytest.approx(float(table.at[row, "prob"]))
    assert first["threshold"] == pytest.approx(0.5) and first["model"]

    other = start(monkeypatch, run_b, "views/inspector.py", patient=patient, patch=row)
    history = [d.value for d in other.dataframe if "note" in d.value]
    assert history and {"seen in run A", "second opinion"} <= set(history[0]["note"])
    log = start(monkeypatch, run_b, "views/review_log.py")
    # One reviewer's newer verdict supersedes only their own older one: both reviewers' latest are listed.
    assert {"seen in run A", "second opinion"} <= set(log.dataframe[0].value["note"])
    assert any("each reviewer's latest" in m.label for m in log.metric)
    log.toggle(key="reviews_history").set_value(True).run()
    assert {"seen in run A", "second opinion"} <= set(log.dataframe[0].value["note"])

    viewer = start(monkeypatch, run_b, "views/patient.py", patient=patient)
    # In review, by whom and when (the latest review), as done says it.
    assert any("in review by Dr A, Dr B · 1 patch reviewed" in m.value and " UTC)" in m.value
               for m in viewer.markdown)
    sign_in(viewer, "Dr A")
    viewer.button(key="slide_done").click().run()
    assert not viewer.exception
    assert any("done by Dr A" in m.value for m in viewer.markdown)
    assert reviews.open_for_run(run_a).slide_status().set_index("patient_id").at[patient, "status"] == "done"
    viewer.toggle(key="only_unreviewed").set_value(True).run()  # the open patient stays listed
    assert any(o.startswith(patient) and o.endswith("done by Dr A") for o in viewer.selectbox(key="w_patient").options)
    overview = start(monkeypatch, run_a, "views/overview.py", split="all")
    assert any("slides done 1 of" in c.value for c in overview.caption)

    def per_patient_ids() -> list[str]:
        table = next(d.value for d in overview.dataframe if "review" in d.value.columns)
        return table["patient_id"].astype(str).tolist()

    listed = per_patient_ids()
    assert patient in listed and len(listed) > 1
    overview.toggle(key="overview_only_unreviewed").set_value(True).run()
    assert not overview.exception
    assert per_patient_ids() == [p for p in listed if p != patient]  # the done slide leaves, the others stay


def test_agreement_page_shows_cohens_kappa_as_sklearn(monkeypatch, two_runs):
    run_a, _ = two_runs
    table = store.load_run(run_a).table
    rs = reviews.open_for_run(run_a)
    verdicts_a = ["agree", "label_wrong", "agree", "unsure", "agree", "label_wrong"]
    verdicts_b = ["agree", "label_wrong", "label_wrong", "agree", "agree", "agree"]
    for i, (va, vb) in enumerate(zip(verdicts_a, verdicts_b)):
        patch = table.iloc[i]
        for who, verdict in (("Dr A", va), ("Dr B", vb)):
            rs.add(patient_id=str(patch["patient_id"]), x=int(patch["x"]), y=int(patch["y"]), verdict=verdict,
                   reviewer=who)
    at = start(monkeypatch, run_a, "views/agreement.py")
    assert not at.exception and not at.error
    pairs = next(d.value for d in at.dataframe if "kappa" in d.value)
    assert pairs.iloc[0]["kappa"] == pytest.approx(cohen_kappa_score(verdicts_a, verdicts_b))
    assert pairs.iloc[0]["n_patches"] == 6
    queue = next(d.value for d in at.dataframe if "summary" in d.value)
    assert len(queue) == 3  # the patches whose verdicts differ


def test_the_queue_leaves_out_only_my_own_reviews(monkeypatch, two_runs):
    run_a, _ = two_runs
    run = store.load_run(run_a)
    expected = selection.review_queue(evaluate.split_rows(run.table, "all"), 0.5, "uncertain")
    mine, theirs = int(expected.index[0]), int(expected.index[1])
    rs = reviews.open_for_run(run_a)
    for row, who in ((mine, "Dr A"), (theirs, "Dr B")):
        rs.add(patient_id=str(run.table.at[row, "patient_id"]), x=int(run.table.at[row, "x"]),
               y=int(run.table.at[row, "y"]), verdict="agree", reviewer=who)
    at = start(monkeypatch, run_a, "views/errors.py", split="all")
    sign_in(at, "Dr A")
    at.button_group(key="gallery_mode").set_value("Review queue").run()
    assert "not reviewed by Dr A yet" in at.caption[0].value
    keys = {b.key for b in at.button}
    assert f"inspect_{theirs}" in keys and f"inspect_{mine}" not in keys
    at.toggle(key="queue_spread").set_value(True).run()
    assert not at.exception and "spread over patients" in at.caption[0].value
    done = str(run.table.at[mine, "patient_id"])
    rs.set_slide_status(done, "done", "Dr A")
    at.toggle(key="gallery_only_unreviewed").set_value(True).run()
    options = at.selectbox(key="gallery_patient").options
    assert not at.exception and not any(o.startswith(done) for o in options) and len(options) > 1


def test_overview_measures_against_reviewed_labels(monkeypatch, two_runs):
    run_a, _ = two_runs
    run = store.load_run(run_a)
    test_rows = evaluate.split_rows(run.table, "test")
    rs = reviews.open_for_run(run_a)
    for row in test_rows.index[:3]:
        rs.add(patient_id=str(run.table.at[row, "patient_id"]), x=int(run.table.at[row, "x"]),
               y=int(run.table.at[row, "y"]), verdict="label_wrong", reviewer="Dr A")
    at = start(monkeypatch, run_a, "views/overview.py")
    before = [m.value for m in at.metric]
    at.button_group(key="overview_labels").set_value("Reviewed labels").run()
    assert not at.exception
    assert any("3 labels changed on the test split" in i.value and "Rule: A dataset label is flipped" in i.value
               for i in at.info)
    assert [m.value for m in at.metric] != before  # the metrics follow the reviewed labels


def test_an_empty_reviews_page_names_the_cohort_store(monkeypatch, two_runs):
    run_a, _ = two_runs
    at = start(monkeypatch, run_a, "views/review_log.py")
    assert not at.exception
    text = " ".join(i.value for i in at.info)
    assert "No reviews yet" in text and f"`{reviews.COHORTS_DIR}/" in text and "reviews.sqlite" in text
    assert "shared by every run of the same data" in text and "this run folder" not in text
    assert str(run_a.parent) not in text  # no server path


def test_the_compare_pages_patient_is_the_shared_patient(monkeypatch, two_runs):
    run_a, run_b = two_runs
    at = start(monkeypatch, run_a, "views/compare.py", split="all")
    assert not at.exception
    assert at.session_state.compare_b == run_b.name == at.selectbox(key="w_compare_b").value  # the default run B
    picker = at.selectbox(key="w_patient")
    assert at.session_state.patient == picker.value  # the patient shown is the shared state's
    other = next(o.split(" · ")[0] for o in picker.options if not o.startswith(f"{picker.value} · "))
    at.selectbox(key="w_patient").set_value(other).run()
    assert not at.exception
    assert at.session_state.patient == other and at.session_state.patch is None
