"""Errors gallery and review queue: the patches a reviewer should look at first, paged."""
import numpy as np
import streamlit as st

from app import cohort, identity, loaders, selection, slides, state, ui
from app.cam_overlay import overlay_cam
from model.explain import METHODS
from pipeline import store

PER_PAGE = 24
COLUMNS = 4
ZOOM = 5  # 50 px -> 250 px, about a card's width, so the browser does not blur the pixels
ERRORS, QUEUE = "Errors", "Review queue"

ss = st.session_state
run = state.current_run()
threshold, split = ss.threshold, ss.split
data = loaders.split_data(run, split)

st.title("Errors & review queue")
reviews = loaders.run_reviews(run)  # matched to their patches by identity, not by stored row
ui.reviews_problem(reviews)
mode_col, patient_col = st.columns([3, 2])
mode = mode_col.segmented_control(
    "Show", [ERRORS, QUEUE], default=ERRORS, required=True, key="gallery_mode",
    help="Errors: false positives/negatives, most confident first. Review queue: patches not reviewed yet, "
         "either nearest the threshold (most uncertain) or the most confident errors.")
patient_ids = sorted(data.rows["patient_id"].unique())
progress = loaders.progress(run, reviews)
if st.toggle("Only unreviewed patients", key="gallery_only_unreviewed",
             help="Only the patients whose slide is not marked done, in the patient list and in 'all patients'"):
    patient_ids = [p for p in patient_ids if progress.at[str(p), "progress"] != selection.PROGRESS[2]]
    data_rows = data.rows[data.rows["patient_id"].isin(patient_ids)]
else:
    data_rows = data.rows
every_patient = "all patients" + (" (all splits)" if split == "all" else f" of the {split} split")
patient = patient_col.selectbox("Patient", ["all", *patient_ids], key="gallery_patient",
                                format_func=lambda p: every_patient if p == "all"
                                else f"{p} · {selection.progress_text(progress.loc[str(p)])}")
rows = data_rows if patient == "all" else data_rows[data_rows["patient_id"] == patient]
verdicts = reviews.verdicts()

if mode == ERRORS:
    kinds = st.pills("Error kinds", list(selection.ERROR_KINDS), selection_mode="multi", default=["FP", "FN"],
                     key="gallery_kinds", format_func={"FP": "False positives", "FN": "False negatives"}.get)
    items = selection.errors(rows, threshold, kinds)
    order_text = "most confident error first"
else:
    order = st.radio("Order", list(selection.QUEUE_ORDERS), format_func=selection.QUEUE_ORDERS.get,
                     horizontal=True, key="queue_order")
    me = identity.current()
    found = reviews.found
    mine = found.loc[found["reviewer"] == me, "row"].unique() if me else []  # others' reviews do not exclude
    spread_col, _ = st.columns([2, 3])
    spread = spread_col.toggle("Spread over patients", key="queue_spread",
                               help="Take turns between patients (each one's next patch in queue order), "
                                    "instead of finishing one patient's patches first.")
    items = selection.review_queue(rows, threshold, order, reviewed_rows=mine)
    if spread:
        items = selection.spread_over_patients(items, run.table["patient_id"].reindex(items.index).to_numpy())
    order_text = ((f"not reviewed by {me} yet, " if me else "sign in to leave out your own reviews; ")
                  + selection.QUEUE_ORDERS[order].lower() + (", spread over patients" if spread else ""))

scope = cohort.scope_text(split, {"n_patients": rows["patient_id"].nunique(), "n_patches": len(rows),
                                  "n_positive": int(rows["label"].sum())})
ui.scope_caption(f"{scope}, at threshold {threshold:.3f}: {len(items):,} patches, {order_text}")
if not len(items):
    st.success("Nothing to show here at this threshold.", icon=":material/check_circle:")
    st.stop()

page_col, cam_col, method_col = st.columns([3, 1, 2], vertical_alignment="bottom")
with page_col:
    number = st.pagination(selection.n_pages(len(items), PER_PAGE), key="gallery_page")
no_cam = run.cam_unavailable  # imported scores, or a user's model without a layer to explain
show_cam = cam_col.toggle("Grad-CAM", key="gallery_cam", disabled=bool(no_cam),
                          help=f"Unavailable: {no_cam}" if no_cam else "Compute class activation maps for this page")
show_cam = show_cam and not no_cam
method = method_col.selectbox("Method", list(METHODS), key="gallery_cam_method", disabled=not show_cam,
                              label_visibility="collapsed")
start, stop = selection.page_bounds(len(items), number, PER_PAGE)
shown = items.iloc[start:stop].join(run.table[["patient_id", "x", "y", "width", "height", "prob", "prob_patch"]])
st.caption(f"Showing {start + 1:,}-{stop:,} of {len(items):,}"
           + (f" · Grad-CAM unavailable: {no_cam}" if no_cam else ""))

patches = np.asarray(run.patches[shown.index.to_numpy()])
if show_cam:
    try:
        maps = loaders.cams(run, tuple(shown.index), method)
    except (store.ArtifactError, ValueError) as exc:  # e.g. model.keras moved away: the gallery still draws
        st.error(f"{method} is not available: {loaders.public_message(exc, run.path)}", icon=":material/error:")
    else:
        patches = slides.only_inside_patches(overlay_cam(patches, maps, 0.45), patches,
                                             shown["width"].to_numpy(), shown["height"].to_numpy())

for start in range(0, len(shown), COLUMNS):
    for col, (row, item), image in zip(st.columns(COLUMNS), shown.iloc[start:start + COLUMNS].iterrows(),
                                       patches[start:start + COLUMNS]):
        with col.container(border=True):
            st.image(slides.upscale_nearest(image, ZOOM), width="stretch")
            verdict = verdicts.get(row)
            # With context the patch alone is shown too: an error may come from the neighbours.
            st.markdown(f"{ui.outcome_badge(item['outcome'], spelled_out=False)}"
                        f" P(IDC) **{item['prob']:.3f}**"
                        + (f" (patch alone {item['prob_patch']:.3f})" if run.has_context else "")
                        + f"  \n{item['patient_id']} · x {item['x']}, y {item['y']}"
                        + (f"  \n{ui.VERDICT_BADGES[verdict]}" if verdict else ""))
            inspect_col, slide_col = st.columns(2)
            opened = {"patient": item["patient_id"], "patch": row}
            inspect_col.button("Inspect", icon=":material/zoom_in:", key=f"inspect_{row}", help="Open in the inspector",
                               on_click=state.go_to, args=("inspector",), kwargs=opened, width="stretch")
            slide_col.button("On slide", icon=":material/map:", key=f"on_slide_{row}", help="Show it on the slide",
                             on_click=state.go_to, args=("patient",), kwargs=opened, width="stretch")
