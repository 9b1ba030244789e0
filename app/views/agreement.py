"""Agreement between reviewers: Cohen's kappa per pair, Fleiss' kappa, the verdict confusion table of a
pair, each reviewer against the dataset label, and the disagreements still to resolve.

Computed by pipeline.agreement from each reviewer's latest verdict of each patch of this run (the
cohort's reviews, given in any run of it), so the numbers here are the CLI's numbers.
"""
import numpy as np
import pandas as pd
import streamlit as st

from app import selection, state, ui
from pipeline import agreement

ss = st.session_state
run = state.current_run()

st.title("Agreement")
reviews = ui.reviews_or_stop(run)
found = reviews.found
if found.empty:
    st.info("No reviews yet. Agreement is measured on patches that two or more reviewers reviewed.",
            icon=":material/groups:")
    state.stop()
labels = selection.labelled_rows(run.table[["patient_id", "x", "y", "label"]])  # unlabelled patches have no label to agree with
report = agreement.agreement_report(found, labels)
st.caption(f"{report.n_reviews:,} reviews of {report.n_patches:,} patches by {report.n_reviewers:,} reviewer(s); "
           f"{report.n_patches_multi:,} patch{'es' * (report.n_patches_multi != 1)} reviewed by two or more. "
           "Each reviewer's latest verdict of a patch is their opinion of it.")


def _kappa_text(value: float) -> str:
    return "not defined" if np.isnan(value) else f"{value:.3f}"


kappa_col, multi_col = st.columns(2)
kappa_col.metric("Fleiss' kappa (all reviewers)", _kappa_text(report.fleiss_kappa),
                 help="Over the patches two or more reviewers reviewed; not defined when there are none, or when "
                      "every opinion is the same verdict.")
multi_col.metric("Patches with two or more reviewers", f"{report.n_patches_multi:,}")

st.subheader("Cohen's kappa for each pair")
if report.pairwise.empty:
    st.info("No two reviewers have reviewed the same patch yet.", icon=":material/groups:")
else:
    st.dataframe(report.pairwise, hide_index=True, width="stretch", key="agreement_pairs",
                 column_config={"reviewer_a": "Reviewer A", "reviewer_b": "Reviewer B",
                                "n_patches": st.column_config.NumberColumn("Patches both reviewed", format="%d"),
                                "kappa": st.column_config.NumberColumn("Cohen's kappa", format="%.3f",
                                                                       help="Empty where it is not defined"),
                                "observed_agreement": st.column_config.NumberColumn("Same verdict", format="%.3f")})
    pairs = [(r.reviewer_a, r.reviewer_b) for r in report.pairwise.itertuples()]
    pair = st.selectbox("Verdict confusion table of the pair", pairs, key="agreement_pair",
                        format_func=lambda p: f"{p[0]} (rows) vs {p[1]} (columns)")
    confusion = agreement.verdict_confusion(found, *pair)
    names = {v: f"{v.replace('_', ' ')}" for v in agreement.VERDICTS}
    st.dataframe(confusion.rename(index=names, columns=names), width="content", key="agreement_confusion")

st.subheader("Each reviewer against the dataset label")
st.dataframe(report.reviewer_vs_label, hide_index=True, width="stretch", key="agreement_vs_label",
             column_config={"reviewer": "Reviewer", "n": "Patches", "agree": "Agree", "label_wrong": "Label wrong",
                            "unsure": "Unsure",
                            **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
                               for c in report.reviewer_vs_label.columns if "share" in c}})

st.subheader("Disagreements to resolve")
queue = report.disagreements
if queue.empty:
    st.success("No patch has reviewers whose latest verdicts differ.", icon=":material/check_circle:")
    state.stop()
rows = found.drop_duplicates(["patient_id", "x", "y"]).astype({"x": "int64", "y": "int64"})
queue = queue.astype({"x": "int64", "y": "int64"}).merge(rows[["patient_id", "x", "y", "row"]],
                                                          on=["patient_id", "x", "y"], how="left")
st.caption(f"{len(queue):,} patches, label conflicts (agree vs label is wrong) first. Select a row to open the "
           "patch in the inspector; a new review there resolves it.")


def _open_disagreement() -> None:
    picked = ss.agreement_queue.selection.rows
    if picked:
        item = queue.iloc[picked[0]]
        state.go_to("inspector", patient=item["patient_id"], patch=int(item["row"]))


st.dataframe(pd.DataFrame(queue[["patient_id", "x", "y", "conflict", "summary", "n_reviewers", "last_reviewed_at"]]),
             hide_index=True, width="stretch", key="agreement_queue", on_select=_open_disagreement,
             selection_mode="single-row",
             column_config={"patient_id": "Patient", "conflict": "Conflict", "summary": "Verdicts",
                            "n_reviewers": "Reviewers", "last_reviewed_at": "Last review (UTC)"})
