"""Shared pieces of the fault suite: each test builds one broken input on a tiny synthetic cohort and
asserts the exact outcome (the message names the file and the fix, the exit code) and that nothing the
user made was lost (checksums of their files before and after)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest


def tree_checksums(root: Path | str) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest): equal before and after means untouched."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``python -m pipeline ARGV`` in-process; return (exit code, stdout, stderr)."""
    from pipeline.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit 2 through SystemExit
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cohort_copy(tmp_path, tiny_cohort) -> Path:
    """A private, writable copy of the session's tiny synthetic cohort, to break as a test likes."""
    dest = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, dest)
    return dest
