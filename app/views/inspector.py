"""Patch inspector: any patch, enlarged, with its neighbours, Grad-CAM and the review form."""
import streamlit as st

from app import loaders, patch_panel, selection, state, ui

ss = st.session_state
run = ss.current_run
threshold = ss.threshold

st.title("Patch inspector")
ui.reviews_problem(loaders.run_reviews(run))
patient_id = ui.patient_picker(run)
rows = loaders.slide(run, patient_id).rows
outcome = selection.outcome_names(rows["label"].to_numpy(), rows["prob"].to_numpy(), threshold)
if ss.patch is None:
    # Open on the patient's most confident error, the patch a reviewer most likely came for.
    worst = selection.errors(rows, threshold)
    ss.patch = int(worst.index[0] if len(worst) else rows["prob"].idxmax())

pick_col, slide_col = st.columns([5, 1], vertical_alignment="bottom")
with pick_col:
    ui.patch_picker(rows, outcome, "Patch")
if slide_col.button("Show on slide", icon=":material/map:", width="stretch"):
    st.switch_page(state.PAGES["patient"])
patch_panel.render(run, ss.patch, threshold)
