"""Errors gallery and review queue: the patches a reviewer should look at first, paged."""
import numpy as np
import streamlit as st

from app import cohort, identity, loaders, patch_panel, selection, slides, state, ui
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
every_row = data.every_row  # unlabelled patches too: they have no errors, but the review queue includes them
patient_ids = sorted(every_row["patient_id"].unique())
progress = loaders.progress(run, reviews)
if st.toggle("Only unreviewed patients", key="gallery_only_unreviewed",
             help="Only the patients whose slide is not marked done, in the patient list and in 'all patients'"):
    patient_ids = selection.unreviewed(patient_ids, progress)
    data_rows = every_row[every_row["patient_id"].isin(patient_ids)]
else:
    data_rows = every_row
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
                                  "n_positive": int((rows["label"] == 1).sum())})
ui.scope_caption(f"{scope}, at threshold {threshold:.3f}: {len(items):,} patches, {order_text}")
n_unlabelled = int((~store.labelled(rows["label"].to_numpy())).sum())
if n_unlabelled:
    st.caption(f":material/label_off: {n_unlabelled:,} of the {len(rows):,} patches are unlabelled (slides ingested "
               "without annotations): " + ("they have no errors to show; switch to the review queue to review them "
                                           "by uncertainty." if mode == ERRORS or order == "confident_errors"
                                           else "they are in the queue, ordered by uncertainty like the others."))
if not len(items):
    st.success("Nothing to show here at this threshold.", icon=":material/check_circle:")
    state.stop()


def _page_turned() -> None:
    ss.gallery_current = None  # the first card of the page the reviewer turned to becomes current


def _make_current(row: int) -> None:
    ss.gallery_current = int(row)


# One card is current: the target of the review keys (st.button binds one shortcut per button, so a
# gallery of cards each with its own verdict buttons could not share J/K/A/W/U). The page follows it;
# a new list (another mode, patient, error kinds, order or split) starts at its first patch
# (state.fit_gallery, the one place besides the callbacks that settles the current card and page).
listing = (mode, str(patient), split, bool(ss.get("gallery_only_unreviewed")),
           tuple(sorted(kinds)) if mode == ERRORS else (order, spread))
position = state.fit_gallery(listing, items.index, PER_PAGE)
current = int(items.index[position])
previous = int(items.index[position - 1]) if position > 0 else None
following = int(items.index[position + 1]) if position + 1 < len(items) else None

page_col, cam_col, method_col = st.columns([3, 1, 2], vertical_alignment="bottom")
with page_col:
    number = st.pagination(selection.n_pages(len(items), PER_PAGE), key="gallery_page", on_change=_page_turned)
no_cam = run.cam_unavailable  # imported scores, or a user's model without a layer to explain
show_cam = cam_col.toggle("Grad-CAM", key="gallery_cam", disabled=bool(no_cam),
                          help=f"Unavailable: {no_cam}" if no_cam else "Compute class activation maps for this page")
show_cam = show_cam and not no_cam
method = method_col.selectbox("Method", list(METHODS), key="gallery_cam_method", disabled=not show_cam,
                              label_visibility="collapsed")
start, stop = selection.page_bounds(len(items), number, PER_PAGE)
shown = items.iloc[start:stop].join(run.table[["patient_id", "x", "y", "width", "height", "prob", "prob_patch"]])
st.caption(f"Showing {start + 1:,}-{stop:,} of {len(items):,}"
           + (f" · Grad-CAM unavailable: {no_cam}" if no_cam else "")
           + " · Grad-CAM shows the evidence for IDC")

patches = np.asarray(run.patches[shown.index.to_numpy()])
if show_cam:
    try:
        maps = loaders.cams(run, tuple(shown.index), method)
    except (store.ArtifactError, ValueError) as exc:  # e.g. model.keras moved away: the gallery still draws
        st.error(f"{method} is not available: {loaders.public_message(exc, run.path)}", icon=":material/error:")
    else:
        patches = slides.only_inside_patches(overlay_cam(patches, maps, 0.45), patches,
                                             shown["width"].to_numpy(), shown["height"].to_numpy())


def _card_text(row: int, item) -> str:
    verdict = verdicts.get(row)
    # With context the patch alone is shown too: an error may come from the neighbours.
    return (f"{ui.outcome_badge(item['outcome'], spelled_out=False)}"
            f" P(IDC) **{item['prob']:.3f}**"
            + (f" (patch alone {item['prob_patch']:.3f})" if run.has_context else "")
            + f"  \n{item['patient_id']} · x {item['x']}, y {item['y']}"
            + (f"  \n{ui.VERDICT_BADGES[verdict]}" if verdict else ""))


# The current patch, large, with the review keys.
with st.container(border=True, key="gallery_current_card"):
    item = shown.loc[current]
    image_col, text_col = st.columns([1, 3])
    image_col.image(slides.upscale_nearest(patches[shown.index.get_loc(current)], ZOOM), width="stretch")
    with text_col:
        st.markdown(f"**Current patch ({position + 1:,} of {len(items):,})** · " + _card_text(current, item))
        patch_panel.review_keys(run, current, threshold, previous, following, move=_make_current,
                                key="gallery_keys")
        opened = {"patient": item["patient_id"], "patch": current}
        inspect_col, slide_col, _ = st.columns([1, 1, 2])
        inspect_col.button("Inspect", icon=":material/zoom_in:", key="inspect_current", width="stretch",
                           help="Open in the inspector (Grad-CAM, neighbours, a note)",
                           on_click=state.go_to, args=("inspector",), kwargs=opened)
        slide_col.button("On slide", icon=":material/map:", key="on_slide_current", width="stretch",
                         help="Show it on the slide", on_click=state.go_to, args=("patient",), kwargs=opened)

for start in range(0, len(shown), COLUMNS):
    for col, (row, item), image in zip(st.columns(COLUMNS), shown.iloc[start:start + COLUMNS].iterrows(),
                                       patches[start:start + COLUMNS]):
        with col.container(border=True):
            st.image(slides.upscale_nearest(image, ZOOM), width="stretch")
            st.markdown(_card_text(row, item))
            if row == current:
                st.markdown(":blue-badge[:material/keyboard: current · the keys act here]")
            else:
                st.button("Make current", icon=":material/keyboard:", key=f"current_{row}", type="tertiary",
                          help="Review this patch with the keys", on_click=_make_current, args=(row,))
            inspect_col, slide_col = st.columns(2)
            opened = {"patient": item["patient_id"], "patch": row}
            inspect_col.button("Inspect", icon=":material/zoom_in:", key=f"inspect_{row}", help="Open in the inspector",
                               on_click=state.go_to, args=("inspector",), kwargs=opened, width="stretch")
            slide_col.button("On slide", icon=":material/map:", key=f"on_slide_{row}", help="Show it on the slide",
                             on_click=state.go_to, args=("patient",), kwargs=opened, width="stretch")
