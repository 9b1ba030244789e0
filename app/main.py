"""The pathologist review dashboard for IDC histopathology: ``python -m app`` (or ``make app``).

Lists the pipeline's run folders under ./runs (or $IDC_RUNS), newest first. The sidebar (run,
split, threshold) is shared by every page. Each run of this script: switch to the page a callback
asked for (state.go_to), resolve the view (state.resolve_view: default run, patient, patch), draw
the sidebar and the page, sync the URL (fragments sync it themselves: state.fragment). The state
model is in app/state.py's docstring. The page scripts live in app/views/, not app/pages/:
a pages/ folder beside the main script switches Streamlit's test runner (AppTest) to the legacy
multipage mode, in which it runs a page without this script.
"""
# The app, pipeline and model packages are installed (editable, by `make setup`), so `streamlit run
# app/main.py` finds them from any folder without a sys.path edit.
import streamlit as st

from app import identity, loaders, state, ui

st.set_page_config(page_title="IDC review dashboard", page_icon="🔬", layout="wide")
# Also set in .streamlit/config.toml, which `streamlit run` reads only when started from the
# repository root: every CSV must leave through the app's own, formula-safe download buttons.
st.set_option("client.disableDataExport", True)
ui.network_warning()
pages = {
    "overview": st.Page(state.PAGES["overview"], title="Cohort overview", icon=":material/monitoring:", default=True),
    "patient": st.Page(state.PAGES["patient"], title="Patient viewer", icon=":material/biotech:"),
    "inspector": st.Page(state.PAGES["inspector"], title="Patch inspector", icon=":material/zoom_in:"),
    "errors": st.Page(state.PAGES["errors"], title="Errors & review queue", icon=":material/report:"),
    "compare": st.Page(state.PAGES["compare"], title="Compare runs", icon=":material/compare_arrows:"),
    "reviews": st.Page(state.PAGES["reviews"], title="Reviews", icon=":material/rate_review:", url_path="reviews"),
    "agreement": st.Page(state.PAGES["agreement"], title="Agreement", icon=":material/groups:", url_path="agreement"),
}
navigation = st.navigation(list(pages.values()))
if (pending := state.pending_page()) is not None:  # the one place pages are switched (state.go_to)
    st.switch_page(state.PAGES[pending])
page = next(name for name, p in pages.items() if p is navigation)
run_paths = loaders.find_runs()
state.init([path.name for path in run_paths])
if not run_paths:
    ui.no_runs(loaders.runs_dir())
    run = None
else:
    run = state.resolve_view(run_paths, page)  # before anything of the run is drawn
    state.sidebar(run_paths)
    if run is not None:
        identity.sidebar()  # who is reviewing: once per session
    if run is None:
        ui.broken_run(st.session_state.run, state.run_problem())
with st.sidebar:
    ui.footer()
if run is not None:
    ui.synthetic_banner(run)
    ui.provenance_caption(run)
    try:
        navigation.run()
    finally:  # also after an exception; a page that stops early syncs it first (state.stop)
        state.sync_url()
