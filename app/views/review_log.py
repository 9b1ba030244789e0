"""Reviews: every verdict given in this run, filterable, exportable, each row opening its patch."""
import streamlit as st

from app import loaders, selection, state
from app.reviews import VERDICTS

ss = st.session_state
run = ss.current_run
threshold = ss.threshold
if ss.pop("open_inspector", False):  # set when a review row was selected
    st.switch_page(state.PAGES["inspector"])

st.title("Reviews")
review_store = loaders.review_store(str(run.path))
everything = review_store.all()
if everything.empty:
    st.info("No reviews yet. Open a patch in the inspector (or from the errors gallery) and save a verdict; "
            "reviews are stored in this run folder and listed here.", icon=":material/rate_review:")
    st.stop()

latest = review_store.latest()
st.caption(f"{len(everything):,} reviews of {len(latest):,} patches by {everything['reviewer'].nunique():,} "
           f"reviewer(s), stored in `{review_store.path}`.")
counts = latest["verdict"].value_counts()
for col, (verdict, text) in zip(st.columns(len(VERDICTS)), VERDICTS.items()):
    col.metric(f"{text} (latest per patch)", f"{int(counts.get(verdict, 0)):,}")

history_col, verdict_col, reviewer_col = st.columns([2, 3, 2], vertical_alignment="bottom")
show_history = history_col.toggle("Include superseded reviews", key="reviews_history",
                                  help="A newer review of a patch supersedes the older one; both are kept.")
verdicts = verdict_col.pills("Verdict", list(VERDICTS), selection_mode="multi", default=list(VERDICTS),
                             format_func=VERDICTS.get, key="reviews_verdicts")
reviewers = sorted(everything["reviewer"].unique())
reviewer = reviewer_col.selectbox("Reviewer", ["everyone", *reviewers], key="reviews_reviewer")

shown = everything if show_history else latest
shown = shown[shown["verdict"].isin(verdicts)]
if reviewer != "everyone":
    shown = shown[shown["reviewer"] == reviewer]
patch = run.table.iloc[shown["row"].to_numpy()]
shown = shown.assign(label=patch["label"].to_numpy(), prob=patch["prob"].to_numpy(),
                     outcome=selection.outcome_names(patch["label"].to_numpy(), patch["prob"].to_numpy(), threshold))
shown = shown.sort_values("id", ascending=False).reset_index(drop=True)


def _open_selected_review() -> None:
    picked = ss.reviews_table.selection.rows
    if picked:
        state.open_patch(shown["patient_id"].iloc[picked[0]], int(shown["row"].iloc[picked[0]]))
        ss.open_inspector = True


st.dataframe(
    shown[["created_at", "reviewer", "patient_id", "x", "y", "verdict", "note", "label", "prob", "outcome", "row"]],
    hide_index=True, width="stretch", key="reviews_table", on_select=_open_selected_review,
    selection_mode="single-row",
    column_config={"created_at": "When (UTC)", "reviewer": "Reviewer", "patient_id": "Patient", "verdict": "Verdict", "note": "Note",
                   "label": "True label", "prob": st.column_config.NumberColumn("P(IDC)", format="%.3f"),
                   "outcome": f"Outcome at {threshold:.3f}", "row": "Row"},
)
st.caption("Select a row to open its patch in the inspector.")
st.download_button("Download all reviews (CSV)", review_store.to_csv_bytes, file_name=f"{run.name}_reviews.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")
