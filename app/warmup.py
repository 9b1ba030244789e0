"""Fill the server's shared caches when it starts, so the first visitor does not wait for them.

The first page a visitor opens on a fresh server used to pay for everything at once: importing the
pages' libraries (pandas, pyarrow, Plotly), reading the run's files, and the threshold-free work
of the overview (the split's rows, ROC/PR curves and their figures, the patient bootstrap, the
per-patient review progress). All of it is kept in ``st.cache_resource`` and shared by every
session, so doing it once at start, before anyone connects, takes it off the first visitor's wait.

``python -m app`` runs :func:`warm_when_ready` in a thread beside the server (app/__main__.py). It
waits for Streamlit's runtime (whose cache the sessions use), then warms the run a visitor opens by
default (the newest that loads, as state.resolve_view picks it) on the default split, with the
dataset's labels. Whatever fails here is only logged: the page that needs it will then show the
error as it always does, and a visitor is never kept waiting for the warm-up.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("idc.warmup")

# Streamlit logs "missing ScriptRunContext" for each cached call made outside a script run; the
# warm-up's calls are made outside one on purpose (the cache is the runtime's, not a session's). The
# filter drops only this thread's records: the sessions served meanwhile keep every warning.
_CONTEXT_LOGGERS = ("streamlit.runtime.scriptrunner_utils.script_run_context",
                    "streamlit.runtime.caching.cache_utils")
THREAD_NAME = "idc-warmup"


def _not_from_warmup(record: logging.LogRecord) -> bool:
    return record.threadName != THREAD_NAME


def warm(split: str | None = None) -> str | None:
    """Load the default run and what its overview draws into the shared caches; the run's name, or
    None when there is no run that loads. Must run where Streamlit's runtime exists."""
    from app import charts, cohort, loaders, state  # noqa: F401  (the pages' imports, paid here once)

    split = split or state.DEFAULTS["split"]
    path = loaders.first_loadable(loaders.find_runs())
    if path is None:
        return None
    run = loaders.load_run(path)
    if split != "all" and split not in set(run.table["split"].astype(str)):
        return run.name
    labels = loaders.DATASET_LABELS
    loaders.split_data(run, split, labels)
    loaders.curves(run, split, labels)
    loaders.curve_figures(run, split, labels)
    loaders.bootstrap(run, split, labels)
    loaders.curve_intervals(run, split, labels)
    loaders.patients(run)
    reviews = loaders.run_reviews(run)
    loaders.progress(run, reviews)
    loaders.progress_texts(run, reviews)
    return run.name


def warm_when_ready(timeout_s: float = 60.0) -> None:
    """Wait for Streamlit's runtime to start (at most ``timeout_s``), then :func:`warm` and log how long it took."""
    from streamlit.runtime import Runtime

    deadline = time.monotonic() + timeout_s
    while not Runtime.exists():
        if time.monotonic() > deadline:
            log.warning("warm-up skipped: the Streamlit runtime did not start within %.0f s", timeout_s)
            return
        time.sleep(0.05)
    quiet = [logging.getLogger(name) for name in _CONTEXT_LOGGERS]
    for logger in quiet:
        logger.addFilter(_not_from_warmup)
    t0 = time.perf_counter()
    try:
        name = warm()
    except Exception as exc:  # noqa: BLE001 - the page that needs it shows the error; never stop the server
        log.warning("warm-up stopped (%s: %s); the first visitor loads the run instead", type(exc).__name__, exc)
        return
    finally:
        for logger in quiet:
            logger.removeFilter(_not_from_warmup)
    took = time.perf_counter() - t0
    if name is None:
        print(f"  Warm-up: no run to load yet ({took:.1f} s).", flush=True)
    else:
        print(f"  Warm-up: run {name} loaded and its overview precomputed in {took:.1f} s.", flush=True)
