"""Patch inspector: any patch, enlarged, with its neighbours, Grad-CAM and the review form."""
import streamlit as st

from app import loaders, patch_panel, selection, state, ui

ss = st.session_state
run = state.current_run()
threshold = ss.threshold

st.title("Patch inspector")
reviews = loaders.run_reviews(run)
ui.reviews_problem(reviews)
# Patient and patch are resolved before the page draws (state.resolve_view): by default the first
# test patient and its most confident error, the patch a reviewer most likely came for.
patient_id = ui.patient_picker(run, reviews)
rows = loaders.slide(run, patient_id).rows
outcome = selection.outcome_names(rows["label"].to_numpy(), rows["prob"].to_numpy(), threshold)

pick_col, slide_col = st.columns([5, 1], vertical_alignment="bottom")
with pick_col:
    ui.patch_picker(rows, outcome, "Patch")
slide_col.button("Show on slide", icon=":material/map:", width="stretch", on_click=state.go_to, args=("patient",))
patch_panel.render(run, ss.patch, threshold)
