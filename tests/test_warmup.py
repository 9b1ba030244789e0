"""The server's caches are filled at start (app/warmup.py) for the run a first visitor opens."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline import store
from tests.apptest_helpers import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent


def two_runs(tmp_path: Path, tiny_run: Path) -> Path:
    """runs/older (loads) and runs/newer (its scores corrupt): the default is the newest that loads."""
    runs = tmp_path / "runs"
    for name in ("older", "newer"):
        shutil.copytree(tiny_run, runs / name, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    (runs / "newer" / store.SCORES).write_bytes(b"not a parquet file")
    now = time.time()
    os.utime(runs / "older" / store.RUN_META, (now - 60, now - 60))
    os.utime(runs / "newer" / store.RUN_META, (now, now))
    return runs


def test_warm_loads_the_newest_run_that_loads_and_its_overview(tmp_path, monkeypatch, tiny_run):
    from app import loaders, warmup

    runs = two_runs(tmp_path, tiny_run)
    monkeypatch.setenv("IDC_RUNS", str(runs))
    assert [p.name for p in loaders.find_runs()] == ["newer", "older"]
    assert warmup.warm() == "older"
    assert loaders.known_broken(runs / "newer")  # remembered: no session re-reads the broken run
    run = loaders.load_run(runs / "older")
    # The overview's threshold-free work is in the shared cache: asked again, the same objects come back.
    labels = loaders.DATASET_LABELS
    assert loaders.split_data(run, "test", labels) is loaders.split_data(run, "test", labels)
    figures = loaders.curve_figures(run, "test", labels)
    assert set(figures) >= {"roc", "pr"}
    assert loaders.curve_figures(run, "test", labels) is figures


def test_warm_with_no_runs_says_so(tmp_path, monkeypatch):
    from app import warmup

    monkeypatch.setenv("IDC_RUNS", str(tmp_path / "runs"))
    assert warmup.warm() is None


def test_the_launcher_warms_the_default_run_before_anyone_connects(tmp_path, tiny_run):
    runs = two_runs(tmp_path, tiny_run)
    port = free_port()
    env = {**os.environ, "IDC_RUNS": str(runs)}
    env.pop("IDC_WARMUP", None)
    server = subprocess.Popen([sys.executable, "-m", "app", "--server.port", str(port), "--server.headless", "true"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, timeout_s=90)
        deadline = time.monotonic() + 90
        while not any("Warm-up:" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.terminate()  # the server runs in the launcher's own process: its signal handlers stop it
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(timeout=5)
    output = "".join(lines)
    assert "Warm-up: run older loaded and its overview precomputed" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
