"""Shared state of the dashboard: the chosen run, split, threshold, patient and patch.

Each lives under one plain key of ``st.session_state`` (never a widget key, because Streamlit drops
a widget's state when a page that does not draw it runs). Widgets are bound to these keys with
:func:`bound`: the widget is set from the value before it is drawn and writes back in its
``on_change`` callback. All changes happen in callbacks, which run before the script, so every
page draws with the new value at once, and the URL (``st.query_params``) is rewritten from the
state on every run: a bookmarked view restores run, split, threshold, patient and patch.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from app import loaders
from pipeline import store
from pipeline.metrics import check_threshold

SPLITS = ("test", "val", "train", "all")
SPLIT_LABELS = {"test": "test", "val": "validation", "train": "train", "all": "all splits"}
DEFAULTS = {"run": None, "split": "test", "threshold": 0.5, "patient": None, "patch": None, "reviewer": ""}
URL_KEYS = ("run", "split", "threshold", "patient", "patch")

PAGES = {  # page scripts, relative to app/main.py (app/views, not app/pages: see main.py)
    "overview": "views/overview.py",
    "patient": "views/patient.py",
    "inspector": "views/inspector.py",
    "errors": "views/errors.py",
    "reviews": "views/review_log.py",
}


# --------------------------------------------------------------------------- set-up and URL
def init(run_names: list[str]) -> None:
    """Fill in defaults and, on a session's first run, restore the view from the URL."""
    ss = st.session_state
    if "initialised" in ss:
        return
    ss.initialised = True
    for key, value in DEFAULTS.items():
        ss.setdefault(key, value)
    ss.url_problems = _restore_from_url(run_names)


def _restore_from_url(run_names: list[str]) -> list[str]:
    """Copy valid URL parameters into the state; return a message for each one rejected."""
    ss, q, problems = st.session_state, st.query_params, []
    if "run" in q:
        if q["run"] in run_names:
            ss.run = q["run"]
        else:
            problems.append(f"run {q['run']!r} from the link was not found; showing the newest run that opens.")
    if "split" in q:
        if q["split"] in SPLITS:
            ss.split = q["split"]
        else:
            problems.append(f"split {q['split']!r} from the link is not one of {', '.join(SPLITS)}.")
    if "threshold" in q:
        try:
            ss.threshold = check_threshold(q["threshold"])
        except ValueError as exc:
            problems.append(f"threshold from the link rejected: {exc}.")
    if "patient" in q:
        ss.patient = q["patient"]  # checked against the run once it is loaded (fit_to_run)
    if "patch" in q:
        ss.patch = parse_row(q["patch"])  # checked against the run once it is loaded (fit_to_run)
        if ss.patch is None:
            problems.append(f"patch {q['patch']!r} from the link is not a patch number (0, 1, 2, ...); "
                            "no patch is open.")
    return problems


def parse_row(text: str) -> int | None:
    """A patch row written in plain ASCII digits, or None.

    Not str.isdigit(), which also accepts '²' and other digits int() refuses; the length cap keeps
    an absurd link from becoming a huge integer.
    """
    return int(text) if re.fullmatch(r"[0-9]{1,12}", text) else None


def fit_to_run(run: store.Run) -> None:
    """Drop a patient or patch the loaded run does not have (a stale link or another run), saying so."""
    ss = st.session_state
    problems = []
    known = set(loaders.patients(run)["patient_id"])
    if ss.patient is not None and ss.patient not in known:
        problems.append(f"patient {ss.patient!r} is not in run {run.name}.")
        ss.patient = None
    if ss.patch is not None:
        if not 0 <= ss.patch < len(run.table):
            problems.append(f"patch {ss.patch} is not in run {run.name} (its patches are numbered 0 to "
                            f"{len(run.table) - 1:,}); no patch is open.")
            ss.patch = None
        elif ss.patient is None:  # a link naming only the patch still opens its patient
            ss.patient = run.table["patient_id"].iat[ss.patch]
        elif (owner := run.table["patient_id"].iat[ss.patch]) != ss.patient:
            problems.append(f"patch {ss.patch} is a patch of patient {owner}, not of patient {ss.patient}; "
                            "no patch is open.")
            ss.patch = None
    if problems:
        ss.url_problems = [*ss.get("url_problems", []), *problems]


def sync_url() -> None:
    """Write the current view into the query string (only when it differs, to avoid churn)."""
    ss = st.session_state
    wanted = {k: (repr(ss[k]) if k == "threshold" else str(ss[k])) for k in URL_KEYS if ss.get(k) is not None}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


# --------------------------------------------------------------------------- binding widgets
def _copy(widget_key: str, state_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def bound(widget: Callable, label: str, state_key: str, on_change: Callable | None = None, **kwargs):
    """Draw ``widget`` showing state ``state_key``; a user change writes back (then ``on_change``)."""
    widget_key = f"w_{state_key}"
    st.session_state[widget_key] = st.session_state[state_key]

    def changed():
        _copy(widget_key, state_key)
        if on_change is not None:
            on_change()

    return widget(label, key=widget_key, on_change=changed, **kwargs)


# --------------------------------------------------------------------------- callbacks
def set_threshold(value: float) -> None:
    st.session_state.threshold = check_threshold(value)


def _threshold_from_number() -> None:
    ss = st.session_state
    value = ss.w_threshold_number
    try:
        ss.threshold = check_threshold(value)
    except (TypeError, ValueError) as exc:
        reason = exc if value is not None else "enter a value"
        ss.threshold_error = f"Threshold {value} rejected: {reason}. Kept {ss.threshold:.4f}."


def open_patch(patient_id: str, row: int) -> None:
    st.session_state.patient = str(patient_id)
    st.session_state.patch = int(row)


def set_patient(patient_id: str) -> None:
    st.session_state.patient = str(patient_id)
    st.session_state.patch = None


def _run_changed() -> None:
    st.session_state.patient = None
    st.session_state.patch = None


# --------------------------------------------------------------------------- the sidebar
BROKEN_TAG = "⚠ cannot be opened"


def run_label(path: Path) -> str:
    try:
        meta = store.read_meta(path)
    except store.ArtifactError:  # an unreadable run.json must not take the whole picker down
        return f"{path.name} · {BROKEN_TAG}"
    tag = " · SYNTHETIC" if meta.get("synthetic") else ""
    broken = f" · {BROKEN_TAG}" if loaders.known_broken(path) else ""
    return f"{path.name}{tag} · {str(meta.get('created', '?')).replace('T', ' ')[:16]}{broken}"


def sidebar(run_paths: list[Path]) -> store.Run | None:
    """Run picker, split and threshold controls; returns the loaded run (None if it is broken).

    The default run is the newest one that loads: a broken run (a corrupt file, an interrupted
    pipeline) stays in the picker, marked, and shows what is wrong only when someone picks it.
    """
    ss = st.session_state
    by_name = {p.name: p for p in run_paths}
    if ss.run not in by_name:
        ss.run = (loaders.first_loadable(run_paths) or run_paths[0]).name
    with st.sidebar:
        bound(st.selectbox, "Run (newest first)", "run", on_change=_run_changed, options=list(by_name),
              format_func=lambda name: run_label(by_name[name]), help=f"Run folders under {loaders.runs_dir()}")
        try:
            run = loaders.load_run(by_name[ss.run])
        except store.ArtifactError as exc:
            st.error(f"Run {ss.run} cannot be opened.", icon=":material/error:")
            for problem in ss.pop("url_problems", []):
                st.warning(problem)
            ss.broken_run_message = loaders.public_message(exc, by_name[ss.run])
            return None
        fit_to_run(run)
        bound(st.radio, "Measure on split", "split", options=list(SPLITS), horizontal=True,
              format_func=SPLIT_LABELS.get, help="Metrics, curves, tables and the error gallery use this split.")
        threshold_controls()
        for problem in ss.pop("url_problems", []):
            st.warning(problem)
    return run


def threshold_controls() -> None:
    """One slider and one exact-value box for the decision threshold, shared by every page."""
    ss = st.session_state
    ss.w_threshold_slider = ss.threshold
    ss.w_threshold_number = ss.threshold
    st.slider("Decision threshold", min_value=0.0, max_value=1.0, step=0.001, format="%.3f",
              key="w_threshold_slider", on_change=lambda: set_threshold(ss.w_threshold_slider),
              help="A patch is called IDC when its calibrated P(IDC) is at least this value.")
    st.number_input("Exact threshold (0 to 1)", step=0.001, format="%.4f", key="w_threshold_number",
                    on_change=_threshold_from_number)
    if "threshold_error" in ss:
        st.error(ss.pop("threshold_error"))
