"""Small Streamlit pieces every page uses: banners, footer, the no-run help, pickers, outcome badges."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import numpy as np
import streamlit as st

from app import identity, loaders, selection, slides, state
from app.__main__ import ADDRESS_ENV
from pipeline.reviews import RunReviews
from pipeline import store

OUTCOME_BADGE_COLOURS = {"TP": "green", "TN": "blue", "FP": "orange", "FN": "violet", "unlabelled": "gray"}  # nearest to the slide's
OUTCOME_TEXT = {"TP": "true positive", "TN": "true negative", "FP": "false positive", "FN": "false negative",
                "unlabelled": "no label to compare the call with"}
VERDICT_BADGES = {"agree": ":blue-badge[agrees with label]", "label_wrong": ":orange-badge[label is wrong]",
                  "unsure": ":gray-badge[unsure]"}


def outcome_badge(outcome: str, spelled_out: bool = True) -> str:
    text = f"{outcome} · {OUTCOME_TEXT[outcome]}" if spelled_out else outcome
    return f":{OUTCOME_BADGE_COLOURS[outcome]}-badge[{text}]"


def synthetic_banner(run: store.Run) -> None:
    if run.synthetic:
        st.warning("**SYNTHETIC cohort**: generated images, not real patient tissue. Use it to learn and test "
                   "the tool; its numbers say nothing about IDC in real slides.", icon=":material/science:")


def provenance_caption(run: store.Run) -> None:
    """Where the run's scores came from (trained here, imported from a file, a user's model): on every page."""
    text = run.provenance
    counts = run.meta.get("stages", {}).get("import")
    if store.provenance(run.meta)["kind"] == "imported" and counts and counts.get("problems"):
        text += (f" {counts['rows_not_used']:,} of {counts['rows']:,} rows of the scores file were not used and "
                 f"{counts['patches_without_score']:,} patches had no score (left out of this run); each is listed "
                 f"with its reason in `{run.name}/{store.SCORE_IMPORT_REPORT}`.")
    # Small grey text like a caption, but not an st.caption: a page's own first caption stays its scope line.
    text = text.replace("[", "\\[").replace("]", "\\]")  # a file named with brackets cannot end the directive
    st.markdown(f":small[:gray[:material/output: {text}]]")


def network_warning() -> None:
    """Warn when the server listens beyond this machine without anyone having asked for it.

    ``python -m app`` binds to 127.0.0.1 unless $IDC_ADDRESS says otherwise; a plain ``streamlit run``
    started outside the repository root misses .streamlit/config.toml and listens on every interface.
    """
    address = st.get_option("server.address") or ""
    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:  # unset (every interface) or a host name
        loopback = False
    if not loopback and not os.environ.get(ADDRESS_ENV):
        st.warning(f"This server listens on {'every network interface' if not address else address}, so other "
                   "machines may reach it. Restart it with `make app` or `python -m app`, which bind to 127.0.0.1 "
                   f"(this machine only); to open it to a network on purpose, set `{ADDRESS_ENV}`, e.g. "
                   f"`{ADDRESS_ENV}=0.0.0.0 python -m app`.", icon=":material/lan:")


def footer() -> None:
    st.divider()
    st.caption("Research tool, not for clinical use: it does not diagnose and has not been validated for "
               "patient care. Every figure names the split and the number of patients and patches behind it.")


def no_runs(runs_dir: Path) -> None:
    st.title("No run to review yet")
    st.error(f"No run folder found under `{runs_dir.resolve()}`.", icon=":material/folder_off:")
    st.markdown("Create one: the default is a synthetic cohort and a small CNN (a few minutes on a laptop).")
    st.code("make run", language="bash")
    st.markdown("or step by step:")
    st.code(f"python -m pipeline synth --out data/synthetic --patients 24\n"
            f"python -m pipeline run --data data/synthetic --out {runs_dir}/synthetic", language="bash")
    st.markdown(f"For the real dataset, point `--data` at `IDC_regular_ps50_idx5/`. Then reload this page. "
                f"To open run folders elsewhere, start the app with `{loaders.RUNS_ENV}=/path/to/runs`.")


def broken_run(name: str, message: str) -> None:
    """What a picked run that cannot be loaded shows instead of its pages: the file and the fix."""
    st.title(f"Run {name} cannot be opened")
    st.error(message, icon=":material/error:")
    st.info("Pick another run in the sidebar: the other runs are not affected, and nothing in this run "
            "folder was changed.", icon=":material/info:")


def reviews_problem(reviews: RunReviews) -> None:
    """Say, once per page, why reviews are not shown (a broken reviews file), naming the file and the fix."""
    if reviews.problem:
        st.error(reviews.problem, icon=":material/rate_review:")


def reviews_or_stop(run: store.Run) -> RunReviews:
    """The run's reviews, for a page that shows nothing without them: a broken reviews file is said
    (reviews_problem) and the page stops there."""
    reviews = loaders.run_reviews(run)
    reviews_problem(reviews)
    if reviews.problem:
        state.stop()
    return reviews


def patient_picker(run: store.Run, reviews: RunReviews | None = None) -> str:
    """Previous / patient selectbox / next; returns the current patient.

    Draws the patient state.resolve_view chose (the first test patient by default); changes only in callbacks.
    ``reviews``: the page's loaders.run_reviews, so the store is not read again for the progress labels.
    """
    ss = st.session_state
    patients = loaders.patients(run)
    progress = loaders.progress(run, reviews)
    texts = loaders.progress_texts(run, reviews).to_dict()  # selection.progress_text of each patient, cached
    ids = patients["patient_id"].tolist()
    label = {r.patient_id: f"{r.patient_id} · {r.split} · {r.patches:,} patches · "
                           f"{texts[str(r.patient_id)]}"
             for r in patients.itertuples()}
    if st.toggle("Only unreviewed patients", key="only_unreviewed",
                 help="List only the patients whose slide is not marked done (the open one stays listed)"):
        ids = selection.unreviewed(ids, progress, keep=ss.patient)
    i = ids.index(ss.patient)
    prev_col, pick_col, next_col = st.columns([1, 6, 1], vertical_alignment="bottom")
    prev_col.button("Previous", icon=":material/arrow_back:", disabled=i == 0, key="prev_patient",
                    on_click=state.set_patient, args=(ids[max(i - 1, 0)],), width="stretch")
    with pick_col:
        state.bound(st.selectbox, "Patient", "patient", options=ids, format_func=label.get,
                    on_change=lambda: ss.update(patch=None))
    next_col.button("Next", icon=":material/arrow_forward:", disabled=i == len(ids) - 1, key="next_patient",
                    on_click=state.set_patient, args=(ids[min(i + 1, len(ids) - 1)],), width="stretch")
    return ss.patient


def patch_picker(rows, outcome, label: str) -> None:
    """Fallback to clicking: choose one of the patient's patches, listed top to bottom, left to right."""
    order = rows.sort_values(["y", "x"]).index.tolist()
    names = {row: f"x {x}, y {y} · P(IDC) {p:.3f} · {o}"
             for row, x, y, p, o in zip(rows.index, rows["x"], rows["y"], rows["prob"], outcome)}
    state.bound(st.selectbox, label, "patch", options=order, format_func=names.get, placeholder="Choose a patch...")


def scope_caption(text: str) -> None:
    st.caption(f":material/straighten: Measured on {text}.")


def _set_slide_status(run: store.Run, patient_id: str, status: str) -> None:
    reviewer = identity.current()
    if not reviewer:
        st.session_state.slide_status_message = ("error", "Sign in in the sidebar first.")
        return
    try:
        loaders.review_store(str(run.path)).set_slide_status(patient_id, status, reviewer)
    except Exception as exc:  # sqlite3.Error, a newer schema, a rejected value: said, never raised
        st.session_state.slide_status_message = ("error", f"Slide status not saved: {loaders.public_message(exc, run.path)}")


def slide_done_control(run: store.Run, patient_id: str) -> None:
    """'Mark slide done' (or 'Reopen') for the open patient, with who marked it and when."""
    progress = loaders.progress(run).loc[str(patient_id)]
    done = progress["progress"] == selection.PROGRESS[2]
    text_col, button_col = st.columns([5, 2], vertical_alignment="center")
    when = f" ({when})" if (when := selection.progress_when(progress)) else ""  # done, or the latest review
    text_col.markdown(f":material/fact_check: Slide review: **{selection.progress_text(progress)}**{when}")
    signed_in = bool(identity.current())
    button_col.button("Reopen slide" if done else "Mark slide done", key="slide_done",
                      icon=":material/undo:" if done else ":material/task_alt:", width="stretch",
                      on_click=_set_slide_status, args=(run, str(patient_id), "reopened" if done else "done"),
                      disabled=not signed_in, help=None if signed_in else "Sign in in the sidebar first")
    if "slide_status_message" in st.session_state:
        st.error(st.session_state.pop("slide_status_message")[1])


def add_scale_bar(figure, shape: tuple[int, int], mpp: float, n_panels: int = 1) -> None:
    """A µm scale bar at the bottom left of each slide panel of ``figure`` (app.charts.slide_figure), in
    slide pixel coordinates, so it keeps its true length at every zoom (slides.scale_bar: a round
    length near 1/5 to 1/8 of the slide's width, from the run's microns per pixel)."""
    h, w = shape
    if not (h and w and mpp):
        return
    bar = slides.scale_bar(w, h, mpp)
    for i in range(1, n_panels + 1):
        xref, yref = ("x", "y") if i == 1 else (f"x{i}", f"y{i}")
        # White under black, so the bar shows on glass and on dark tissue alike.
        for colour, width in (("white", 7), ("black", 4)):
            figure.add_shape(type="line", xref=xref, yref=yref, x0=bar["x0"], x1=bar["x1"], y0=bar["y"], y1=bar["y"],
                             line=dict(color=colour, width=width), layer="above", name="scale bar")
        figure.add_annotation(xref=xref, yref=yref, x=(bar["x0"] + bar["x1"]) / 2, y=bar["y"], yanchor="bottom",
                              yshift=4, text=f"<b>{bar['text']}</b>", showarrow=False, name="scale bar",
                              font=dict(color="black", size=12), bgcolor="rgba(255,255,255,0.7)")


def fit_overlays_to_slide(figure, shape: tuple[int, int]) -> None:
    """Give each patch-resolution overlay of ``figure`` (app.charts.slide_figure's heatmaps, one cell per
    50-px patch) explicit cell edges, the last row and column ending at the slide's edge: an edge
    patch's overlay is then its true size (smaller than 50 px), not a full cell hanging off the slide."""
    h, w = shape
    for trace in figure.data:
        if trace.type == "heatmap" and trace.dx == slides.PATCH and trace.z is not None:
            rows, cols = np.shape(trace.z)
            trace.update(x=slides.cell_edges(cols, w), y=slides.cell_edges(rows, h), x0=None, dx=None, y0=None, dy=None)
