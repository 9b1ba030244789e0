"""Reviews: every verdict given on this run's patches, filterable, exportable, each row opening its patch.

Reviews live in the cohort's review store, shared by every run of the same data. Several reviewers'
verdicts on a patch are independent opinions: a reviewer's newer verdict supersedes only their own
older one (pipeline.agreement.latest_per_reviewer), never another reviewer's.

Reviews are matched to their patches by identity (patient, x, y), not by the row they were stored
with, so a re-ingest into the run folder cannot attach a review to another patch; reviews of
patches the run no longer has are listed apart, never dropped.
"""
import streamlit as st

from app import exports, selection, state, ui
from pipeline.reviews import VERDICTS

ss = st.session_state
run = state.current_run()
threshold = ss.threshold

st.title("Reviews")
reviews = ui.reviews_or_stop(run)
everything = reviews.every
if everything.empty:
    st.info("No reviews yet. Open a patch in the inspector (or from the errors gallery) and save a verdict; "
            f"reviews are stored in the cohort's review store, `{reviews.file}` in the runs folder, shared by "
            "every run of the same data, and listed here.",
            icon=":material/rate_review:")
    state.stop()

missing = reviews.not_in_run
found = reviews.found
latest = reviews.latest_per_reviewer
st.caption(f"{len(everything):,} reviews of {found['row'].nunique():,} patches by {everything['reviewer'].nunique():,} "
           f"reviewer(s), stored in `{reviews.file}` (the cohort's review store, shared by every run of the same data).")
if reviews.moved:
    st.info(f"{reviews.moved:,} review{'s were' if reviews.moved > 1 else ' was'} given when this run's manifest "
            "had other rows (the data was "
            "re-ingested into this folder); each is shown on its own patch, matched by patient, x and y.",
            icon=":material/swap_vert:")
if len(missing):
    st.warning(f"{len(missing):,} review{'s name patches' if len(missing) > 1 else ' names a patch'} not in this "
               f"run's manifest; kept in `{reviews.file}` and in the CSV export, listed below.",
               icon=":material/warning:")
counts = latest["verdict"].value_counts()
for col, (verdict, text) in zip(st.columns(len(VERDICTS)), VERDICTS.items()):
    col.metric(f"{text} (each reviewer's latest)", f"{int(counts.get(verdict, 0)):,}",
               help="Each reviewer's latest verdict on each patch: one row per patch and reviewer")

history_col, verdict_col, reviewer_col = st.columns([2, 3, 2], vertical_alignment="bottom")
show_history = history_col.toggle("Include superseded reviews", key="reviews_history",
                                  help="A reviewer's newer verdict on a patch supersedes only their own older "
                                       "one (other reviewers' verdicts are independent opinions, all listed); "
                                       "every review is kept.")
verdicts = verdict_col.pills("Verdict", list(VERDICTS), selection_mode="multi", default=list(VERDICTS),
                             format_func=VERDICTS.get, key="reviews_verdicts")
reviewers = sorted(everything["reviewer"].unique())
reviewer = reviewer_col.selectbox("Reviewer", ["everyone", *reviewers], key="reviews_reviewer")

shown = reviews.found if show_history else latest
shown = shown[shown["verdict"].isin(verdicts)]
if reviewer != "everyone":
    shown = shown[shown["reviewer"] == reviewer]
patch = run.table.loc[shown["row"].to_numpy()]  # resolved rows: all of them are in this run
shown = shown.assign(label=patch["label"].to_numpy(), prob=patch["prob"].to_numpy(),
                     outcome=selection.outcome_names(patch["label"].to_numpy(), patch["prob"].to_numpy(), threshold))
shown = shown.sort_values("id", ascending=False).reset_index(drop=True)


def _open_selected_review() -> None:
    picked = ss.reviews_table.selection.rows
    if picked:
        picked_row = shown.iloc[picked[0]]
        state.go_to("inspector", patient=picked_row["patient_id"], patch=int(picked_row["row"]))


st.dataframe(
    shown[["created_at", "reviewer", "patient_id", "x", "y", "verdict", "note", "label", "prob", "outcome", "row",
           *[c for c in ("run_name", "prob_shown") if c in shown]]],
    hide_index=True, width="stretch", key="reviews_table", on_select=_open_selected_review,
    selection_mode="single-row",
    column_config={"created_at": "When (UTC)", "reviewer": "Reviewer", "patient_id": "Patient", "verdict": "Verdict", "note": "Note",
                   "label": "True label", "prob": st.column_config.NumberColumn("P(IDC)", format="%.3f"),
                   "outcome": f"Outcome at {threshold:.3f}", "row": "Row", "run_name": "Given in run",
                   "prob_shown": st.column_config.NumberColumn("P(IDC) shown", format="%.3f",
                                                               help="In the run the review was given in")},
)
st.caption("Select a row to open its patch in the inspector.")
if len(missing):
    st.subheader("Reviews of patches not in this run")
    st.caption("Their patch (patient, x, y) is not in the current manifest, e.g. after a re-ingest without it. "
               "They stay in the reviews file; re-ingesting data that has the patch shows them again.")
    st.dataframe(missing[["created_at", "reviewer", "patient_id", "x", "y", "verdict", "note", "recorded_row"]],
                 hide_index=True, width="stretch", key="reviews_not_in_run",
                 column_config={"created_at": "When (UTC)", "reviewer": "Reviewer", "patient_id": "Patient",
                                "verdict": "Verdict", "note": "Note", "recorded_row": "Row when reviewed"})
st.download_button("Download all reviews (CSV)", lambda: exports.csv_bytes(reviews.export_frame()),
                   file_name=f"{run.name}_reviews.csv", mime="text/csv", icon=":material/download:", on_click="ignore",
                   help="Every review, superseded ones and those of patches not in this run included.")
