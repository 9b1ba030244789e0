"""The patient viewer: choosing a patient, its metrics at the threshold, overlays, choosing a patch."""
import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app import loaders
from pipeline import metrics, store

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def open_patient_page(monkeypatch, runs_dir: Path, **query) -> AppTest:
    monkeypatch.setenv("IDC_RUNS", str(runs_dir))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in query.items()})
    return at.run().switch_page("views/patient.py").run()


def patient_tiles(run: store.Run, patient: str, threshold: float) -> dict[str, str]:
    rows = run.table[run.table["patient_id"] == patient]
    at = metrics.metrics_at(rows["label"].to_numpy(), rows["prob"].to_numpy(), threshold)
    return {"Sensitivity": f"{at['sensitivity']:.3f}", "Specificity": f"{at['specificity']:.3f}",
            "F1": f"{at['f1']:.3f}", "Errors (FP / FN)": f"{at['fp']:,} / {at['fn']:,}"}


def assert_patient_tiles(at: AppTest, run: store.Run, patient: str, threshold: float) -> None:
    shown = {m.label: m.value for m in at.metric}
    assert {k: shown[k] for k in patient_tiles(run, patient, threshold)} == patient_tiles(run, patient, threshold)
    assert f"patient {patient} (" in at.caption[0].value


def test_patient_selection_and_its_metrics_follow_the_threshold(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    order = loaders.patients(run)["patient_id"].tolist()  # test patients first
    at = open_patient_page(monkeypatch, tiny_run.parent)
    assert not at.exception
    assert at.selectbox(key="w_patient").value == order[0]
    assert_patient_tiles(at, run, order[0], 0.5)

    at.selectbox(key="w_patient").set_value(order[2]).run()
    assert at.session_state.patient == order[2] and at.query_params["patient"] == order[2]
    assert_patient_tiles(at, run, order[2], 0.5)
    at.button(key="next_patient").click().run()
    assert at.selectbox(key="w_patient").value == order[3]
    at.number_input(key="w_threshold_number").set_value(0.35).run()
    assert_patient_tiles(at, run, order[3], 0.35)


def test_overlays_layouts_and_patch_choice(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    patient = run.table["patient_id"].iloc[0]
    at = open_patient_page(monkeypatch, tiny_run.parent, patient=patient)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    kinds = [trace["type"] for trace in chart["data"]]
    assert kinds.count("image") == 1 and "heatmap" in kinds  # the slide once, overlays at patch resolution

    at.button_group(key="overlays").set_value(["Ground truth", "Prediction", "Probability", "Errors (TP/FP/FN/TN)",
                                                "Reviews", "Probability, patch alone", "True region outline"]).run()
    at.button_group(key="slide_layout").set_value("Ground truth | prediction").run()
    assert not at.exception
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [trace["type"] for trace in chart["data"]].count("image") == 2  # two linked panels
    assert chart["layout"]["xaxis2"]["matches"] == "x"
    at.button(key="toggle_overlays").click().run()
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "heatmap" not in [trace["type"] for trace in chart["data"]]

    row = int(run.table.index[run.table["patient_id"] == patient][3])
    at.selectbox(key="w_patch").set_value(row).run()
    x, y = run.table.loc[row, ["x", "y"]]
    assert any(h.value == f"Patch x {x}, y {y} · patient {patient}" for h in at.subheader)
    # Both scores are shown: the final one with context, and the patch alone that Grad-CAM explains.
    final, alone = run.table.loc[row, ["prob", "prob_patch"]]
    assert any(f"**P(IDC):** {final:.3f} (with neighbourhood context; the patch alone {alone:.3f}" in m.value
               for m in at.markdown)
    assert at.query_params["patch"] == str(row)
