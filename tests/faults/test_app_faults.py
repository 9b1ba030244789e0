"""Faults the dashboard must survive without losing or misattributing anything the user made.

Each test breaks one thing on a private copy of the session's tiny trained run (never the run
itself): a re-ingest that moves and drops manifest rows under existing reviews, a corrupt manifest,
scores or run.json, a garbage reviews file, a bad patch number in a link, a reviewer's note that a
spreadsheet would run as a formula, the app started from another folder.
"""
from __future__ import annotations

import ast
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import slides
from pipeline.reviews import ReviewStore
from pipeline import store
from tests.apptest_helpers import free_port, wait_until_healthy
from tests.faults.conftest import tree_checksums

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")


# --------------------------------------------------------------------------- helpers
def copy_run(tiny_run: Path, runs_dir: Path, name: str) -> Path:
    """A private copy of the tiny run, without the reviews other tests left in it."""
    dest = runs_dir / name
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    return dest


def start_app(monkeypatch, runs_dir: Path, page: str | None = None, **query) -> AppTest:
    monkeypatch.setenv("IDC_RUNS", str(runs_dir))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.run()
    return at.switch_page(page).run() if page else at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def reingest_permuted(run_dir: Path, drop_row: int, seed: int = 3) -> np.ndarray:
    """Rewrite manifest, patches and scores as a re-ingest would: rows shuffled, one patch gone.

    The stage fingerprints stay as they are, so load_run accepts the folder exactly as it accepts
    a re-ingest of the same data. Returns ``order``: new row i holds what old row order[i] held.
    """
    manifest, scores = store.read_manifest(run_dir), store.read_scores(run_dir)
    patches = np.asarray(store.read_patches(run_dir))
    order = np.random.default_rng(seed).permutation(np.delete(np.arange(len(manifest)), drop_row))
    store.write_manifest(run_dir, manifest.iloc[order])
    store.write_scores(run_dir, scores["prob"].to_numpy()[order], scores["prob_uncalibrated"].to_numpy()[order],
                       scores["prob_patch"].to_numpy()[order])
    with store.atomic_path(run_dir / store.PATCHES) as tmp:
        packed = store.create_patch_store(tmp, len(order))
        packed[:] = patches[order]
        packed.flush()
        del packed
    return order


def heatmap(at: AppTest, name: str) -> np.ndarray:
    """The z grid of the slide chart's heatmap trace called ``name`` (Plotly may send it base64-packed)."""
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    z = next(t for t in spec["data"] if t.get("name") == name)["z"]
    if isinstance(z, dict):  # {"dtype", "bdata", "shape"}
        shape = tuple(int(s) for s in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.array([[np.nan if v is None else v for v in line] for line in z], dtype=float)


# --------------------------------------------------------------------------- 3: reviews after a re-ingest
def test_resolve_matches_reviews_by_patch_identity_and_keeps_missing_ones():
    from pipeline.reviews import NOT_IN_RUN, resolve

    table = pd.DataFrame({"patient_id": ["7", "7", "8"], "x": [1, 51, 1], "y": [1, 1, 51]}, index=[0, 1, 2])
    reviews = pd.DataFrame({"id": [1, 2, 3], "row": [0, 5, 1], "patient_id": ["8", "7", "9"], "x": [1, 51, 1],
                            "y": [51, 1, 1], "verdict": ["agree", "unsure", "agree"], "note": ["a", "b", "c"],
                            "reviewer": ["r"] * 3, "created_at": ["t"] * 3})
    got = resolve(reviews, table)
    assert got["row"].tolist() == [2, 1, NOT_IN_RUN]  # by (patient, x, y), whatever the stored row
    assert got["recorded_row"].tolist() == [0, 5, 1]
    assert got["note"].tolist() == ["a", "b", "c"]  # nothing dropped, order kept


def test_reviews_follow_their_patch_after_a_reingest(monkeypatch, tmp_path, tiny_run):
    runs = tmp_path / "runs"
    run_dir = copy_run(tiny_run, runs, "reingested")
    before = store.load_run(run_dir).table
    n = len(before)
    idc = before[before["label"] == 1]
    moved = int(idc["prob"].idxmin())  # the surest false negative: first in the errors gallery
    last = n - 1 if moved != n - 1 else n - 2  # its stored row is past the end after the re-ingest
    dropped = next(r for r in range(n) if r not in (moved, last) and before.at[r, "patient_id"]
                   == before.at[moved, "patient_id"])
    from tests import legacy_reviews_v1  # the per-run file as the app wrote it before the cohort store

    rs = legacy_reviews_v1.ReviewStore(run_dir)  # migrated into the cohort store when the app opens the run
    for row, verdict, note in ((moved, "label_wrong", "moved patch"), (last, "agree", "last row"),
                               (dropped, "unsure", "dropped patch")):
        p = before.loc[row]
        rs.add(row=row, patient_id=p["patient_id"], x=int(p["x"]), y=int(p["y"]), verdict=verdict, note=note,
               reviewer="Dr Before")
    reviews_file = tree_checksums(run_dir)[store.REVIEWS]

    order = reingest_permuted(run_dir, drop_row=dropped)
    after = store.load_run(run_dir).table
    new_row = {old: int(np.flatnonzero(order == old)[0]) for old in (moved, last)}
    assert new_row[moved] != moved and last >= len(after)  # the cases that broke the app
    assert after.loc[new_row[moved], ["patient_id", "x", "y"]].tolist() == before.loc[moved, ["patient_id", "x", "y"]].tolist()

    # Reviews page: each review on its own patch, the dropped one listed apart with a note, no IndexError.
    at = start_app(monkeypatch, runs, "views/review_log.py", threshold=0.5)
    assert not at.exception, at.exception
    table = at.dataframe(key="reviews_table").value
    for old, note in ((moved, "moved patch"), (last, "last row")):
        shown = table[table["note"] == note].iloc[0]
        assert shown["row"] == new_row[old]
        assert (shown["patient_id"], shown["x"], shown["y"]) == tuple(before.loc[old, ["patient_id", "x", "y"]])
        assert shown["label"] == after.at[new_row[old], "label"]
    assert "dropped patch" not in set(table["note"])
    apart = next(d.value for d in at.dataframe if "recorded_row" in d.value)  # the table listed apart
    assert apart["note"].tolist() == ["dropped patch"] and apart["recorded_row"].tolist() == [dropped]
    assert any("1 review names a patch not in this run's manifest; kept in `_cohorts/" in w
               for w in texts(at.warning))
    assert any("2 reviews were given when this run's manifest had other rows" in i for i in texts(at.info))

    # Inspector: the moved patch's history is on its new row, not on whatever took its old row.
    patient = before.at[moved, "patient_id"]
    at = start_app(monkeypatch, runs, "views/inspector.py", patient=patient, patch=new_row[moved])
    assert not at.exception
    assert any("moved patch" in set(d.value["note"]) for d in at.dataframe)
    # ... and the patch that now sits on the moved patch's old row shows none of its reviews.
    at = start_app(monkeypatch, runs, "views/inspector.py", patient=after.at[moved, "patient_id"], patch=moved)
    assert not at.exception and any(h.startswith("Patch x") for h in texts(at.subheader))
    assert not any("moved patch" in set(d.value["note"]) for d in at.dataframe if "note" in d.value)

    # Errors gallery: the badge is on the moved patch's card (found by its coordinates).
    threshold = float(np.nextafter(after.at[new_row[moved], "prob"], 1.0))
    at = start_app(monkeypatch, runs, "views/errors.py", split="all", threshold=repr(threshold))
    at.selectbox(key="gallery_patient").set_value(patient).run()
    at.button_group(key="gallery_kinds").set_value(["FN"]).run()  # the surest false negative comes first
    assert not at.exception
    where = f"{patient} · x {before.at[moved, 'x']}, y {before.at[moved, 'y']}"
    card = next(m for m in texts(at.markdown) if where in m)
    assert "label is wrong" in card
    at.button_group(key="gallery_mode").set_value("Review queue").run()
    assert not at.exception
    assert not any(where in m for m in texts(at.markdown))  # reviewed: not in the queue

    # Patient viewer: the reviewer-mark overlay marks the moved patch's cell.
    at = start_app(monkeypatch, runs, "views/patient.py", patient=patient)
    at.button_group(key="overlays").set_value(["Reviews"]).run()
    assert not at.exception
    grid = heatmap(at, "Reviews")
    gy, gx = slides.cell_index([before.at[moved, "x"]], [before.at[moved, "y"]])
    assert grid[gy[0], gx[0]] == 1.0  # REVIEW_COLOURS order: agree 0, label_wrong 1, unsure 2
    assert np.count_nonzero(~np.isnan(grid)) == int((after.loc[[new_row[moved], new_row[last]], "patient_id"]
                                                     == patient).sum())
    assert tree_checksums(run_dir)[store.REVIEWS] == reviews_file  # read, never rewritten


# --------------------------------------------------------------------------- 13: corrupt artifacts
@pytest.mark.parametrize("name, damage", [
    (store.MANIFEST, lambda p: p.write_bytes(b"not parquet at all" * 50)),
    (store.MANIFEST, lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),  # truncated copy
    (store.SCORES, lambda p: p.write_bytes(b"")),
    (store.SCORES, lambda p: pd.DataFrame({"score": [0.1]}).to_parquet(p)),  # wrong columns
    (store.SPLIT, lambda p: p.write_text("[1, 2]")),
    (store.RUN_META, lambda p: p.write_bytes(b"\xff\xfe{garbage")),
])
def test_a_corrupt_artifact_is_an_artifact_error_naming_the_file_and_the_fix(tmp_path, tiny_run, name, damage):
    run_dir = copy_run(tiny_run, tmp_path, "damaged")
    damage(run_dir / name)
    with pytest.raises(store.ArtifactError) as exc:
        store.load_run(run_dir)
    message = str(exc.value)
    assert f"{run_dir / name} " in message and "move it aside and re-run" in message
    assert "Traceback" not in message and message.count(str(run_dir / name)) == 1


@pytest.mark.parametrize("name", [store.MANIFEST, store.SCORES, store.RUN_META])
def test_a_broken_newest_run_never_opens_by_default(monkeypatch, tmp_path, tiny_run, name):
    runs = tmp_path / "runs"
    good = copy_run(tiny_run, runs, "good")
    broken = copy_run(tiny_run, runs, "broken-newest")
    (broken / name).write_bytes(b"\x00garbage, not what the pipeline wrote" * 40)
    later = time.time() + 60
    os.utime(broken / store.RUN_META, (later, later))  # the newest run
    assert store.list_runs(runs)[0] == broken
    untouched = tree_checksums(runs)

    at = start_app(monkeypatch, runs)
    assert not at.exception
    assert at.session_state.run == good.name  # the newest run that loads
    assert any(m.label == "F1" for m in at.metric)
    picker = at.sidebar.selectbox(key="w_run")
    assert [label.startswith("broken-newest") for label in picker.options] == [True, False]  # kept, newest first
    assert ["cannot be opened" in label for label in picker.options] == [True, False]  # and marked

    picker.set_value(broken.name).run()
    assert not at.exception
    errors = texts(at.error)
    assert any(f"runs/broken-newest/{name}" in e and "move it aside" in e for e in errors), errors
    assert not any(str(tmp_path) in e for e in errors)  # no server paths in the browser
    assert not at.metric  # nothing of the broken run is shown as if it were fine
    at.sidebar.selectbox(key="w_run").set_value(good.name).run()
    assert not at.exception and any(m.label == "F1" for m in at.metric)  # the other run still works
    after = tree_checksums(runs)  # the overview reads the reviews (progress), which may create an empty store
    assert {k: after.get(k) for k in untouched} == untouched


def test_a_garbage_reviews_file_leaves_every_page_working(monkeypatch, tmp_path, tiny_run):
    runs = tmp_path / "runs"
    run_dir = copy_run(tiny_run, runs, "bad-reviews")
    garbage = b"this is not an SQLite database, but someone's file\n" * 100
    (run_dir / store.REVIEWS).write_bytes(garbage)
    untouched = tree_checksums(run_dir)
    patient = store.load_run(run_dir).table["patient_id"].iloc[0]

    def reviews_error(at):
        return [e for e in texts(at.error) if "bad-reviews/reviews.sqlite" in e and "move the file aside" in e]

    for page in ("views/errors.py", "views/patient.py", "views/inspector.py", "views/review_log.py"):
        at = start_app(monkeypatch, runs, page, split="all", patient=patient)
        assert not at.exception, (page, at.exception)
        assert len(reviews_error(at)) == 1, (page, texts(at.error))
        assert not any(str(tmp_path) in e for e in texts(at.error))
        if page == "views/errors.py":  # the gallery itself is there
            assert any("patches, most confident error first" in c for c in texts(at.caption))
        if page == "views/patient.py":  # metrics and the slide
            assert {"Sensitivity", "F1"} <= {m.label for m in at.metric} and at.get("plotly_chart")
        if page == "views/inspector.py":  # the patch, with the review form kept but saving off
            assert any(h.startswith("Patch x") for h in texts(at.subheader))
            assert at.button(key="save_review").disabled
    assert tree_checksums(run_dir) == untouched  # the user's file is never changed or deleted

    # The fix the message gives: move it aside; the app starts a new reviews file and works again.
    os.replace(run_dir / store.REVIEWS, run_dir / "reviews.sqlite.broken")
    at = start_app(monkeypatch, runs, "views/review_log.py")
    assert not at.exception and not at.error
    assert any("No reviews yet" in i for i in texts(at.info))
    assert (run_dir / "reviews.sqlite.broken").read_bytes() == garbage


def _garbage_bytes(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, but someone's file\n" * 100)


def _schema_not_a_number(path: Path) -> None:
    import contextlib
    import sqlite3

    ReviewStore(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:  # closed: the WAL folded into the file
        conn.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
        conn.commit()


@pytest.mark.parametrize("breaks, pages", [
    (_garbage_bytes, ("views/errors.py", "views/patient.py", "views/inspector.py", "views/review_log.py")),
    (_schema_not_a_number, ("views/inspector.py", "views/review_log.py")),
])
def test_a_garbage_cohort_review_store_leaves_every_page_working(monkeypatch, tmp_path, tiny_run, breaks, pages):
    from pipeline.reviews import cohort_store_path

    runs = tmp_path / "runs"
    run_dir = copy_run(tiny_run, runs, "good-run")
    path = cohort_store_path(run_dir)  # runs/_cohorts/<cohort>/reviews.sqlite, shared by the cohort's runs
    path.parent.mkdir(parents=True)
    breaks(path)
    assert [p.name for p in path.parent.iterdir()] == [store.REVIEWS]  # no -wal or -shm beside it
    untouched = tree_checksums(path.parent)
    shown = f"_cohorts/{path.parent.name}/{store.REVIEWS}"
    patient = store.load_run(run_dir).table["patient_id"].iloc[0]
    for page in pages:
        at = start_app(monkeypatch, runs, page, split="all", patient=patient)
        assert not at.exception, (page, at.exception)
        errors = [e for e in texts(at.error) if shown in e and "move the file aside" in e]
        assert len(errors) == 1, (page, texts(at.error))
        assert not any(str(tmp_path) in e for e in texts(at.error))  # no server paths in the browser
        if page == "views/patient.py":
            assert {"Sensitivity", "F1"} <= {m.label for m in at.metric}
        if page == "views/inspector.py":
            assert any(h.startswith("Patch x") for h in texts(at.subheader)) and at.button(key="save_review").disabled
    assert tree_checksums(path.parent) == untouched  # the cohort store is never changed or deleted


@pytest.mark.parametrize("breaks", [_garbage_bytes, _schema_not_a_number])
def test_reviews_commands_name_a_garbage_cohort_store_and_the_fix(tmp_path, tiny_run, capsys, breaks):
    from pipeline.reviews import cohort_store_path
    from tests.faults.conftest import run_cli

    run_dir = copy_run(tiny_run, tmp_path / "runs", "good-run")
    path = cohort_store_path(run_dir)
    path.parent.mkdir(parents=True)
    breaks(path)
    before = path.read_bytes()
    row = store.load_run(run_dir).table.iloc[0]
    code, _, err = run_cli(capsys, "reviews", "add", "--run", run_dir, "--patient", row["patient_id"], "--x",
                           int(row["x"]), "--y", int(row["y"]), "--verdict", "agree", "--reviewer", "dr_a")
    assert code == 2 and str(path) in err and "move the file aside" in err and "Traceback" not in err
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- 14: URL parameters
@pytest.mark.parametrize("patch, says", [
    ("-1", "is not a patch number"),
    ("²", "is not a patch number"),  # '²'.isdigit() is True, int('²') raises
    ("3x", "is not a patch number"),
    ("999999999", "is not in run"),
    ("other", "is a patch of patient"),
])
def test_a_bad_patch_in_the_link_is_refused_with_a_message(monkeypatch, tiny_run, patch, says):
    table = store.load_run(tiny_run).table
    patient = table["patient_id"].iloc[0]
    if patch == "other":
        patch = str(int(np.flatnonzero(table["patient_id"].to_numpy() != patient)[0]))
    at = start_app(monkeypatch, tiny_run.parent, patient=patient, patch=patch)  # the link's first page view
    assert not at.exception
    warnings = texts(at.sidebar.warning)
    assert any(says in w and "patch" in w for w in warnings), warnings
    at.switch_page("views/inspector.py").run()
    assert not at.exception
    # The inspector shows one of the linked patient's own patches, never the bad one.
    assert at.session_state.patient == patient and str(at.session_state.patch) != patch
    assert table.at[at.session_state.patch, "patient_id"] == patient


# --------------------------------------------------------------------------- 15: CSV exports
def test_csv_bytes_neutralises_formulas_in_text_cells_only():
    from app import exports

    df = pd.DataFrame({
        "note": ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "a=b", None],
        "n": [-1, 2, -3, 4, 5, 6, 7, 8, 9],
        "p": [-0.5] * 9,
        "pid": pd.Categorical(["-7"] * 9),
    })
    back = pd.read_csv(io.BytesIO(exports.csv_bytes(df)), dtype={"note": str, "pid": str}, keep_default_na=False)
    assert back["note"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx",
                                     "plain", "a=b", ""]
    assert back["n"].tolist() == [-1, 2, -3, 4, 5, 6, 7, 8, 9] and back["p"].tolist() == [-0.5] * 9  # numbers
    assert back["pid"].tolist() == ["'-7"] * 9  # text, even when it looks like a number


def test_the_review_export_neutralises_a_formula_note(tmp_path):
    from app import exports

    rs = ReviewStore(tmp_path / store.REVIEWS)
    rs.add(row=0, patient_id="9", x=1, y=1, verdict="agree", note="=cmd|' /C calc'!A0", reviewer="@dr")
    table = pd.DataFrame({"patient_id": ["9"], "x": [1], "y": [1]})
    for data in (rs.to_csv_bytes(), exports.csv_bytes(rs.resolved(table).export_frame())):
        back = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        assert back.loc[0, "note"] == "'=cmd|' /C calc'!A0" and back.loc[0, "reviewer"] == "'@dr"
        assert back.loc[0, "x"] == "1"
    assert rs.all().loc[0, "note"] == "=cmd|' /C calc'!A0"  # stored as typed; only the export is escaped


def test_every_csv_download_in_the_app_goes_through_csv_bytes():
    """Each st.download_button offering CSV gets its data from app.exports.csv_bytes (one mechanism)."""
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "download_button"):
                continue
            mime = next((k.value for k in node.keywords if k.arg == "mime"), None)
            if isinstance(mime, ast.Constant) and mime.value == "text/csv":
                data = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "data")
                found.append((path.name, "exports.csv_bytes(" in ast.unparse(data)))
    assert len(found) >= 3, found  # metrics, per-patient table, reviews
    assert all(ok for _, ok in found), found


# --------------------------------------------------------------------------- 16: bound to this machine
def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def test_the_launcher_binds_to_localhost_from_any_folder(tmp_path):
    assert not (tmp_path / ".streamlit").exists()  # no config file to find in the folder it starts in
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "IDC_ADDRESS"}
    env["IDC_RUNS"] = str(tmp_path / "runs")
    server = subprocess.Popen([sys.executable, str(ROOT / "app"), "--server.port", str(port),
                               "--server.headless", "true"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, timeout_s=90)
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        server.terminate()
        try:
            output = server.communicate(timeout=20)[0].decode()
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate(timeout=20)[0].decode()
    assert "Network URL" not in output and f"127.0.0.1:{port}" in output


def test_the_launcher_command_carries_the_project_config_and_idc_address():
    from app import __main__ as launcher

    default = launcher.command(["--server.port", "8600"], {})
    assert default[:5] == [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py")]
    assert "--server.address=127.0.0.1" in default and default[-2:] == ["--server.port", "8600"]
    assert "--client.disableDataExport=true" in default and "--browser.gatherUsageStats=false" in default
    assert "--theme.primaryColor=#0072B2" in default
    assert not any(flag.startswith("--server.address=") and flag != "--server.address=127.0.0.1" for flag in default)
    opened = launcher.command([], {"IDC_ADDRESS": "0.0.0.0"})
    assert [f for f in opened if f.startswith("--server.address=")] == ["--server.address=0.0.0.0"]


def test_a_server_listening_beyond_this_machine_says_so(monkeypatch, tmp_path):
    from streamlit import config

    monkeypatch.delenv("IDC_ADDRESS", raising=False)
    before = {key: config.get_option(key) for key in ("server.address", "client.disableDataExport")}
    # What `streamlit run app/main.py` gets when started outside the repository root.
    config.set_option("server.address", None)
    config.set_option("client.disableDataExport", False)
    try:
        at = start_app(monkeypatch, tmp_path)
        exported = config.get_option("client.disableDataExport")
    finally:
        for key, value in before.items():
            config.set_option(key, value)
    assert not at.exception
    assert any("every network interface" in w and "IDC_ADDRESS=0.0.0.0 python -m app" in w for w in texts(at.warning))
    assert exported is True  # the app turns the tables' own (unescaped) CSV export off itself
