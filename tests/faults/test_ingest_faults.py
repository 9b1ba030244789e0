"""Ingest faults: the archive's two copies of a patient, killed ingests, link loops, unlabelled
layouts, 16-bit PNGs and non-ASCII digits. Each builds a small hand-made folder of PNGs and asserts
what the user sees (the report row or the message, naming the file and the fix) and what is kept."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from pipeline import ingest, store
from pipeline.names import BadPatchName, parse_patch_name
from tests.faults.conftest import run_cli, tree_checksums

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = "<data>/<pid>/0|1/<pid>_idx5_x<X>_y<Y>_class<C>.png"  # what the user is told to make


def _png(path: Path, w=50, h=50, seed=0, text: str | None = None) -> np.ndarray:
    """An RGB PNG of random pixels; ``text`` adds a tEXt chunk (same pixels and size, other bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    info = None
    if text is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("note", text)
    Image.fromarray(arr, "RGB").save(path, pnginfo=info)
    return arr


def _name(pid: str, x: int, y: int, label: int) -> str:
    return f"{pid}_idx5_x{x}_y{y}_class{label}.png"


def _patch(root: Path, pid: str, x: int, y: int, label: int, **kw) -> np.ndarray:
    return _png(root / pid / str(label) / _name(pid, x, y, label), **kw)


def _reasons(run: Path) -> dict[str, str]:
    report = store.read_ingest_report(run)
    return dict(zip(report["file"], report["reason"]))


# --------------------------------------------------------------------------- item 4: the archive's two copies
def test_archive_copies_are_merged_file_by_file_and_differing_copies_reported(tmp_path, monkeypatch):
    root = tmp_path / "download"
    arc = root / ingest.ARCHIVE_SUBDIR
    a = _patch(arc, "400", 1, 1, 0, seed=1)
    _patch(root, "400", 1, 1, 0, seed=1)                      # identical in both copies: read once
    b = _patch(arc, "400", 51, 1, 0, seed=2)                  # only in the archive's copy
    c = _patch(root, "400", 101, 1, 1, seed=3)                # only in the other copy: was dropped
    d = _patch(arc, "400", 151, 1, 1, seed=4, text="a")
    _patch(root, "400", 151, 1, 1, seed=4, text="b")          # same size, other bytes
    e = _patch(arc, "400", 201, 1, 0, seed=5)
    _patch(root, "400", 201, 1, 0, seed=6)                    # other pixels, other size
    f = _patch(root, "401", 1, 1, 1, seed=7)                  # a patient only outside the archive
    assert (arc / "400/1" / _name("400", 151, 1, 1)).stat().st_size == (root / "400/1" / _name("400", 151, 1, 1)).stat().st_size
    before = tree_checksums(root)

    monkeypatch.setattr(ingest, "CHUNK", 2)  # several chunks, so two worker processes do the comparing
    run = tmp_path / "run"
    info = ingest.ingest(root, run, workers=2, progress=False)

    m = store.read_manifest(run)
    arc_rel = ingest.ARCHIVE_SUBDIR
    assert sorted(m["source"]) == sorted([
        f"{arc_rel}/400/0/{_name('400', 1, 1, 0)}", f"{arc_rel}/400/0/{_name('400', 51, 1, 0)}",
        f"400/1/{_name('400', 101, 1, 1)}", f"{arc_rel}/400/1/{_name('400', 151, 1, 1)}",
        f"{arc_rel}/400/0/{_name('400', 201, 1, 0)}", f"401/1/{_name('401', 1, 1, 1)}"])
    patches = store.read_patches(run)
    by_xy = {(r.patient_id, r.x): i for i, r in enumerate(m.itertuples())}
    for (pid, x), want in {("400", 1): a, ("400", 51): b, ("400", 101): c, ("400", 151): d,
                           ("400", 201): e, ("401", 1): f}.items():
        np.testing.assert_array_equal(patches[by_xy[(pid, x)]], want)  # differing: the archive's copy

    reasons = _reasons(run)
    assert set(reasons) == {f"400/1/{_name('400', 151, 1, 1)}", f"400/0/{_name('400', 201, 1, 0)}"}
    for rel, reason in reasons.items():
        kept = f"{arc_rel}/{rel}"
        assert reason.startswith(f"differs from {kept}") and f"copy under {arc_rel}/ is the one read" in reason
    assert "same size, different content" in reasons[f"400/1/{_name('400', 151, 1, 1)}"]
    assert (info["duplicate_patient_copies"], info["duplicate_files_read_once"], info["differing_copies"]) == (1, 1, 2)
    assert "2 files differ between the two copies" in ingest.summarise(info, run)
    assert tree_checksums(root) == before

    # the second copy is an input too: changing it re-runs ingest, and the report follows
    _patch(root, "400", 1, 1, 0, seed=1, text="edited")
    again = ingest.ingest(root, run, workers=1, progress=False)
    assert not again.get("skipped") and again["differing_copies"] == 3
    assert _reasons(run)[f"400/0/{_name('400', 1, 1, 0)}"].startswith("differs from")


# --------------------------------------------------------------------------- item 7: killed ingest
def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a live process, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return int(fields[1]), fields[0], int(fields[19])


def _descendants(pid: int) -> dict[int, int]:
    """pid -> start time of every process below ``pid`` (scanning /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _proc_stat(int(entry))):
            children.setdefault(st[0], []).append(int(entry))
            starts[int(entry)] = st[2]
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def big_root(tmp_path_factory) -> Path:
    """12,288 small patches (12 chunks): a few seconds of decoding for two workers."""
    root = tmp_path_factory.mktemp("big") / "data"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    for p in range(12):
        pid = str(1000 + p)
        folder = root / pid / "0"
        folder.mkdir(parents=True)
        for i in range(1024):
            (folder / _name(pid, 1 + 50 * (i % 32), 1 + 50 * (i // 32), 0)).write_bytes(data)
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes through /proc")
@pytest.mark.parametrize("mechanism", ["prctl", "polling"])
def test_decode_workers_exit_when_the_ingest_is_killed(big_root, tmp_path, mechanism):
    # "polling": no prctl (as on other systems), so the workers' parent-watching thread must end them
    script = (
        "import sys\n"
        "from pipeline import ingest\n"
        "if sys.argv[3] == 'polling':\n"
        "    class NoLibc:\n"
        "        def __init__(self, *a, **k): raise OSError('no prctl here')\n"
        "    ingest.ctypes = type('ctypes', (), {'CDLL': NoLibc})\n"
        "ingest.ingest(sys.argv[1], sys.argv[2], workers=2, progress=False)\n"
    )
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(big_root), str(run), mechanism], cwd=ROOT, env=env)
    workers: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2:
            assert proc.poll() is None, "the ingest ended before its two decoding workers were seen"
            assert time.monotonic() < deadline, "no decoding workers appeared within 60 s"
            time.sleep(0.02)
            workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # like the OOM killer: no cleanup runs in the parent
        assert proc.wait(10) == -signal.SIGKILL
        assert not (run / store.MANIFEST).exists()  # it was killed mid-ingest, not after it

        def alive() -> list[int]:
            # a zombie (state Z) has exited; a recycled pid has another start time
            return [p for p, start in workers.items()
                    if (st := _proc_stat(p)) and st[1] != "Z" and st[2] == start]

        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive() == [], f"decoding workers {alive()} outlived the killed ingest"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p, start in workers.items():  # only the processes this test started
            if (st := _proc_stat(p)) and st[2] == start:
                os.kill(p, signal.SIGKILL)


# --------------------------------------------------------------------------- item 8: link loops, broken links
def test_link_loops_and_broken_links_are_listed_and_the_ingest_goes_on(tmp_path, monkeypatch):
    root = tmp_path / "data"
    good = [_patch(root, "100", 1 + 50 * i, 1, 0, seed=i) for i in range(3)]
    os.symlink("300", root / "300")                                     # a patient folder that is a loop
    os.symlink(ingest.ARCHIVE_SUBDIR, root / ingest.ARCHIVE_SUBDIR)     # the archive folder, a loop
    os.symlink("1", root / "100" / "1")                                 # a label folder that is a loop
    loop_file = root / "100" / "0" / _name("100", 151, 1, 0)
    os.symlink(loop_file.name, loop_file)                               # a patch that is a loop
    broken = root / "100" / "0" / _name("100", 201, 1, 0)
    os.symlink(tmp_path / "gone.png", broken)                           # a patch whose target is gone
    (root / "200" / "0").mkdir(parents=True)
    _patch(root, "200", 1, 1, 0, seed=9)
    real_scandir = os.scandir

    def scandir(path="."):  # tests run as root, where chmod 000 blocks nothing: refuse like the kernel
        if str(path).endswith(os.path.join("200", "0")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    run = tmp_path / "run"
    info = ingest.ingest(root, run, workers=1, progress=False)

    assert info["n_patches"] == 3
    np.testing.assert_array_equal(store.read_patches(run)[0], good[0])
    reasons = _reasons(run)
    for rel in ("300", ingest.ARCHIVE_SUBDIR, "100/1", f"100/0/{loop_file.name}"):
        assert "symbolic link loop" in reasons[rel], rel
    assert "broken symbolic link" in reasons[f"100/0/{broken.name}"] and "gone.png" in reasons[f"100/0/{broken.name}"]
    assert "folder cannot be read (Permission denied)" in reasons["200/0/"]


def test_linked_patient_folder_and_patch_outside_the_root_are_read_normally(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    folder = _patch(elsewhere, "700", 1, 1, 1, seed=1)
    single = _png(elsewhere / "loose.png", seed=2)
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(elsewhere / "700", root / "700")
    (root / "701" / "0").mkdir(parents=True)
    os.symlink(elsewhere / "loose.png", root / "701" / "0" / _name("701", 1, 1, 0))
    run = tmp_path / "run"
    ingest.ingest(root, run, workers=1, progress=False)
    m, p = store.read_manifest(run), store.read_patches(run)
    assert m["source"].tolist() == [f"700/1/{_name('700', 1, 1, 1)}", f"701/0/{_name('701', 1, 1, 0)}"]
    np.testing.assert_array_equal(p[0], folder)
    np.testing.assert_array_equal(p[1], single)
    assert store.read_ingest_report(run).empty


# --------------------------------------------------------------------------- item 9: unlabelled layouts
def _flat(root: Path) -> None:
    for i in range(3):
        _png(root / _name("100", 1 + 50 * i, 1, i % 2), seed=i)


def _no_label_folders(root: Path) -> None:
    for i in range(3):
        _png(root / "100" / _name("100", 1 + 50 * i, 1, i % 2), seed=i)


def _other_label_folders(root: Path) -> None:
    _png(root / "100" / "neg" / _name("100", 1, 1, 0))
    _png(root / "100" / "pos" / _name("100", 51, 1, 1))


@pytest.mark.parametrize("make, folder, found", [
    (_flat, "", "no patient folders; it holds 3 PNG files directly in it"),
    (_no_label_folders, "100", "no 0/ or 1/ label folder; it holds 3 PNG files directly in it"),
    (_other_label_folders, "100", "no 0/ or 1/ label folder; it holds the folders neg/, pos/"),
])
def test_unlabelled_layout_says_what_was_expected_and_where(capsys, tmp_path, make, folder, found):
    data, run = tmp_path / "data", tmp_path / "run"
    make(data)
    before = tree_checksums(data)
    code, out, err = run_cli(capsys, "run", "--data", data, "--out", run)
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: no readable patches under {data}")
    assert f"{data / folder if folder else data}: {found}" in err
    assert LAYOUT in err and f"<data> is {data}" in err
    assert f"listed with its reason in {run / store.INGEST_REPORT}" in err
    assert "see the problems listed above" not in err
    report = store.read_ingest_report(run)
    assert len(report) >= 3 and report["reason"].str.len().min() > 20  # every file, with a reason
    assert tree_checksums(data) == before


def test_nothing_decodable_raises_after_writing_the_report(tmp_path):
    data = tmp_path / "data"
    (data / "100" / "0").mkdir(parents=True)
    (data / "100" / "0" / _name("100", 1, 1, 0)).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (data / "100" / "0" / _name("100", 51, 1, 0)).write_bytes(b"")
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="All 2 patch files found in that layout were skipped") as exc:
        ingest.ingest(data, run, workers=1, progress=False)
    assert f"{data / '100/0' / _name('100', 1, 1, 0)}: corrupt or truncated PNG" in str(exc.value)
    assert len(store.read_ingest_report(run)) == 2
    assert not (run / store.MANIFEST).exists() and not (run / ingest.PARTIAL).exists()


def test_a_failed_ingest_leaves_an_earlier_finished_one_in_the_run_folder_as_it_was(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    _patch(data, "100", 1, 1, 0)
    ingest.ingest(data, run, workers=1, progress=False)
    before = tree_checksums(run)
    (data / "100" / "0" / _name("100", 1, 1, 0)).rename(data / "100" / "stray.png")
    with pytest.raises(FileNotFoundError) as exc:  # the command line's "error: ..." and exit 2
        ingest.ingest(data, run, workers=1, progress=False)
    assert "still holds its earlier ingest, left as it was" in str(exc.value) and "100/stray.png: " in str(exc.value)
    assert tree_checksums(run) == before  # its report still describes its manifest


# --------------------------------------------------------------------------- item 12: 16-bit, non-ASCII digits
def test_16_bit_png_is_rejected_not_read_as_8_bit(tmp_path):
    cv2 = pytest.importorskip("cv2")
    root = tmp_path / "data"
    _patch(root, "100", 1, 1, 0)
    deep = root / "100" / "0" / _name("100", 51, 1, 0)
    arr16 = (np.random.default_rng(0).integers(0, 65536, (50, 50, 3))).astype(np.uint16)
    assert cv2.imwrite(str(deep), arr16)
    data = deep.read_bytes()
    assert (data[24], data[25]) == (16, 2)  # IHDR: a real 16-bit RGB PNG, which Pillow opens as mode "RGB"
    assert Image.open(deep).mode == "RGB"
    run = tmp_path / "run"
    info = ingest.ingest(root, run, workers=1, progress=False)
    assert info["n_patches"] == 1
    reason = _reasons(run)[f"100/0/{deep.name}"]
    assert "16-bit PNG" in reason and "re-export it as 8-bit RGB" in reason
    with pytest.raises(ValueError, match="16-bit PNG"):  # the Pillow path alone (no OpenCV) rejects it too
        ingest._decode(data, None)


@pytest.mark.parametrize("name", [
    "10253_idx5_x\uff19\uff16\uff10\uff11_y1_class0.png",   # full-width digits: int() reads 9601
    "10253_idx5_x1_y\u0661_class0.png",                      # Arabic-Indic one
    "\uff11\uff10\uff12\uff15\uff13_idx5_x1_y1_class0.png",  # full-width patient id
    "10253_idx5_x1_y1_class0.png\n",                         # "$" matches before a final newline
])
def test_non_ascii_digits_and_trailing_newlines_are_not_names(name):
    with pytest.raises(BadPatchName, match="rename the file"):
        parse_patch_name(name)


def test_non_ascii_digit_names_and_folders_are_listed_with_a_reason(tmp_path):
    root = tmp_path / "data"
    _patch(root, "100", 1, 1, 0)
    _png(root / "100" / "0" / "100_idx5_x\uff19\uff16\uff10\uff11_y1_class0.png")
    _png(root / "\uff11\uff10\uff10" / "0" / "\uff11\uff10\uff10_idx5_x1_y1_class0.png")  # full-width 100
    _png(root / "\u00b2" / "0" / "\u00b2_idx5_x1_y1_class0.png")  # superscript two: str.isdigit() is True
    assert "\u00b2".isdigit()  # so str.isdigit() alone would take it for a patient id
    run = tmp_path / "run"
    info = ingest.ingest(root, run, workers=1, progress=False)
    assert info["n_patches"] == 1 and info["n_patients"] == 1
    reasons = _reasons(run)
    assert "ASCII digits 0-9" in reasons["100/0/100_idx5_x\uff19\uff16\uff10\uff11_y1_class0.png"]
    for folder in ("\uff11\uff10\uff10", "\u00b2"):
        assert reasons[folder].startswith("not a patient folder") and "ASCII digits" in reasons[folder]


def test_names_that_are_not_utf8_are_listed_escaped_and_the_ingest_goes_on(tmp_path):
    # Linux names are bytes: b"\xff" is no UTF-8, so Python holds it as a surrogate, which no CSV can take.
    root = tmp_path / "data"
    good = _patch(root, "100", 1, 1, 0)
    raw = os.fsencode(root)
    _png(Path(os.fsdecode(raw + b"/100/0/\xff99.png")))           # a file
    _png(Path(os.fsdecode(raw + b"/\xff99/0/" + _name("100", 51, 1, 0).encode())))  # a patient folder
    _png(Path(os.fsdecode(raw + b"/100/0/100_idx5_x1_y\xe9_class0.png")))    # Latin-1 in a patch name
    before = tree_checksums(root)
    run = tmp_path / "run"
    info = ingest.ingest(root, run, workers=1, progress=False)
    assert info["n_patches"] == 1
    np.testing.assert_array_equal(store.read_patches(run)[0], good)
    reasons = _reasons(run)  # the report is UTF-8, each such name written with its bytes escaped
    for shown in ("100/0/\\xff99.png", "\\xff99", "100/0/100_idx5_x1_y\\xe9_class0.png"):
        assert shown in reasons and ingest.NOT_UTF8 in reasons[shown], (shown, reasons)
    assert "\\xff99" in ingest.summarise(info, run)
    assert tree_checksums(root) == before


def test_a_data_folder_of_names_that_are_not_utf8_alone_says_so(tmp_path):
    root = tmp_path / "data"
    _png(Path(os.fsdecode(os.fsencode(root) + b"/\xff99/0/\xff99_idx5_x1_y1_class0.png")))
    run = tmp_path / "run"
    with pytest.raises(ingest.DatasetLayoutError, match="no readable patches") as exc:
        ingest.ingest(root, run, workers=1, progress=False)
    str(exc.value).encode("utf-8")  # printable as it is
    assert "\\xff99" in _reasons(run)


def test_the_ingest_report_is_formula_safe_in_a_spreadsheet(tmp_path):
    from pipeline import ingest, store

    data = tmp_path / "data"
    (data / "10253" / "0").mkdir(parents=True)
    (data / "=HYPERLINK(1).png").write_bytes(b"not a png")  # at the top: its report cell starts with '='
    (data / "@SUM(1)").mkdir()
    (data / "10253" / "0" / "10253_idx5_x1_y1_class0.png").write_bytes(b"truncated")
    out = tmp_path / "run"
    try:
        ingest.ingest(data, out)
    except Exception:  # nothing decodable: the report is still written first
        pass
    text = (out / store.INGEST_REPORT).read_text()
    cells = [line.split(",")[0] for line in text.splitlines()[1:]]
    assert "'=HYPERLINK(1).png" in cells and any(c.startswith("'@SUM(1)") for c in cells), text
    assert not any(c.startswith(("=", "@", "+", "-")) for c in cells)
    assert len(store.read_ingest_report(out)) == len(cells)
