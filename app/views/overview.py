"""Cohort overview: metrics at the threshold on a split, curves, calibration, per-patient table."""
import streamlit as st

from app import charts, cohort, exports, loaders, selection, state, ui
from pipeline import agreement, evaluate, metrics

DATASET, REVIEWED = "Dataset labels", "Reviewed labels"

ss = st.session_state
run = state.current_run()
threshold, split = ss.threshold, ss.split
reviews = loaders.run_reviews(run)

st.title(f"Cohort overview · {run.name}")
ui.reviews_problem(reviews)
labels_col, rule_col = st.columns([2, 3], vertical_alignment="bottom")
source = labels_col.segmented_control(
    "Labels", [DATASET, REVIEWED], default=DATASET, required=True, key="overview_labels",
    help="Measure every metric and curve against the dataset's labels, or against the labels after the "
         "reviewers' consensus (a label flipped where the rule says the reviewers found it wrong).")
labels = loaders.DATASET_LABELS
if source == REVIEWED:
    rule_name = rule_col.selectbox("Consensus rule", list(agreement.CONSENSUS_RULES), index=1, key="overview_rule",
                                   format_func=lambda r: f"{r}: {agreement.CONSENSUS_RULES[r]}")
    labels = loaders.reviewed_labels(run, agreement.ConsensusRule(rule_name), reviews)
data = loaders.split_data(run, split, labels)
scope = cohort.scope_text(split, data.described)
if not len(data.every_row):
    st.info(f"The {split} split of this run has no patients. Pick another split in the sidebar.")
    state.stop()
if not len(data.rows):  # every patch unlabelled: no metric is defined, the predictions still are
    where = "across all splits" if split == "all" else f"of the {split} split"
    st.info(cohort.NO_LABELS_TEXT.format(where=where), icon=":material/label_off:")
    every = data.every_row
    predicted = int((every["prob"].to_numpy() >= threshold).sum())
    n_all, n_patients = len(every), int(every["patient_id"].nunique())
    ui.scope_caption(f"{'all splits' if split == 'all' else f'the {split} split'}: {n_patients:,} "
                     f"patient{'s' * (n_patients != 1)}, {n_all:,} unlabelled patches, at threshold {threshold:.3f}")
    count_cols = st.columns(3)
    count_cols[0].metric("Patches", f"{n_all:,}")
    count_cols[1].metric("Predicted IDC", f"{predicted:,}", help=f"P(IDC) ≥ {threshold:.3f}")
    count_cols[2].metric("Predicted IDC %", f"{100 * predicted / n_all:.1f} %")
    log_counts = st.toggle("Log count axis", key="histogram_log", help="Shows small classes and sparse bins")
    st.plotly_chart(charts.histogram_figure(cohort.unlabelled_histogram(every["prob"].to_numpy()), threshold,
                                            log_counts), key="histogram")
    state.stop()
ui.scope_caption(f"{scope}, at threshold {threshold:.3f}")
if data.unlabelled_text:
    st.caption(f":material/label_off: {data.unlabelled_text}")
if labels.reviewed is not None:
    changed = labels.reviewed.table.loc[data.rows.index]
    n_changed = int(changed["flipped"].sum())
    where = "across all splits" if split == "all" else f"on the {split} split"
    st.info(f"Measured against reviewed labels: **{n_changed:,} label{'s' * (n_changed != 1)} changed {where}** "
            f"({int((changed['flipped'] & (changed['label'] == 0)).sum()):,} to IDC, "
            f"{int((changed['flipped'] & (changed['label'] == 1)).sum()):,} to non-IDC; "
            f"{int((changed['n_reviewers'] > 0).sum()):,} patches reviewed). Rule: {labels.reviewed.rule.describe()}",
            icon=":material/fact_check:")
progress = loaders.progress(run, reviews)
split_patients = progress.loc[[str(p) for p in data.every_row["patient_id"].unique()]]
st.caption(f":material/rate_review: Review progress: patches reviewed {int(split_patients['patches_reviewed'].sum()):,}"
           f" / slides done {int((split_patients['progress'] == 'done').sum()):,} of {len(split_patients):,} "
           f"({'all splits' if split == 'all' else f'the {split} split'})")

# Presets are chosen on validation by the pipeline; one click moves the shared threshold there.
chosen_on = run.evaluation.get("thresholds_chosen_on", {})
chosen_text = cohort.scope_text("val", chosen_on) if "n_patients" in chosen_on else chosen_on.get("split", "?")
preset_cols = st.columns(len(run.thresholds))
for col, (name, value) in zip(preset_cols, run.thresholds.items()):
    col.button(f"{evaluate.PRESET_LABELS.get(name, name)}: {value:.3f}", key=f"preset_{name}", width="stretch",
               on_click=state.set_threshold, args=(value,), type="primary" if value == threshold else "secondary",
               help=f"Chosen on {chosen_text}.")

at = metrics.metrics_at(data.label, data.prob, threshold)
curves = loaders.curves(run, split, labels)
# 95% intervals: the split's bootstrap (resamples drawn once, cached) at this threshold, a few ms;
# ROC-AUC/PR-AUC intervals are threshold-free (evaluation.json's, or computed once and cached).
boot = loaders.bootstrap(run, split, labels)
intervals = {**boot.boot.metrics_at(threshold), **loaders.curve_intervals(run, split, labels)} if boot.boot else {}
reasons = evaluate.undefined_metrics(data.described, split)[0]
tiles = [(key, cohort.METRIC_LABELS[key], at[key], None)
         for key in ("sensitivity", "specificity", "precision", "f1", "balanced_accuracy", "mcc")]
tiles += [("roc_auc", "ROC-AUC", curves["roc_auc"], "Threshold-free: the same at every threshold."),
          ("pr_auc", "PR-AUC", curves["pr_auc"], "Average precision; threshold-free.")]
for col, (key, label, value, help_text) in zip(st.columns(len(tiles)), tiles):
    line = cohort.tile_caption(value, intervals.get(key), reasons.get(key, ""), boot.short)
    col.metric(label, cohort.value_text(value), help=" ".join(filter(None, (help_text, line))) or None)
    col.caption(line)
boot_info = boot.boot.info() if boot.boot else None
st.caption(cohort.bootstrap_text(boot_info, boot.unavailable, intervals.get("source", "")))
for warning in (boot_info or {}).get("warnings", []):
    st.warning(f"95% intervals: {warning}.", icon=":material/warning:")
st.caption(cohort.score_text(run.meta.get("context"), curves.get("roc_auc_patch"), intervals.get("roc_auc_patch")))
st.caption(cohort.model_text(run.meta))

point = cohort.operating_point(at)
point_label = f"threshold {threshold:.3f}"
# The threshold-free figures are built once per run and split (cached, shared by every session); a new
# threshold only adds the operating point to a copy.
figures = loaders.curve_figures(run, split, labels)
left, middle, right = st.columns(3)
left.plotly_chart(charts.confusion_figure(at), key="confusion")
middle.plotly_chart(charts.with_point(figures["roc"], point, point_label), key="roc")
right.plotly_chart(charts.with_point(figures["pr"], point, point_label), key="pr")
left, right = st.columns(2)
with left:
    log_counts = st.toggle("Log count axis", key="histogram_log", help="Shows small classes and sparse bins")
    st.plotly_chart(charts.histogram_figure(curves["histogram"], threshold, log_counts), key="histogram")
right.plotly_chart(figures["reliability"], key="reliability")

method = (f"95% percentile bootstrap over the {boot_info['n_patients']:,} patients ({boot_info['n_boot']:,} resamples, "
          f"seed {boot_info['seed']})" if boot_info else "")
metrics_table = cohort.metrics_frame(at, curves, split, data.described, run.name, intervals, reasons, method,
                                     boot.unavailable)
with st.expander("All metrics as a table"):
    st.dataframe(metrics_table, hide_index=True,
                 column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("value", "low", "high")})
st.download_button("Download metrics (CSV)", lambda: exports.csv_bytes(metrics_table), file_name=f"{run.name}_{split}_metrics.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")

st.subheader("Per patient")
ui.scope_caption(f"{scope}, at threshold {threshold:.3f}; select a row to open the patient")
if data.unlabelled_text:
    st.caption(f":material/label_off: Patients without labels are not listed: {data.unlabelled_text}")
every_patient = evaluate.per_patient_table(data.rows, threshold)
every_patient["review"] = every_patient["patient_id"].astype(str).map(loaders.progress_texts(run, reviews)).to_numpy()
n_errors = int(every_patient["errors"].sum())
st.caption(f"Share of errors: each patient's false positives + false negatives as a % of the split's {n_errors:,} "
           f"errors at this threshold ({int(every_patient['false_pos'].sum()):,} FP, "
           f"{int(every_patient['false_neg'].sum()):,} FN; FP and FN shares likewise). Rows are in patient order; "
           "click a column header to sort, e.g. by share of errors to see which patients the errors come from.")
only_unreviewed = st.toggle("Only unreviewed patients", key="overview_only_unreviewed",
                            help="List only the patients whose slide is not marked done (shares stay those of the "
                                 "whole split)")
if only_unreviewed:
    kept = selection.unreviewed(every_patient["patient_id"].astype(str), progress)
    per_patient = every_patient[every_patient["patient_id"].astype(str).isin(kept)].reset_index(drop=True)
    st.caption(f":material/filter_alt: {len(per_patient):,} of {len(every_patient):,} patients: the slides not "
               "marked done")
else:
    per_patient = every_patient


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
        "false_pos": "False pos.", "false_neg": "False neg.", "errors": "Errors", "review": "Review",
        "error_share_pct": st.column_config.NumberColumn(
            "Share of errors %", format="%.1f", help="The patient's FP + FN as a % of all the split's FP + FN"),
        "fp_share_pct": st.column_config.NumberColumn("Share of FP %", format="%.1f",
                                                      help="The patient's false positives as a % of the split's"),
        "fn_share_pct": st.column_config.NumberColumn("Share of FN %", format="%.1f",
                                                      help="The patient's false negatives as a % of the split's"),
    },
    column_order=("patient_id", "split", "review", "patches", "true_idc_pct", "pred_idc_pct", "f1", "sensitivity",
                  "specificity", "errors", "error_share_pct", "false_pos", "fp_share_pct", "false_neg", "fn_share_pct"),
)
st.download_button("Download per-patient table (CSV)", lambda: exports.csv_bytes(per_patient.assign(threshold=threshold)),
                   file_name=f"{run.name}_{split}_per_patient{'_unreviewed' * only_unreviewed}.csv", mime="text/csv", icon=":material/download:",
                   on_click="ignore")
