"""Opening the app in Streamlit's AppTest, as the app tests share it: one run, one page, a URL query."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app import identity

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def start(monkeypatch, run_dir: Path, page: str, **query) -> AppTest:
    """The app on ``page`` of the run ``run_dir`` (its parent is the runs folder), no reviewer config."""
    monkeypatch.setenv("IDC_RUNS", str(run_dir.parent))
    monkeypatch.delenv(identity.REVIEWERS_ENV, raising=False)
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({"run": run_dir.name, **{k: str(v) for k, v in query.items()}})
    return at.run().switch_page(page).run()


def sign_in(at: AppTest, name: str) -> AppTest:
    at.text_input(key="sign_in_name").input(name)
    return at.button(key="sign_in").click().run()
