"""The pathologist review dashboard for IDC histopathology: ``streamlit run app/main.py``.

Lists the pipeline's run folders under ./runs (or $IDC_RUNS), newest first. The sidebar (run,
split, threshold) is shared by every page. The page scripts live in app/views/, not app/pages/:
a pages/ folder beside the main script switches Streamlit's test runner (AppTest) to the legacy
multipage mode, in which it runs a page without this script.
"""
import sys
from pathlib import Path

# `streamlit run` puts app/ on sys.path; the app, pipeline and model packages live one level up.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from app import loaders, state, ui  # noqa: E402

st.set_page_config(page_title="IDC review dashboard", page_icon="🔬", layout="wide")
# Also set in .streamlit/config.toml, which `streamlit run` reads only when started from the
# repository root: every CSV must leave through the app's own, formula-safe download buttons.
st.set_option("client.disableDataExport", True)
ui.network_warning()
navigation = st.navigation([
    st.Page(state.PAGES["overview"], title="Cohort overview", icon=":material/monitoring:", default=True),
    st.Page(state.PAGES["patient"], title="Patient viewer", icon=":material/biotech:"),
    st.Page(state.PAGES["inspector"], title="Patch inspector", icon=":material/zoom_in:"),
    st.Page(state.PAGES["errors"], title="Errors & review queue", icon=":material/report:"),
    st.Page(state.PAGES["reviews"], title="Reviews", icon=":material/rate_review:", url_path="reviews"),
])
run_paths = loaders.find_runs()
state.init([path.name for path in run_paths])
if not run_paths:
    ui.no_runs(loaders.runs_dir())
    run = None
else:
    run = state.sidebar(run_paths)
    if run is None:
        ui.broken_run(st.session_state.run, st.session_state.pop("broken_run_message", ""))
with st.sidebar:
    ui.footer()
if run is not None:
    st.session_state.current_run = run
    ui.synthetic_banner(run)
    try:
        navigation.run()
    finally:  # also after a page stops early, so the URL always matches what is shown
        state.sync_url()
