"""The patch inspector: one patch enlarged, its neighbours, its numbers, Grad-CAM and the review form.

Drawn on the Patch inspector page and under the slide on the Patient viewer.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable

import numpy as np
import streamlit as st

from app import identity, loaders, overlays, selection, slides, state, ui
from app.cam_overlay import CAM_TARGETS, overlay_cam, own_call_target, target_text
from pipeline.reviews import VERDICTS, NewerSchemaError, problem_text, run_identity
from model.explain import METHODS
from pipeline import store

ZOOM = 6  # 50 px -> 300 px on screen, nearest neighbour so scanned pixels stay visible
NEIGHBOUR_ZOOM = 2  # 3 x 3 patches (150 px) -> 300 px
OUTLINE_RGB = overlays.hex_to_rgb(overlays.REGION_OUTLINE_COLOUR)
HIGHLIGHT_RGB = overlays.hex_to_rgb(overlays.OKABE_ITO["blue"])
FRAME_RGB = (190, 190, 190)


def _with_region(image: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """Draw the true IDC region's border (synthetic runs) on a patch enlarged ZOOM times.

    ``region`` is the mask under the patch with a 1-px margin, so the border is traced where the
    region ends, not along the patch's own edges.
    """
    if region is None:
        return image
    border = slides.outline(slides.upscale_nearest(region, ZOOM), thickness=2)[ZOOM:-ZOOM, ZOOM:-ZOOM]
    return slides.paint(image, border, OUTLINE_RGB)


def _framed(image: np.ndarray) -> np.ndarray:
    """A 1-px grey frame, so white padding and missing neighbours do not melt into the page."""
    return slides.paint(image, slides.square_outline(image.shape[0], 0, 0, image.shape[0], 1), FRAME_RGB)


def _probability_text(run: store.Run, patch_row) -> str:
    """The final P(IDC) and what it is made of: the patch alone (what Grad-CAM explains), the raw output."""
    if store.provenance(run.meta)["kind"] == "imported":
        return f"**P(IDC):** {float(patch_row['prob']):.3f} (as imported, used as given: not calibrated here)"
    raw = f"{float(patch_row['prob_uncalibrated']):.3f} model output before calibration"
    if run.has_context:
        return (f"**P(IDC):** {float(patch_row['prob']):.3f} (with neighbourhood context; the patch alone "
                f"{float(patch_row['prob_patch']):.3f}, {raw})")
    return f"**P(IDC):** {float(patch_row['prob']):.3f} (calibrated; {raw})"


def render(run: store.Run, row: int, threshold: float) -> None:
    patch_row = run.table.iloc[row]
    pid, x, y = str(patch_row["patient_id"]), int(patch_row["x"]), int(patch_row["y"])
    label, prob = int(patch_row["label"]), float(patch_row["prob"])
    outcome = selection.outcome_names([label], [prob], threshold)[0]
    slide = loaders.slide(run, pid)
    patch = np.asarray(run.patches[row])

    st.subheader(f"Patch x {x}, y {y} · patient {pid}")
    true_label = ("none (unlabelled slide)" if not store.labelled([label])[0] else "IDC" if label == 1 else "non-IDC")
    facts = [f"**True label:** {true_label}",
             _probability_text(run, patch_row),
             f"**At threshold {threshold:.3f}:** {ui.outcome_badge(outcome)}",
             f"**Split:** {patch_row['split']} · **row** {row}"]
    width, height = int(patch_row["width"]), int(patch_row["height"])
    if (width, height) != (slides.PATCH, slides.PATCH):
        facts.append(f"**Edge patch:** {width} x {height} px of tissue, the rest is padding")
    st.markdown("  \n".join(facts))
    _keys_for_open_patch(run, row, pid, threshold)

    region = slides.region_under_patch(slide.region_mask, x, y, margin=1)
    show_region = region is not None and st.toggle("Outline the true IDC region (synthetic ground truth)",
                                                   value=True, key="patch_region_outline")
    context = slides.upscale_nearest(slides.neighbourhood(slide.rgb, x, y), NEIGHBOUR_ZOOM)
    side, size = context.shape[0], slides.PATCH * NEIGHBOUR_ZOOM
    context = slides.paint(_framed(context), slides.square_outline(side, size, size, size, 3), HIGHLIGHT_RGB)
    _images(run, row, patch, (width, height), region if show_region else None, context, outcome,
            prob >= threshold)
    _review_form(run, row, pid, x, y, threshold)


@state.fragment
def _images(run: store.Run, row: int, patch: np.ndarray, size: tuple[int, int], region: np.ndarray | None,
            context: np.ndarray, outcome: str, predicted_idc: bool | None = None) -> None:
    """Patch, CAM and neighbours side by side; the CAM method, target and opacity rerun only this fragment."""
    method_col, target_col, alpha_col = st.columns([3, 3, 2])
    method = method_col.segmented_control(
        "Explanation", list(METHODS), default="Grad-CAM", required=True, key="cam_method",
        help="\n\n".join(f"**{k}**: {m.help}" for k, m in METHODS.items()))
    own = own_call_target(outcome, predicted_idc)
    # One widget per default, so the default follows the model's call and a choice sticks for
    # patches of the same call (moving from one false negative to the next keeps it).
    target = target_col.segmented_control(
        "Show", list(CAM_TARGETS), default=own, required=True, key=f"cam_target_{own}",
        format_func=lambda t: CAM_TARGETS[t] + (" · model's call" if t == own else ""),
        help="Evidence for IDC: what raises the IDC score. Evidence against IDC: what lowers it. For a false "
             "negative the evidence for IDC is mostly empty by construction, so the model's own call is shown first.")
    alpha = alpha_col.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="cam_opacity")
    width, height = size
    patch_col, cam_col, context_col = st.columns(3)
    mpp = run.mpp
    shown, bar = slides.draw_scale_bar(_framed(_with_region(slides.upscale_nearest(patch, ZOOM), region)), mpp / ZOOM)
    patch_col.image(shown, caption=f"Patch, {ZOOM}x, pixels as scanned · bar {bar}", width="content")
    context, context_bar = slides.draw_scale_bar(context, mpp / NEIGHBOUR_ZOOM)
    # Image captions stay short: a caption wider than its image stretches the image, blurring the pixels.
    context_col.image(context, caption=f"8 neighbours · bar {context_bar}", width="content")
    context_col.caption("White: no tissue patch there.")
    _full_resolution(run, row)
    if run.cam_unavailable:  # said as a fact of the run, not as a failure
        cam_col.info(f"{method} unavailable: {run.cam_unavailable}.", icon=":material/info:")
        return
    try:
        cam = loaders.cams(run, (row,), method, target)[0]
    except (store.ArtifactError, ValueError) as exc:
        cam_col.error(f"{method} is not available: {exc}")
        return
    blended = slides.only_inside_patches(overlay_cam(patch, cam, alpha)[None], patch[None], width, height)[0]
    cam_col.image(_framed(_with_region(slides.upscale_nearest(blended, ZOOM), region)),
                  caption=f"{method}: {CAM_TARGETS[target].replace('Evidence', 'evidence')}", width="content")
    cam_col.caption(f"Shows the {target_text(target, outcome, predicted_idc)}, in this patch alone; red = most.")


FULL_RESOLUTION_WIDTH = 400  # screen pixels of the full-resolution view (a 0.25 um/px patch is 800 px)


def _full_resolution(run: store.Run, row: int) -> None:
    """A slide run's patch at the scanner's full resolution, read live from the WSI: the cells a pathologist
    judges IDC by, which the 4 um/px patch the model sees cannot show."""
    slides_meta = run.meta.get("slides") or {}
    patch_row = run.table.iloc[row]
    pid = str(patch_row["patient_id"])
    if pid not in slides_meta:
        return
    with st.expander("At the slide's full resolution", expanded=True):
        found = loaders.full_resolution_patch(run, pid, int(patch_row["x"]), int(patch_row["y"]))
        if isinstance(found, str):
            st.warning(f"The full-resolution view is unavailable: {found}", icon=":material/warning:")
            return
        slide_mpp = float(slides_meta[pid].get("slide_mpp") or run.mpp)
        shown, bar = slides.draw_scale_bar(found, slide_mpp)
        st.image(shown, width=min(FULL_RESOLUTION_WIDTH, shown.shape[1]),
                 caption=f"Level 0 of {slides_meta[pid].get('file', 'the slide')}, {slide_mpp:g} µm/px · bar {bar}")


def save_review(run: store.Run, row: int, verdict: str, note: str, threshold: float) -> tuple[str, str]:
    """Save one review of patch ``row``: the one save path of the form and of the review keys.

    Records the signed-in reviewer, the run and its model, the threshold and the P(IDC) shown.
    Returns ("success" | "error", message); never raises for a broken store or a refused value.
    """
    reviewer = identity.current()
    if not reviewer:
        return "error", "Review not saved: sign in in the sidebar first; every review carries a name."
    patch_row = run.table.iloc[row]
    pid, x, y = str(patch_row["patient_id"]), int(patch_row["x"]), int(patch_row["y"])
    try:
        loaders.review_store(str(run.path)).add(
            row=row, patient_id=pid, x=x, y=y, verdict=verdict, note=note, reviewer=reviewer,
            run_name=run.name, model=run_identity(run.path, run.meta)[1], threshold=float(threshold),
            prob_shown=float(patch_row["prob"]), source="app")
    except ValueError as exc:
        return "error", f"Review not saved: {exc}"
    except (sqlite3.Error, NewerSchemaError) as exc:  # e.g. the file broke or the disk is full
        # Nothing was written (one transaction per review).
        return "error", ("Review not saved, nothing was written. "
                         + problem_text(loaders.review_file(run), exc, loaders.public_message(exc, run.path)))
    return "success", f"Review saved: {VERDICTS[verdict]} (patch x {x}, y {y}, by {reviewer})."


def _save_review(run: store.Run, row: int, threshold: float) -> None:
    ss = st.session_state
    kind, text = save_review(run, row, ss.review_verdict, ss.review_note, threshold)
    if kind == "success":
        ss.review_note = ""  # the verdict stays: reviewers often give the same one many times
    elif identity.current():  # the note stays in the form to retry
        text += " Your note is still in the form."
    ss.review_message = (kind, text)


# --------------------------------------------------------------------------- review by keys
# One patch is the target of the keys on a page (the open patch here, the current card in the
# gallery): Streamlit binds a shortcut per button, so every page draws these buttons once.
NEXT_KEY, PREVIOUS_KEY = "J", "K"
VERDICT_KEYS = {"agree": "A", "label_wrong": "W", "unsure": "U"}
assert set(VERDICT_KEYS) == set(VERDICTS), "every verdict needs its key (pipeline.reviews.VERDICTS)"
VERDICT_ICONS = {"agree": ":material/check:", "label_wrong": ":material/flag:", "unsure": ":material/help:"}
KEYS_HELP = (f"Keys: {NEXT_KEY} next patch, {PREVIOUS_KEY} previous, "
             + ", ".join(f"{k} {VERDICTS[v].lower()}" for v, k in VERDICT_KEYS.items())
             + "; a verdict saved by key moves to the next patch.")


def _verdict_by_key(run: store.Run, row: int, verdict: str, threshold: float, following: int | None,
                    move: Callable[[int], None]) -> None:
    kind, text = save_review(run, row, verdict, "", threshold)
    st.session_state.key_review_message = (kind, text)
    if kind == "success" and following is not None:
        move(following)


def review_keys(run: store.Run, row: int, threshold: float, previous: int | None, following: int | None,
                move: Callable[[int], None], key: str) -> None:
    """Previous (K) / next (J) and the three verdicts (A / W / U) for patch ``row``, saved at once
    with no note (the form below takes a note). ``move(row)`` makes another patch the current one;
    ``key`` prefixes the buttons' keys (one set per page)."""
    reviews = loaders.run_reviews(run)
    signed_in = bool(identity.current())
    why_off = ("Off until the reviews file is fixed (see the top of the page)" if reviews.problem
               else None if signed_in else "Off until you sign in (sidebar)")
    cols = st.columns([3, 2.5, 3.5, 3.5, 2.5])
    cols[0].button("Previous", icon=":material/arrow_upward:", key=f"{key}_previous", shortcut=PREVIOUS_KEY,
                   disabled=previous is None, on_click=move, args=(previous,), width="stretch",
                   help=f"Previous patch (key {PREVIOUS_KEY})")
    cols[1].button("Next", icon=":material/arrow_downward:", key=f"{key}_next", shortcut=NEXT_KEY,
                   disabled=following is None, on_click=move, args=(following,), width="stretch",
                   help=f"Next patch (key {NEXT_KEY})")
    for col, (verdict, shortcut) in zip(cols[2:], VERDICT_KEYS.items()):
        col.button(VERDICTS[verdict], icon=VERDICT_ICONS[verdict], key=f"{key}_{verdict}", shortcut=shortcut,
                   disabled=bool(reviews.problem) or not signed_in, width="stretch",
                   on_click=_verdict_by_key, args=(run, row, verdict, threshold, following, move),
                   help=why_off or f"Save '{VERDICTS[verdict]}' for this patch and move to the next (key {shortcut})")
    st.caption(f":material/keyboard: {KEYS_HELP}")
    if "key_review_message" in st.session_state:
        kind, text = st.session_state.pop("key_review_message")
        (st.success if kind == "success" else st.error)(text)


def _keys_for_open_patch(run: store.Run, row: int, pid: str, threshold: float) -> None:
    """The review keys on the open patch, stepping through the patient's errors (or all its patches)."""
    rows = loaders.slide(run, pid).rows
    order_col, note_col = st.columns([3, 4], vertical_alignment="bottom")
    order = order_col.segmented_control("J / K step through", list(selection.STEP_ORDERS), default="errors",
                                        required=True, format_func=selection.STEP_ORDERS.get, key="step_order",
                                        help="Which of this patient's patches the Next and Previous keys visit")
    steps = selection.step_order(rows, threshold, order)
    if not steps:  # a patient without errors at this threshold: step through all of its patches
        steps = selection.step_order(rows, threshold, "all")
        note_col.caption(f"No errors at threshold {threshold:.3f}: stepping through all patches.")
    elif row in steps:
        note_col.caption(f"Patch {steps.index(row) + 1:,} of {len(steps):,}")
    previous, following = selection.neighbours(steps, row)
    review_keys(run, row, threshold, previous, following, move=lambda r: state.open_patch(pid, r), key="patch_keys")


def first_patch_key(run: store.Run, pid: str, threshold: float) -> None:
    """With no patch open on the slide: J opens the patient's first error at the threshold (its first
    patch in reading order when it has none), so reviewing by keys starts without a click."""
    rows = loaders.slide(run, pid).rows
    steps = selection.step_order(rows, threshold, "errors")
    what = "first error" if steps else "first patch"
    steps = steps or selection.step_order(rows, threshold, "all")
    if not steps:
        return
    st.button(f"Open the {what}", icon=":material/arrow_downward:", key="patch_keys_start", shortcut=NEXT_KEY,
              on_click=state.open_patch, args=(pid, steps[0]),
              help=f"Open this patient's {what} at threshold {threshold:.3f} (key {NEXT_KEY}); then {KEYS_HELP}")


def _review_form(run: store.Run, row: int, pid: str, x: int, y: int, threshold: float) -> None:
    ss = st.session_state
    reviews = loaders.run_reviews(run)
    reviewer = identity.current()
    with st.form("review_form"):
        st.markdown("**Review this patch**")
        st.radio("Verdict", list(VERDICTS), format_func=VERDICTS.get, horizontal=True, key="review_verdict")
        st.text_area("Note", key="review_note", placeholder="What you see, e.g. 'DCIS, not invasive'")
        if reviewer:
            st.caption(f":material/person: Reviewing as **{reviewer}** (switch in the sidebar)")
        else:
            st.warning("Sign in in the sidebar to save reviews: every review carries the reviewer's name.",
                       icon=":material/person_off:")
        # With a broken reviews file the form stays, so a note typed before it broke is not lost,
        # but saving is off; the page says why once, at its top (ui.reviews_problem).
        why_off = ("Off until the reviews file is fixed (see the top of the page)" if reviews.problem
                   else None if reviewer else "Off until you sign in (sidebar)")
        st.form_submit_button("Save review", type="primary", icon=":material/rate_review:", key="save_review",
                              on_click=_save_review, args=(run, row, threshold),
                              disabled=bool(reviews.problem) or not reviewer, help=why_off)
    if "review_message" in ss:
        kind, text = ss.pop("review_message")
        (st.success if kind == "success" else st.error)(text)
    history = reviews.of_row(row)  # matched by the patch's identity, so a re-ingest cannot mix them up
    if len(history):
        st.markdown("**Reviews of this patch** (newest last)")
        columns = ["created_at", "reviewer", "verdict", "note", *(["run_name"] if "run_name" in history else [])]
        st.dataframe(history[columns], hide_index=True, width="stretch",
                     column_config={"created_at": "When (UTC)", "reviewer": "Reviewer", "verdict": "Verdict",
                                    "note": "Note", "run_name": "Given in run"})
