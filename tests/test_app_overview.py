"""The app without a run, with a broken run, and the cohort overview driven by the shared threshold.

Streamlit's AppTest runs app/main.py in-process against the session's tiny trained run.
"""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.state import PAGES as PAGE_SCRIPTS
from pipeline import evaluate, metrics, store

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
PAGES = tuple(PAGE_SCRIPTS.values())  # every page the app registers, the Compare page included


def start_app(monkeypatch, runs_dir: Path, **query) -> AppTest:
    monkeypatch.setenv("IDC_RUNS", str(runs_dir))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in query.items()})
    return at.run()


def shown_metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def expected_tiles(run_dir: Path, split: str, threshold: float) -> dict[str, str]:
    rows = evaluate.split_rows(store.load_run(run_dir).table, split)
    at = metrics.metrics_at(rows["label"].to_numpy(), rows["prob"].to_numpy(), threshold)
    return {"Sensitivity (recall)": f"{at['sensitivity']:.3f}", "Specificity": f"{at['specificity']:.3f}",
            "Precision (PPV)": f"{at['precision']:.3f}", "F1": f"{at['f1']:.3f}",
            "Balanced accuracy": f"{at['balanced_accuracy']:.3f}", "MCC": f"{at['mcc']:.3f}"}


def assert_tiles(at: AppTest, run_dir: Path, split: str, threshold: float) -> None:
    shown = shown_metrics(at)
    for label, value in expected_tiles(run_dir, split, threshold).items():
        assert shown[label] == value, label


def test_without_runs_the_app_shows_the_commands_to_make_one(monkeypatch, tmp_path):
    at = start_app(monkeypatch, tmp_path)
    assert not at.exception
    code = "\n".join(c.value for c in at.code)
    assert "make run" in code
    assert "python -m pipeline synth" in code and f"python -m pipeline run --data data/synthetic --out {tmp_path}" in code
    assert "No run folder found" in at.error[0].value


def test_a_broken_run_folder_shows_the_artifact_error(monkeypatch, tmp_path):
    broken = tmp_path / "broken-run"
    broken.mkdir()
    store.write_json(broken / store.RUN_META, {"created": "2026-01-01T00:00:00"})
    (broken / store.SCORES).write_bytes(b"")
    at = start_app(monkeypatch, tmp_path)
    assert not at.exception
    assert any("manifest.parquet is missing" in e.value for e in at.error)


def test_synthetic_banner_and_clinical_disclaimer_on_every_page(monkeypatch, tiny_run):
    at = start_app(monkeypatch, tiny_run.parent)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        assert any("SYNTHETIC" in w.value for w in at.warning), page
        assert any("not for clinical use" in c.value for c in at.sidebar.caption), page


def test_threshold_box_and_slider_update_every_metric(monkeypatch, tiny_run):
    at = start_app(monkeypatch, tiny_run.parent)
    assert "the test split" in at.caption[0].value
    assert_tiles(at, tiny_run, "test", 0.5)
    # The page says what P(IDC) is: the patch with its neighbourhood context, with the fitted width.
    sigma = store.load_run(tiny_run).meta["context"]["sigma_px"]
    assert any(f"neighbours' on the same slide (Gaussian weighting, σ = {sigma:.0f} px)" in c.value for c in at.caption)
    # ... and which model made it, read from the run's own run.json.
    train = store.load_run(tiny_run).meta["train"]
    assert any(f"Model: separable, width {train['width']}, {train['params']:,} parameters" in c.value for c in at.caption)
    at.number_input(key="w_threshold_number").set_value(0.3).run()
    assert at.session_state.threshold == 0.3
    assert at.slider(key="w_threshold_slider").value == pytest.approx(0.3)
    assert_tiles(at, tiny_run, "test", 0.3)
    assert at.query_params["threshold"] == "0.3"
    at.slider(key="w_threshold_slider").set_value(0.62).run()
    assert_tiles(at, tiny_run, "test", 0.62)
    assert at.number_input(key="w_threshold_number").value == pytest.approx(0.62)


def test_threshold_outside_0_to_1_is_rejected_with_a_message(monkeypatch, tiny_run):
    at = start_app(monkeypatch, tiny_run.parent)
    at.number_input(key="w_threshold_number").set_value(1.5).run()
    assert not at.exception
    assert any("1.5 rejected" in e.value and "between 0 and 1" in e.value for e in at.sidebar.error)
    assert at.session_state.threshold == 0.5
    assert_tiles(at, tiny_run, "test", 0.5)


def test_preset_buttons_and_split_choice(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    at = start_app(monkeypatch, tiny_run.parent)
    at.button(key="preset_youden_j").click().run()
    youden = run.thresholds["youden_j"]
    assert at.session_state.threshold == youden
    assert_tiles(at, tiny_run, "test", youden)
    at.sidebar.radio(key="w_split").set_value("all").run()
    described = evaluate.describe(run.table)
    assert f"all splits: {described['n_patients']} patients, {described['n_patches']:,} patches" in at.caption[0].value
    assert_tiles(at, tiny_run, "all", youden)


def test_a_bookmarked_url_restores_the_view(monkeypatch, tiny_run):
    patient = store.load_run(tiny_run).table["patient_id"].iloc[-1]
    at = start_app(monkeypatch, tiny_run.parent, run=tiny_run.name, split="val", threshold=0.42, patient=patient)
    assert (at.session_state.split, at.session_state.threshold, at.session_state.patient) == ("val", 0.42, patient)
    assert "the val split" in at.caption[0].value
    assert_tiles(at, tiny_run, "val", 0.42)
    at.switch_page("views/patient.py").run()
    assert at.selectbox(key="w_patient").value == patient
    assert at.query_params["patient"] == patient and at.query_params["threshold"] == "0.42"


def test_a_bad_threshold_in_the_url_is_rejected(monkeypatch, tiny_run):
    at = start_app(monkeypatch, tiny_run.parent, threshold=7)
    assert not at.exception
    assert any("threshold from the link rejected" in w.value for w in at.sidebar.warning)
    assert at.session_state.threshold == 0.5


def test_state_changes_one_way_pages_switch_in_one_place_fragments_sync_the_url():
    """app/state.py's model: st.switch_page only in main.py (pages call state.go_to), st.fragment and
    sync_url only through state.py (pages use state.fragment), the run through state.current_run()."""
    import ast

    app = Path(MAIN).parent
    for path in sorted(app.rglob("*.py")):
        source = path.read_text()
        calls = {ast.unparse(node.func) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)}
        decorators = {ast.unparse(d) for node in ast.walk(ast.parse(source))
                      if isinstance(node, ast.FunctionDef) for d in node.decorator_list}
        name = path.relative_to(app).as_posix()
        assert "st.switch_page" not in calls or name == "main.py", name
        assert "st.fragment" not in calls | decorators or name == "state.py", name
        assert "state.sync_url" not in calls or name == "main.py", name
        assert "current_run" not in source or name in ("state.py", "main.py") or "state.current_run()" in source, name
