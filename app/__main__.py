"""Start the dashboard: ``python -m app [streamlit options]`` (what ``make app`` runs).

``streamlit run app/main.py`` reads ``.streamlit/config.toml`` only from the folder it is started
in; started from anywhere else it would listen on every network interface and lose the project's
settings. This launcher passes every option of the project's config file on the command line and
binds the server to ``$IDC_ADDRESS``, 127.0.0.1 (this machine only) unless set, wherever it is
started from. To open the app to a network on purpose: ``IDC_ADDRESS=0.0.0.0 python -m app``.

Runs folder: ``./runs`` of the folder it is started in, or ``$IDC_RUNS``. Options after ``python -m
app`` go to ``streamlit run`` and win over the config file (e.g. ``--server.port 8600``).

The server runs in this process, with a thread beside it that fills the shared caches for the run a
first visitor opens (app/warmup.py), so the first page after a start does not wait for them.
``IDC_WARMUP=0`` turns that off. Only the standard library is imported before the server starts.
"""
from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "app" / "main.py"
CONFIG = ROOT / ".streamlit" / "config.toml"
ADDRESS_ENV = "IDC_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1"
WARMUP_ENV = "IDC_WARMUP"


def config_flags(config: Path = CONFIG) -> list[str]:
    """Every option of the project's config file as ``--section.option=value`` (the address aside)."""
    with config.open("rb") as f:
        sections = tomllib.load(f)
    flags = []
    for section, options in sections.items():
        for name, value in options.items():
            if (section, name) == ("server", "address"):
                continue  # the launcher's own choice, from $IDC_ADDRESS
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{name}={text}")
    return flags


def command(argv: list[str], env: dict[str, str]) -> list[str]:
    """The ``streamlit run`` command line: the project's options, the address, then the caller's options."""
    address = env.get(ADDRESS_ENV, "").strip() or DEFAULT_ADDRESS
    return [sys.executable, "-m", "streamlit", "run", str(MAIN), *config_flags(),
            f"--server.address={address}", *argv]


def main(argv: list[str] | None = None) -> None:
    env = dict(os.environ)
    args = command(sys.argv[1:] if argv is None else argv, env)
    if env.get(WARMUP_ENV, "1").strip() == "0":
        # Replace this process, so Ctrl-C and signals reach the server directly.
        os.execv(args[0], args)
    # In this process (the server's signal handlers are installed in this, the main, thread), with the
    # warm-up beside it: Streamlit's caches live in the server's process, so they must be filled here.
    import threading

    from streamlit.web import cli

    from app import warmup

    threading.Thread(target=warmup.warm_when_ready, name=warmup.THREAD_NAME, daemon=True).start()
    sys.argv = ["streamlit", *args[3:]]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
