"""Cohort overview: metrics at the threshold on a split, curves, calibration, per-patient table."""
import streamlit as st

from app import charts, cohort, exports, loaders, state, ui
from pipeline import evaluate, metrics

ss = st.session_state
run = state.current_run()
threshold, split = ss.threshold, ss.split
data = loaders.split_data(run, split)
scope = cohort.scope_text(split, data.described)

st.title(f"Cohort overview · {run.name}")
if not len(data.rows):
    st.info(f"The {split} split of this run has no patients. Pick another split in the sidebar.")
    st.stop()
ui.scope_caption(f"{scope}, at threshold {threshold:.3f}")

# Presets are chosen on validation by the pipeline; one click moves the shared threshold there.
chosen_on = run.evaluation.get("thresholds_chosen_on", {})
chosen_text = cohort.scope_text("val", chosen_on) if "n_patients" in chosen_on else chosen_on.get("split", "?")
preset_cols = st.columns(len(run.thresholds))
for col, (name, value) in zip(preset_cols, run.thresholds.items()):
    col.button(f"{evaluate.PRESET_LABELS.get(name, name)}: {value:.3f}", key=f"preset_{name}", width="stretch",
               on_click=state.set_threshold, args=(value,), type="primary" if value == threshold else "secondary",
               help=f"Chosen on {chosen_text}.")

at = metrics.metrics_at(data.label, data.prob, threshold)
curves = loaders.curves(run, split)
tiles = st.columns(8)
for col, key in zip(tiles, ("sensitivity", "specificity", "precision", "f1", "balanced_accuracy", "mcc")):
    col.metric(cohort.METRIC_LABELS[key], f"{at[key]:.3f}")
tiles[6].metric("ROC-AUC", f"{curves['roc_auc']:.3f}", help="Threshold-free: the same at every threshold.")
tiles[7].metric("PR-AUC", f"{curves['pr_auc']:.3f}", help="Average precision; threshold-free.")
st.caption(cohort.score_text(run.meta.get("context"), curves.get("roc_auc_patch")))
st.caption(cohort.model_text(run.meta))

point = cohort.operating_point(at)
point_label = f"threshold {threshold:.3f}"
left, middle, right = st.columns(3)
left.plotly_chart(charts.confusion_figure(at), key="confusion")
middle.plotly_chart(charts.roc_figure(curves["roc"], curves["roc_auc"], point, point_label), key="roc")
right.plotly_chart(charts.pr_figure(curves["pr"], curves["pr_auc"], curves["prevalence"], point, point_label),
                   key="pr")
left, right = st.columns(2)
with left:
    log_counts = st.toggle("Log count axis", key="histogram_log", help="Shows small classes and sparse bins")
    st.plotly_chart(charts.histogram_figure(curves["histogram"], threshold, log_counts), key="histogram")
right.plotly_chart(charts.reliability_figure(curves["reliability"], curves["ece"]), key="reliability")

metrics_table = cohort.metrics_frame(at, curves, split, data.described, run.name)
with st.expander("All metrics as a table"):
    st.dataframe(metrics_table, hide_index=True, column_config={"value": st.column_config.NumberColumn(format="%.4f")})
st.download_button("Download metrics (CSV)", exports.csv_bytes(metrics_table), file_name=f"{run.name}_{split}_metrics.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")

st.subheader("Per patient")
ui.scope_caption(f"{scope}, at threshold {threshold:.3f}; select a row to open the patient")
per_patient = evaluate.per_patient_table(data.rows, threshold)


def _open_selected_patient() -> None:
    picked = ss.per_patient_table.selection.rows
    if picked:
        state.go_to("patient", patient=per_patient["patient_id"].iloc[picked[0]])


st.dataframe(
    per_patient, hide_index=True, key="per_patient_table", on_select=_open_selected_patient,
    selection_mode="single-row", width="stretch",
    column_config={
        "patient_id": "Patient", "split": "Split", "patches": st.column_config.NumberColumn("Patches", format="%d"),
        "true_idc_pct": st.column_config.NumberColumn("True IDC %", format="%.1f"),
        "pred_idc_pct": st.column_config.NumberColumn("Predicted IDC %", format="%.1f"),
        "f1": st.column_config.NumberColumn("F1", format="%.3f"),
        "sensitivity": st.column_config.NumberColumn("Sensitivity", format="%.3f"),
        "specificity": st.column_config.NumberColumn("Specificity", format="%.3f"),
        "false_pos": "False pos.", "false_neg": "False neg.", "errors": "Errors",
    },
)
st.download_button("Download per-patient table (CSV)", exports.csv_bytes(per_patient.assign(threshold=threshold)),
                   file_name=f"{run.name}_{split}_per_patient.csv", mime="text/csv", icon=":material/download:",
                   on_click="ignore")
