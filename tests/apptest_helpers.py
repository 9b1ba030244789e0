"""Opening the app in tests: in Streamlit's AppTest (one run, one page, a URL query), or served for a real browser."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
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


# --------------------------------------------------------------------------- a real server and browser
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; never a downloaded browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    """Poll Streamlit's health endpoint until it answers; raise with the server's output if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            out = server.stdout.read().decode()[-2000:] if server.stdout and server.poll() is not None else ""
            raise RuntimeError(f"the app at {url} did not start within {timeout_s:.0f} s: {out}")
        time.sleep(0.5)


@contextlib.contextmanager
def browser_page(playwright, height: int, timeout_ms: int):
    """A Chromium page 1500 px wide with the tests' timeouts; the browser is closed afterwards."""
    from playwright.sync_api import expect

    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": height})
        page.set_default_timeout(timeout_ms)
        expect.set_options(timeout=timeout_ms)
        yield page
    finally:
        browser.close()
