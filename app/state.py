"""Shared state of the dashboard: the chosen run, split, threshold, patient and patch.

Each lives under one plain key of ``st.session_state`` (never a widget key, because Streamlit drops
a widget's state when a page that does not draw it runs). There is one way to change it:

- **Callbacks write state.** Widgets are bound to these keys with :func:`bound`: the widget is set
  from the value before it is drawn and writes back in its ``on_change`` callback; buttons and
  table selections call :func:`set_threshold`, :func:`set_patient`, :func:`open_patch` or
  :func:`go_to` as their ``on_click`` / ``on_select``. Callbacks run before the script, so every
  page draws with the new value at once.
- **:func:`resolve_view` fills in what is missing, before anything is drawn.** Run from app/main.py
  once per run of the script, it settles the reviewer of Streamlit's login (:func:`_settle_reviewer`),
  picks the default run (the newest that loads), loads it, drops a patient or patch the run does not
  have (:func:`fit_to_run`), and fills the page's defaults: a patient on the Patient viewer and the
  Patch inspector (the first test patient), a patch on the Patch inspector (the patient's most
  confident error), run B on Compare runs (the newest other run that loads). Pages and widgets only
  read state; the run is :func:`current_run`.
- **A page's own list is settled by one helper, before the list is drawn.** What depends on a list
  only the page computes (from its own widgets) cannot be filled in by resolve_view; the one helper
  per such list is, besides callbacks and resolve_view, the only other writer of that state, called
  by its page once the list is known and before any of it is drawn: :func:`fit_gallery` (the errors
  gallery's current card and page) and :func:`fit_patient` (a page that lists only some patients,
  e.g. those both compared runs scored).
- **:func:`go_to` switches pages.** A callback calls ``go_to(page, patient=..., patch=...)``: it
  sets the view and a pending page, and app/main.py switches to it before anything is drawn
  (``st.switch_page`` cannot be called in a callback: the pages are not registered yet).
- **The URL follows the state in one place.** :func:`sync_url` rewrites ``st.query_params`` from
  the state after every run of app/main.py (in its ``finally``) and after every fragment's rerun
  (:func:`fragment`, the only way the app makes a fragment); no page calls it. A bookmarked view
  restores run, split, threshold, patient and patch (:func:`init`).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from app import identity, loaders, selection
from pipeline import store
from pipeline.metrics import check_threshold

SPLITS = (*loaders.SPLIT_ORDER, "all")  # the pipeline's splits, test first, and all of them together
SPLIT_LABELS = {"test": "test", "val": "validation", "train": "train", "all": "all splits"}
DEFAULTS = {"run": None, "split": "test", "threshold": 0.5, "patient": None, "patch": None, "reviewer": ""}
URL_KEYS = ("run", "split", "threshold", "patient", "patch")

PAGES = {  # page scripts, relative to app/main.py (app/views, not app/pages: see main.py)
    "overview": "views/overview.py",
    "patient": "views/patient.py",
    "inspector": "views/inspector.py",
    "errors": "views/errors.py",
    "compare": "views/compare.py",
    "reviews": "views/review_log.py",
    "agreement": "views/agreement.py",
}
_RUN = "_loaded_run"  # the run resolve_view loaded (None when it is broken): read through current_run()
_RUN_PROBLEM = "_run_problem"  # why the picked run cannot be opened: read through run_problem()
_PENDING_PAGE = "_pending_page"  # set by go_to in a callback, taken by pending_page() in app/main.py


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


def stop() -> None:
    """End the page here (``st.stop``), with the URL synced first: the one way a page stops early, so
    the link always names what is shown, whatever Streamlit lets run after a stop."""
    sync_url()
    st.stop()


def fragment(body: Callable) -> Callable:
    """``st.fragment`` that keeps the URL in sync: the one way the app makes a fragment.

    A widget inside a fragment reruns only the fragment, not app/main.py (whose ``finally`` syncs
    the URL after a full run), so the URL is synced here after the fragment's body, however it ends.
    """
    @functools.wraps(body)
    def synced(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        finally:
            sync_url()

    return st.fragment(synced)


# --------------------------------------------------------------------------- resolving the view
def resolve_view(run_paths: list[Path], page: str) -> store.Run | None:
    """Fill in the state ``page`` needs, before anything is drawn; returns the run (None if broken).

    The one place besides callbacks (and a page's own list helpers: :func:`fit_gallery`,
    :func:`fit_patient`) that writes state: the reviewer of Streamlit's login; the default run is the newest one that
    loads (a broken run, e.g. a corrupt file or an interrupted pipeline, stays in the picker and
    shows what is wrong only when someone picks it); a patient or patch the run does not have is
    dropped (:func:`fit_to_run`); then the page's defaults (:func:`_page_defaults`).
    """
    ss = st.session_state
    _settle_reviewer()
    by_name = {p.name: p for p in run_paths}
    if ss.run not in by_name:
        ss.run = (loaders.first_loadable(run_paths) or run_paths[0]).name
    ss[_RUN], ss[_RUN_PROBLEM] = None, None
    try:
        with st.sidebar:  # where a "Loading the run..." spinner shows, beside the run picker
            run = loaders.load_run(by_name[ss.run])
    except store.ArtifactError as exc:
        ss[_RUN_PROBLEM] = loaders.public_message(exc, by_name[ss.run])
        return None
    fit_to_run(run)
    _page_defaults(run, page, run_paths)
    ss[_RUN] = run
    return run


def _settle_reviewer() -> None:
    """With Streamlit's login configured, the reviewer is the logged-in user (nobody when logged out),
    settled before the sidebar draws it; otherwise the name stays the one signed in by callback."""
    name = identity.logged_in_name()
    if name is not None:
        st.session_state.reviewer = name


def _page_defaults(run: store.Run, page: str, run_paths: list[Path]) -> None:
    """The Patient viewer and the Patch inspector show a patient: the first test patient unless one
    is chosen; the inspector shows a patch: the patient's most confident error (the patch a
    reviewer most likely came for), or its most probable patch when it has no error. Compare runs
    compares with run B: the newest other run that loads, unless another run was picked."""
    ss = st.session_state
    if page == "compare":
        others = [p for p in run_paths if p.name != run.name]
        if others and ss.get("compare_b") not in {p.name for p in others}:
            ss.compare_b = (loaders.first_loadable(others) or others[0]).name
        return
    if page not in ("patient", "inspector"):
        return
    if ss.patient is None:  # fit_to_run has dropped a patient the run does not have
        ss.patient, ss.patch = str(loaders.patients(run)["patient_id"].iat[0]), None
    if page == "inspector" and ss.patch is None:
        rows = run.table[run.table["patient_id"] == ss.patient]
        worst = selection.errors(rows, ss.threshold)
        ss.patch = int(worst.index[0] if len(worst) else rows["prob"].idxmax())


# --------------------------------------------------------------------------- a page's own list
def fit_gallery(listing: tuple, items: pd.Index, per_page: int) -> int:
    """Settle the errors gallery's current card and page for the list ``items`` (patch rows, in order);
    returns the current card's position in the list.

    Called by app/views/errors.py once its list is known and before the list is drawn: besides the
    callbacks (``gallery_current`` by "Make current" and the review keys, ``gallery_page`` by the
    pagination) the one place that writes this state. ``listing`` names the list (mode, patient,
    split, error kinds or queue order...): a new list starts at its first patch; a list that only
    changed (a patch reviewed out of the queue, a new threshold) keeps its current patch. The page
    follows the current card (J past a page's last card turns the page); with no current card (a new
    list, or the reviewer turned the page) the page's first card is current.
    """
    ss = st.session_state
    if ss.get("gallery_listing") != listing:
        ss.gallery_listing, ss.gallery_current = listing, None
        if ss.get("gallery_page", 1) != 1:
            ss.gallery_page = 1
    found_at = -1 if ss.get("gallery_current") is None else items.get_indexer([ss.gallery_current])[0]
    position, page = selection.focus_position(len(items), None if found_at < 0 else int(found_at),
                                              ss.get("gallery_page", 1), per_page)
    if ss.get("gallery_page", 1) != page:  # only when it moves: a write is the widget's new value (and logs a warning)
        ss.gallery_page = page
    if len(items):
        ss.gallery_current = int(items[position])
    return position


def fit_patient(patient_ids: list[str]) -> str:
    """Keep the open patient when ``patient_ids`` (a page's list, non-empty) has it, else open the
    first of them (no patch); returns the patient. For a page that lists only some patients (Compare
    runs: those both runs scored in the split), called before its patient picker is drawn."""
    ss = st.session_state
    if ss.patient not in patient_ids:
        ss.patient, ss.patch = str(patient_ids[0]), None
    return ss.patient


def current_run() -> store.Run:
    """The run picked in the sidebar, loaded by :func:`resolve_view` (pages are drawn only when it loads)."""
    run = st.session_state.get(_RUN)
    if run is None:
        raise RuntimeError("no run is loaded: app/main.py draws a page only after state.resolve_view loaded one")
    return run


def run_problem() -> str:
    """Why the picked run cannot be opened (the file and the fix); empty when it loaded."""
    return st.session_state.get(_RUN_PROBLEM) or ""


# --------------------------------------------------------------------------- switching pages
def go_to(page: str, patient: str | None = None, patch: int | None = None) -> None:
    """Open ``page`` (a key of :data:`PAGES`), on ``patient`` and ``patch`` when given; for callbacks.

    Sets the view and a pending page; app/main.py switches to it (:func:`pending_page`) before
    anything is drawn. Without ``patient`` the view stays as it is; with it, ``patch`` (None: the
    page's default) replaces the open patch.
    """
    if page not in PAGES:
        raise ValueError(f"unknown page {page!r}; one of {', '.join(PAGES)}")
    ss = st.session_state
    if patient is not None:
        ss.patient, ss.patch = str(patient), None if patch is None else int(patch)
    ss[_PENDING_PAGE] = page
    # A callback of a widget inside a fragment would rerun only the fragment, not app/main.py,
    # which switches pages: ask for a full run (in a callback this ends the callback, so it is last).
    st.rerun()


def pending_page() -> str | None:
    """The page :func:`go_to` asked for, once (app/main.py switches to it); None when there is none."""
    return st.session_state.pop(_PENDING_PAGE, None)


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
    described = _described(str(path), _meta_version(path))
    if described is None:  # an unreadable run.json must not take the whole picker down
        return f"{path.name} · {BROKEN_TAG}"
    broken = f" · {BROKEN_TAG}" if loaders.known_broken(path) else ""
    return f"{path.name}{described}{broken}"


def _meta_version(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = (path / store.RUN_META).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size  # ctime: a chmod is a new version too


@st.cache_data(max_entries=256, show_spinner=False)
def _described(path: str, version: tuple[int, int, int] | None) -> str | None:
    """' · SYNTHETIC · created' from the run's run.json, read once per version of that file (the picker
    labels every run on every rerun); None when it cannot be read."""
    try:
        meta = store.read_meta(path)
    except store.ArtifactError:
        return None
    tag = " · SYNTHETIC" if meta.get("synthetic") else ""
    return f"{tag} · {str(meta.get('created', '?')).replace('T', ' ')[:16]}"


def sidebar(run_paths: list[Path]) -> None:
    """Run picker, split and threshold controls; draws the state :func:`resolve_view` resolved.

    A picked run that cannot be opened gets the run picker and its error, nothing else.
    """
    ss = st.session_state
    by_name = {p.name: p for p in run_paths}
    with st.sidebar:
        bound(st.selectbox, "Run (newest first)", "run", on_change=_run_changed, options=list(by_name),
              format_func=lambda name: run_label(by_name[name]), help=f"Run folders under {loaders.runs_dir()}")
        if ss.get(_RUN) is None:
            st.error(f"Run {ss.run} cannot be opened.", icon=":material/error:")
        else:
            bound(st.radio, "Measure on split", "split", options=list(SPLITS), horizontal=True,
                  format_func=SPLIT_LABELS.get, help="Metrics, curves, tables and the error gallery use this split.")
            threshold_controls()
        for problem in ss.pop("url_problems", []):
            st.warning(problem)


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
