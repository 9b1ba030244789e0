"""The patient viewer: choosing a patient, its metrics at the threshold, overlays, choosing a patch."""
import base64
import json
from pathlib import Path

import numpy as np

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


def slide_images(chart: dict) -> int:
    """The slide's images in a figure: image traces (a data URI) or layout images (the JPEG served by URL)."""
    return ([t["type"] for t in chart["data"]].count("image")
            + sum(i.get("name") == "slide" for i in chart["layout"].get("images", [])))


def test_overlays_layouts_and_patch_choice(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    patient = run.table["patient_id"].iloc[0]
    at = open_patient_page(monkeypatch, tiny_run.parent, patient=patient)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    kinds = [trace["type"] for trace in chart["data"]]
    assert slide_images(chart) == 1 and "heatmap" in kinds  # the slide once, overlays at patch resolution

    at.button_group(key="overlays").set_value(["Ground truth", "Prediction", "Probability", "Errors (TP/FP/FN/TN)",
                                                "Reviews", "Probability, patch alone", "True region outline"]).run()
    at.button_group(key="slide_layout").set_value("Ground truth | prediction").run()
    assert not at.exception
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert slide_images(chart) == 2  # two linked panels
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


def test_a_patient_without_idc_shows_f1_and_sensitivity_as_not_defined(monkeypatch, tmp_path, tiny_run):
    """Relabel one patient's patches non-IDC in a copy of the run: its sensitivity and F1 have nothing
    to find, so they read 'not defined' with the reason, never 0.000 or nan."""
    import shutil

    import pandas as pd

    copy = tmp_path / "runs" / "no-idc"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    manifest = pd.read_parquet(copy / store.MANIFEST)
    patient = str(manifest["patient_id"].iloc[0])
    manifest.loc[manifest["patient_id"].astype(str) == patient, "label"] = 0
    manifest.to_parquet(copy / store.MANIFEST, index=False)
    assert store.load_run(copy).table.query("patient_id == @patient")["label"].sum() == 0

    at = open_patient_page(monkeypatch, copy.parent, patient=patient)
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Sensitivity"] == "not defined" and shown["F1"] == "not defined"
    assert shown["Specificity"] not in ("not defined", "nan") and shown["True IDC"] == "0.0 %"
    assert any("Sensitivity and F1 not defined: no IDC patch in this patient." in c.value for c in at.caption)
    assert not any(v in ("nan", "0.000") for k, v in shown.items() if k in ("Sensitivity", "F1"))


def test_errors_overlay_leaves_true_negatives_clear_until_asked_and_shows_a_scale_bar(monkeypatch, tiny_run):
    run = store.load_run(tiny_run)
    patient = str(run.table["patient_id"].iloc[0])
    rows = run.table[run.table["patient_id"] == patient]
    threshold = float(np.nextafter(rows["prob"].max(), 1.0))  # every patch called non-IDC: its non-IDC ones TN
    assert (rows["label"] == 0).any()
    at = open_patient_page(monkeypatch, tiny_run.parent, patient=patient, threshold=repr(threshold))
    assert not at.exception

    def chart():
        return json.loads(at.get("plotly_chart")[0].proto.spec)

    def errors_cells(spec) -> list:
        z = next(t for t in spec["data"] if t["type"] == "heatmap" and t.get("name") == "Errors (TP/FP/FN/TN)")["z"]
        if isinstance(z, dict):  # Plotly 6 sends arrays as typed base64 buffers
            z = np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"])
        values = np.asarray(z, np.float64).ravel()
        assert values.size
        return values[np.isfinite(values)].tolist()

    spec = chart()
    assert 0 not in errors_cells(spec)  # TN (code 0) cells are transparent (null) by default ...
    assert "TN: left clear (correct non-IDC)" in [t.get("name") for t in spec["data"]]  # ... and the legend says so
    bars = [s for s in spec["layout"]["shapes"] if s.get("name") == "scale bar"]
    assert bars and {s["xref"] for s in bars} == {"x"}
    assert any(a.get("name") == "scale bar" and ("mm" in a["text"] or "µm" in a["text"])
               for a in spec["layout"]["annotations"])
    at.toggle(key="show_tn").set_value(True).run()
    assert 0 in errors_cells(chart())  # ... until asked
    at.button_group(key="slide_layout").set_value("Ground truth | prediction").run()
    assert {s["xref"] for s in chart()["layout"]["shapes"] if s.get("name") == "scale bar"} == {"x", "x2"}
