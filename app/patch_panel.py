"""The patch inspector: one patch enlarged, its neighbours, its numbers, Grad-CAM and the review form.

Drawn on the Patch inspector page and under the slide on the Patient viewer.
"""
from __future__ import annotations

import sqlite3

import numpy as np
import streamlit as st

from app import identity, loaders, overlays, selection, slides, state, ui
from app.cam_overlay import overlay_cam
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
    facts = [f"**True label:** {'IDC' if label else 'non-IDC'}",
             _probability_text(run, patch_row),
             f"**At threshold {threshold:.3f}:** {ui.outcome_badge(outcome)}",
             f"**Split:** {patch_row['split']} · **row** {row}"]
    width, height = int(patch_row["width"]), int(patch_row["height"])
    if (width, height) != (slides.PATCH, slides.PATCH):
        facts.append(f"**Edge patch:** {width} x {height} px of tissue, the rest is padding")
    st.markdown("  \n".join(facts))

    region = slides.region_under_patch(slide.region_mask, x, y, margin=1)
    show_region = region is not None and st.toggle("Outline the true IDC region (synthetic ground truth)",
                                                   value=True, key="patch_region_outline")
    context = slides.upscale_nearest(slides.neighbourhood(slide.rgb, x, y), NEIGHBOUR_ZOOM)
    side, size = context.shape[0], slides.PATCH * NEIGHBOUR_ZOOM
    context = slides.paint(_framed(context), slides.square_outline(side, size, size, size, 3), HIGHLIGHT_RGB)
    _images(run, row, patch, (width, height), region if show_region else None, context)
    _review_form(run, row, pid, x, y, threshold)


@state.fragment
def _images(run: store.Run, row: int, patch: np.ndarray, size: tuple[int, int], region: np.ndarray | None,
            context: np.ndarray) -> None:
    """Patch, CAM and neighbours side by side; the CAM method and opacity rerun only this fragment."""
    method_col, alpha_col = st.columns(2)
    method = method_col.segmented_control(
        "Explanation", list(METHODS), default="Grad-CAM", required=True, key="cam_method",
        help="\n\n".join(f"**{k}**: {m.help}" for k, m in METHODS.items()))
    alpha = alpha_col.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="cam_opacity")
    width, height = size
    patch_col, cam_col, context_col = st.columns(3)
    patch_col.image(_framed(_with_region(slides.upscale_nearest(patch, ZOOM), region)),
                    caption=f"Patch, {ZOOM}x, pixels as scanned", width="content")
    context_col.image(context, caption="With its 8 neighbours (white: no tissue patch)", width="content")
    if run.cam_unavailable:  # said as a fact of the run, not as a failure
        cam_col.info(f"{method} unavailable: {run.cam_unavailable}.", icon=":material/info:")
        return
    try:
        cam = loaders.cams(run, (row,), method)[0]
    except (store.ArtifactError, ValueError) as exc:
        cam_col.error(f"{method} is not available: {exc}")
        return
    blended = slides.only_inside_patches(overlay_cam(patch, cam, alpha)[None], patch[None], width, height)[0]
    cam_col.image(_framed(_with_region(slides.upscale_nearest(blended, ZOOM), region)),
                  caption=f"{method}: evidence for IDC in this patch alone (red = most)", width="content")


def _save_review(run: store.Run, row: int, pid: str, x: int, y: int, threshold: float, prob: float) -> None:
    ss = st.session_state
    reviewer = identity.current()
    if not reviewer:
        ss.review_message = ("error", "Review not saved: sign in in the sidebar first; every review carries a name.")
        return
    try:
        loaders.review_store(str(run.path)).add(
            row=row, patient_id=pid, x=x, y=y, verdict=ss.review_verdict, note=ss.review_note, reviewer=reviewer,
            run_name=run.name, model=run_identity(run.path, run.meta)[1], threshold=float(threshold),
            prob_shown=float(prob), source="app")
    except ValueError as exc:
        ss.review_message = ("error", f"Review not saved: {exc}")
        return
    except (sqlite3.Error, NewerSchemaError) as exc:  # e.g. the file broke or the disk is full
        # Nothing was written (one transaction per review); the note stays in the form to retry.
        ss.review_message = ("error", "Review not saved, nothing was written; your note is still in the form. "
                             + problem_text(loaders.review_file(run), exc, loaders.public_message(exc, run.path)))
        return
    ss.review_note = ""  # the verdict stays: reviewers often give the same one many times
    ss.review_message = ("success", f"Review saved: {VERDICTS[ss.review_verdict]} (patch x {x}, y {y}, by {reviewer}).")


def _review_form(run: store.Run, row: int, pid: str, x: int, y: int, threshold: float) -> None:
    ss = st.session_state
    reviews = loaders.run_reviews(run)
    reviewer = identity.current()
    prob = float(run.table["prob"].iat[row])
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
                              on_click=_save_review, args=(run, row, pid, x, y, threshold, prob),
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
