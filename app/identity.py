"""Who is reviewing: one name per browser session, carried by every review.

Three ways, first match wins:

- **Streamlit's own login (OIDC)**: when the deployment's secrets have an ``[auth]`` section,
  the sidebar offers ``st.login()`` and the name is ``st.user.name`` (or its email).
- **Named reviewers**: ``.streamlit/reviewers.toml`` (or the file ``$IDC_REVIEWERS`` names) lists
  them (``[[reviewer]]`` tables with ``name`` and an optional ``email``); the reviewer picks their
  name once per session in the sidebar.
- **Neither** (e.g. one person on localhost): the reviewer types their name once per session.

The name lives in session state (``reviewer``), never in the URL; "Switch reviewer" clears it.
With the login, app/state.py's resolve_view settles it from :func:`logged_in_name` before anything
is drawn; otherwise only the sign-in callbacks write it. The sidebar only reads it.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

import streamlit as st

REVIEWERS_ENV = "IDC_REVIEWERS"
REVIEWERS_FILE = Path(".streamlit") / "reviewers.toml"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def reviewers_file() -> Path | None:
    """The reviewers config in use: $IDC_REVIEWERS, else .streamlit/reviewers.toml here or in the project."""
    if os.environ.get(REVIEWERS_ENV):
        return Path(os.environ[REVIEWERS_ENV])
    for base in (Path.cwd(), _PROJECT_ROOT):
        if (base / REVIEWERS_FILE).is_file():
            return base / REVIEWERS_FILE
    return None


def read_reviewers(path: Path | str) -> list[dict]:
    """The reviewers a config file names, in file order: ``[{"name": ..., "email": ...}, ...]``.

    Raises ValueError (naming the file) for unreadable TOML, a reviewer without a name, or a name twice.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path} cannot be read as a reviewers file ({exc})") from None
    entries = data.get("reviewer", [])
    if not isinstance(entries, list):
        raise ValueError(f"{path}: write each reviewer as a [[reviewer]] table with a name")
    out, seen = [], set()
    for i, entry in enumerate(entries, 1):
        name = str(entry.get("name", "")).strip() if isinstance(entry, dict) else ""
        if not name:
            raise ValueError(f"{path}: reviewer {i} has no name")
        if name in seen:
            raise ValueError(f"{path}: reviewer {name!r} is listed twice")
        seen.add(name)
        out.append({"name": name, "email": str(entry.get("email", "")).strip()})
    return out


def auth_configured() -> bool:
    """True when the deployment configured Streamlit's login (an ``[auth]`` section in its secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def logged_in_name() -> str | None:
    """With Streamlit's login configured, the logged-in user's name (or email; empty when logged out);
    None without it (the reviewer then signs in in the sidebar)."""
    if not auth_configured():
        return None
    if not getattr(st.user, "is_logged_in", False):
        return ""
    return str(st.user.get("name") or st.user.get("email") or "").strip()


def current() -> str:
    """The signed-in reviewer's name for this session; empty when nobody is signed in."""
    return str(st.session_state.get("reviewer") or "").strip()


def _sign_in(name: str) -> None:
    st.session_state.reviewer = str(name or "").strip()


def _sign_in_from(key: str) -> None:
    _sign_in(st.session_state.get(key) or "")


def _switch() -> None:
    st.session_state.reviewer = ""


def sidebar() -> None:
    """The sign-in box in the sidebar: 'Signed in as X' with a switch button, or the way to sign in."""
    with st.sidebar:
        st.markdown("**Reviewer**")
        if auth_configured():
            if getattr(st.user, "is_logged_in", False):  # the name: settled by state.resolve_view
                st.caption(f":material/person: Signed in as **{current()}**")
                st.button("Log out", key="log_out", on_click=st.logout, icon=":material/logout:")
            else:
                st.button("Log in to review", key="log_in", on_click=st.login, icon=":material/login:")
            return
        if current():
            st.caption(f":material/person: Signed in as **{current()}**")
            st.button("Switch reviewer", key="switch_reviewer", on_click=_switch, icon=":material/switch_account:")
            return
        path = reviewers_file()
        if path is not None:
            try:
                names = [r["name"] for r in read_reviewers(path)]
            except ValueError as exc:
                st.error(str(exc), icon=":material/person_off:")
                names = []
            if names:
                st.selectbox("Who is reviewing?", names, key="sign_in_pick", index=None,
                             placeholder="Choose your name", help=f"Reviewers listed in {path.name}")
                st.button("Sign in", key="sign_in", on_click=_sign_in_from, args=("sign_in_pick",),
                          icon=":material/login:")
                return
        st.text_input("Your name (once per session)", key="sign_in_name", placeholder="Name or initials",
                      help="Every review you save carries this name. It is kept for this browser session only.")
        st.button("Sign in", key="sign_in", on_click=_sign_in_from, args=("sign_in_name",), icon=":material/login:")
