"""Ingest: a dataset root as users have it -> manifest.parquet + packed patches.npy in a run folder.

Accepts the folder layouts users end up with after downloading the public dataset:
``ROOT/<pid>/<0|1>/*.png``, ``ROOT/IDC_regular_ps50_idx5/<pid>/...``, or the archive as extracted,
which holds every patient twice (under ROOT and under ROOT/IDC_regular_ps50_idx5). The two copies
are merged file by file: a file both copies hold is read once (from IDC_regular_ps50_idx5/), a file
only one copy holds is read from that copy, and a file whose two copies differ is read from
IDC_regular_ps50_idx5/ and the other copy is listed as differing. One bad file or folder never
stops the run: it is skipped and listed, with the reason, in ingest_report.csv. Decoding runs in
parallel into a memory-mapped store, chunk by chunk, so an interrupted ingest resumes where it
stopped; the decoding processes exit with the ingest that started them, even if it is killed.
"""
from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import shutil
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pipeline import store
from pipeline.names import (ARCHIVE_SUBDIR, DATASET_MPP, EXPECTED_NAME, MASK_DIR, PATCH_SIZE, SYNTHETIC_MARKER,
                            BadPatchName, check_patch_location, is_patient_id, parse_patch_name)

CHUNK = 1024  # files per decoding task; also the unit of resume
PROGRESS = ".ingest_progress.json"
PROGRESS_FORMAT = 2  # per-file status (ok, width, height, reason, copy status); older records are not resumed
PARTIAL = ".patches.partial.npy"
EXPECTED_LAYOUT = f"<data>/<pid>/0|1/{EXPECTED_NAME.replace('<0|1>', '<C>')}"
LAYOUT_HELP = (f"{EXPECTED_LAYOUT}: one folder per patient, named by the patient id in ASCII digits, "
               f"holding the label folders 0/ (no IDC) and 1/ (IDC) of 50x50 RGB PNG patches "
               f"(or the archive as extracted, with the patient folders under <data>/{ARCHIVE_SUBDIR}/)")
COPY_DIFFERS = "differs"  # copy status from a decoding worker: the second copy's bytes are not the first's
COPY_UNREAD = "unread"  # the first copy could not be read, so the second was not compared


class DatasetLayoutError(FileNotFoundError):
    """No patch under the data folder is in the expected layout, or none could be read.

    The message names the folders, what was found in them, the expected layout and the report.
    A FileNotFoundError (what the command line reports as ``error: ...``, exit 2) since the
    patches the user pointed at were not found where they should be.
    """


@dataclass
class Scan:
    """What a dataset root holds: candidate patches (sorted) and files rejected before decoding."""

    # patient_id, x, y, label, source, path, size, mtime_ns; and copy, copy_source, copy_size,
    # copy_mtime_ns: the archive's second copy of the same file ("" / 0 when there is none), whose
    # bytes the decoding worker compares with the first's
    patches: pd.DataFrame
    problems: list[tuple[str, str]]
    duplicate_patients: int
    synthetic: dict | None
    # folder -> what it holds that does not fit the layout; shown when nothing at all is readable
    findings: list[tuple[str, str]] = field(default_factory=list)


def _join(rel: str, name: str) -> str:
    """Relative paths are built as strings (no Path per file: the full dataset has 277,524)."""
    return f"{rel}/{name}" if rel else name


def _entries(path: str, rel: str, problems: list) -> list[os.DirEntry]:
    """A folder's entries sorted by name; a folder that cannot be listed is reported, never fatal."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append((f"{rel or '.'}/", f"folder cannot be read ({_os_reason(exc)}); nothing in it was read: "
                                           f"fix its permissions or the link"))
        return []


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop: the link leads back to itself"
    return exc.strerror or str(exc) or type(exc).__name__


def _kind(entry: os.DirEntry) -> str:
    """'dir', 'file', or why the entry is neither (a broken link, a link loop, ...). Never raises.

    DirEntry.is_dir()/is_file() follow symbolic links (a linked patient folder or patch counts as
    what it points to, wherever that is) and raise for a link loop or an unreadable target. For
    entries that are not links they cost no system call (the type comes with the folder listing).
    """
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
        if entry.is_symlink():
            return f"broken symbolic link (its target {os.readlink(entry.path)!r} does not exist); fix or remove the link"
        return "not a regular file or folder (a device, pipe or socket)"
    except OSError as exc:
        return f"cannot be read ({_os_reason(exc)}); fix or remove it"


def _where(name: str) -> str:
    """Where a stray PNG belongs, if its name says so."""
    try:
        p = parse_patch_name(name)
    except BadPatchName:
        return "<pid>/0|1/"
    return f"{p.patient_id}/{p.label}/"


def _describe(pngs: list[str], n_other_files: int, dirs: list[str]) -> str:
    """A folder's unexpected contents in a few words, for the nothing-readable message."""
    parts = []
    if pngs:
        parts.append(f"{len(pngs)} PNG file{'s' * (len(pngs) != 1)} directly in it (e.g. {pngs[0]!r})")
    if n_other_files:
        parts.append(f"{n_other_files} other file{'s' * (n_other_files != 1)}")
    if dirs:
        shown = ", ".join(f"{d}/" for d in dirs[:5]) + (f" and {len(dirs) - 5} more" if len(dirs) > 5 else "")
        parts.append(f"the folder{'s' * (len(dirs) != 1)} {shown}")
    return ", ".join(parts) or "nothing"


def _patient_copies(root: Path, problems: list, findings: list) -> tuple[dict[str, list[tuple[str, str]]], int]:
    """Patient id -> its folders [(path, relative path)], the copy under IDC_regular_ps50_idx5/ first.

    Everything at the top that is not a patient folder is reported; an unreadable entry (a link loop,
    a broken link) is reported and skipped like any other stray entry.
    """
    top = _entries(str(root), "", problems)
    if problems:  # the data folder itself cannot be listed: there is nothing to go on with
        raise DatasetLayoutError(f"data folder {root}: {problems[0][1]}")
    bases = []
    for e in top:
        if e.name == ARCHIVE_SUBDIR:
            kind = _kind(e)
            if kind == "dir":
                bases.append((e.path, ARCHIVE_SUBDIR, _entries(e.path, ARCHIVE_SUBDIR, problems)))
            else:
                problems.append((ARCHIVE_SUBDIR, f"{kind}; the archive's patient folders in it were not read"))
    bases.append((str(root), "", top))
    copies: dict[str, list[tuple[str, str]]] = {}
    contents = []
    for base_path, base_rel, entries in bases:
        pngs, n_other, dirs = [], 0, []
        for e in entries:
            if e.name.startswith(".") or (not base_rel and e.name in (ARCHIVE_SUBDIR, MASK_DIR, SYNTHETIC_MARKER)):
                continue
            rel, kind = _join(base_rel, e.name), _kind(e)
            if kind == "dir" and is_patient_id(e.name):
                copies.setdefault(e.name, []).append((e.path, rel))
            elif kind == "dir":
                dirs.append(e.name)
                problems.append((rel, "not a patient folder: a patient folder is named by the patient id, in ASCII "
                                      "digits 0-9, and holds 0/ and 1/; ignored"))
            elif kind == "file" and e.name.lower().endswith(".png"):
                pngs.append(e.name)
                problems.append((rel, f"patch outside any patient folder; move it to {_where(e.name)} "
                                      f"({EXPECTED_LAYOUT}); ignored"))
            else:
                n_other += 1
                problems.append((rel, f"stray file, not a patient folder ({EXPECTED_LAYOUT}); ignored"
                                 if kind == "file" else f"{kind}; ignored"))
        contents.append((root / base_rel if base_rel else root, _describe(pngs, n_other, dirs)))
    if not copies:  # only then does the top level explain why nothing was read
        findings += [(str(folder), "no patient folders; it is empty" if what == "nothing" else
                      f"no patient folders; it holds {what}") for folder, what in contents]
    return copies, sum(len(c) > 1 for c in copies.values())


def scan_dataset(root: Path | str) -> Scan:
    """List every candidate patch under ``root`` with strict name checks; nothing is decoded yet.

    Costs one folder listing per folder and one stat per patch file; a file the archive holds
    twice costs one more stat (its size) and, if the sizes agree, one more read at decoding time.
    """
    root = Path(root)
    try:
        what = "" if stat.S_ISDIR(os.stat(root).st_mode) else "is not a folder"
    except OSError as exc:
        what = "does not exist" if exc.errno == errno.ENOENT else f"cannot be read ({_os_reason(exc)})"
    if what:
        raise FileNotFoundError(
            f"data folder {root} {what}; pass the folder that holds the patient folders "
            f"(or {ARCHIVE_SUBDIR}/) with --data"
        )
    problems: list[tuple[str, str]] = []
    findings: list[tuple[str, str]] = []
    copies, duplicates = _patient_copies(root, problems, findings)
    rows: list[tuple] = []
    first: dict[tuple[str, str], int] = {}  # (patient, file name) -> row: the copy that is read
    second: dict[int, tuple] = {}  # row -> the other copy of the same file, whose bytes must agree
    for pid in sorted(copies):
        for pdir, prel in copies[pid]:
            label_dirs, pngs, n_other, dirs = [], [], 0, []
            for le in _entries(pdir, prel, problems):
                lrel, kind = _join(prel, le.name), _kind(le)
                if kind == "dir":
                    label_dirs.append(le)
                    dirs.append(le.name)
                elif kind == "file" and le.name.lower().endswith(".png"):
                    pngs.append(le.name)
                    problems.append((lrel, f"patch directly in the patient folder; move it to its label folder "
                                           f"{prel}/0/ or {prel}/1/ (by the class<C> in its name); ignored"))
                else:
                    n_other += 1
                    problems.append((lrel, "stray file in a patient folder (expected 0/ and 1/); ignored"
                                     if kind == "file" else f"{kind}; ignored"))
            if not {"0", "1"} & set(dirs):
                what = _describe(pngs, n_other, dirs)
                problems.append((f"{prel}/", f"patient folder without a 0/ or 1/ label folder (it holds {what}); "
                                             f"expected {prel}/0|1/{pid}_idx5_x<X>_y<Y>_class<C>.png"))
                findings.append((str(root / prel), f"no 0/ or 1/ label folder; it holds {what}"))
            for le in label_dirs:
                lrel = _join(prel, le.name)
                n_files, n_patches, first_reason = 0, 0, ""
                for f in _entries(le.path, lrel, problems):
                    rel, kind = _join(lrel, f.name), _kind(f)
                    if kind != "file":
                        problems.append((rel, "a folder inside a label folder; ignored (patches sit directly in 0/ "
                                              "and 1/)" if kind == "dir" else f"{kind}; ignored"))
                        continue
                    n_files += 1
                    try:
                        name = parse_patch_name(f.name)
                        check_patch_location(name, pid, le.name)
                        st = f.stat()
                    except (BadPatchName, OSError) as exc:
                        reason = str(exc) if isinstance(exc, BadPatchName) else f"cannot be read ({_os_reason(exc)})"
                        problems.append((rel, reason))
                        first_reason = first_reason or reason
                        continue
                    n_patches += 1
                    key = (pid, f.name)
                    row = first.get(key)
                    if row is None:
                        first[key] = len(rows)
                        rows.append((pid, name.x, name.y, name.label, rel, f.path, st.st_size, st.st_mtime_ns))
                    elif st.st_size != rows[row][6]:  # different sizes: different files, no need to read them
                        problems.append((rel, _differs(rows[row][4], f"this copy {st.st_size:,} bytes, that one {rows[row][6]:,}")))
                    else:
                        second[row] = (f.path, rel, st.st_size, st.st_mtime_ns)
                if not n_files:
                    findings.append((str(root / lrel), "empty"))
                elif not n_patches:
                    findings.append((str(root / lrel), f"{n_files} file{'s' * (n_files != 1)}, none of them a patch "
                                                       f"of this folder (e.g. {first_reason})"))
    df = pd.DataFrame(rows, columns=["patient_id", "x", "y", "label", "source", "path", "size", "mtime_ns"])
    others = [second.get(i, ("", "", 0, 0)) for i in range(len(rows))]
    df["copy"] = [o[0] for o in others]
    df["copy_source"] = [o[1] for o in others]
    df["copy_size"] = np.array([o[2] for o in others], dtype=np.int64)
    df["copy_mtime_ns"] = np.array([o[3] for o in others], dtype=np.int64)
    df = df.sort_values(["patient_id", "y", "x"], kind="mergesort").reset_index(drop=True)
    dup = df.duplicated(["patient_id", "x", "y"], keep="first")
    for rel in df.loc[dup, "source"]:
        problems.append((rel, "another patch of this patient has the same coordinates; kept the first"))
    df = df.loc[~dup].reset_index(drop=True)
    marker = root / SYNTHETIC_MARKER
    synthetic = json.loads(marker.read_text()) if marker.exists() else None
    return Scan(df, problems, duplicates, synthetic, findings)


def _differs(kept: str, detail: str) -> str:
    return (f"differs from {kept} ({detail}): the archive holds every patient twice and the copy under "
            f"{ARCHIVE_SUBDIR}/ is the one read; compare the two and delete the wrong one")


def input_fingerprint(root: Path | str, scan: Scan) -> str:
    """Changes when any patch file (or the archive's second copy of one) is added, removed, resized or touched."""
    files = pd.util.hash_pandas_object(scan.patches[["source", "size", "mtime_ns"]], index=False)
    parts = [str(Path(root).resolve()), int(files.sum()), len(files), scan.problems]
    has_copy = scan.patches["copy"] != ""
    if has_copy.any():  # only then: a dataset without second copies keeps the fingerprint it always had
        copies = scan.patches.loc[has_copy, ["copy_source", "copy_size", "copy_mtime_ns"]]
        parts.append(int(pd.util.hash_pandas_object(copies, index=False).sum()))
    return store.fingerprint(*parts)


def _png_header(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from the IHDR chunk, which the PNG format requires to come first."""
    if len(data) > 26 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return data[24], data[25]
    return None


def _decode_with_pil(data: bytes) -> np.ndarray:
    """Decode one patch with Pillow, raising an error that says what is wrong with the file."""
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message would name the in-memory buffer, not the file
        raise OSError("no image format Pillow knows") from None
    with im:
        if im.format != "PNG":
            raise ValueError(f"not a PNG (format {im.format})")
        if im.mode != "RGB":
            raise ValueError(f"not an RGB image (mode {im.mode}); re-export it as 8-bit RGB")
        header = _png_header(data)
        if header is None:
            raise ValueError("corrupt PNG: its first chunk is not the IHDR header; re-download this file")
        if header[0] != 8:
            # Pillow opens a 16-bit RGB PNG as mode "RGB", silently keeping the top 8 bits of each
            # channel: a 16-bit export (from a scanner or another tool) is not the dataset's data.
            raise ValueError(f"{header[0]}-bit PNG; patches are 8 bits per channel: re-export it as 8-bit RGB")
        w, h = im.size
        if w > PATCH_SIZE or h > PATCH_SIZE:
            raise ValueError(f"oversized image {w}x{h}; patches are at most {PATCH_SIZE}x{PATCH_SIZE}")
        im.load()
        return np.asarray(im)


def _decode(data: bytes, cv2) -> np.ndarray:
    """OpenCV's decoder (about 1.6x faster than Pillow) for files whose PNG header says 8-bit RGB.

    The header check (IHDR: bit depth 8, colour type 2) keeps the rules identical to the Pillow
    path, which OpenCV would not (it converts palette images silently, and keeps 16 bits). Anything
    else, truncated files included, goes through Pillow so the report gets its exact reason.
    """
    if cv2 is not None and _png_header(data) == (8, 2):
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.ndim == 3 and arr.shape[0] <= PATCH_SIZE and arr.shape[1] <= PATCH_SIZE:
            return arr[:, :, ::-1]  # OpenCV gives BGR
    return _decode_with_pil(data)


def _compare_copy(data: bytes | None, copy: str) -> str:
    """The archive's second copy of a file against the bytes of the first: '' (the same), or why not."""
    if data is None:
        return COPY_UNREAD
    try:
        with open(copy, "rb") as fh:
            other = fh.read()
    except OSError as exc:
        return f"cannot be read to compare it with the copy that was read ({_os_reason(exc)})"
    return "" if other == data else COPY_DIFFERS


def _decode_chunk(args) -> tuple[int, list[tuple[bool, int, int, str, str]]]:
    """Decode one chunk of PNGs straight into the shared store; return (chunk, per-file status).

    A file's status is (decoded, width, height, why not, copy status); the copy status compares
    the archive's second copy of the file, if any, with the bytes just read (read once, used twice).
    """
    chunk_id, start, paths, copies, store_path = args
    try:
        import cv2

        cv2.setNumThreads(1)  # parallelism comes from the worker processes
    except ImportError:
        cv2 = None
    out = store.open_patch_store(store_path, mode="r+")
    status = []
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            data = None
            failed = f"cannot be read ({_os_reason(exc)}); check the file and its permissions"
        copy_status = _compare_copy(data, copies[i]) if copies[i] else ""
        if data is None:
            status.append((False, 0, 0, failed, copy_status))
            continue
        try:
            arr = _decode(data, cv2)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is one bad file, never fatal
            reason = str(exc) or type(exc).__name__
            if "truncated" in reason.lower() or isinstance(exc, (OSError, SyntaxError)):
                reason = f"corrupt or truncated PNG ({reason}); re-download this file"
            status.append((False, 0, 0, reason, copy_status))
            continue
        h, w = arr.shape[:2]
        row = out[start + i]
        row[...] = store.PAD_VALUE
        row[:h, :w] = arr
        status.append((True, w, h, "", copy_status))
    out.flush()
    del out
    return chunk_id, status


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent(ingest_pid: int) -> None:
    """Pool initializer: a decoding worker exits when the process that started it dies.

    Without it, killing the ingest (kill -9, the OOM killer, a job scheduler's SIGKILL) leaves the
    workers blocked on their task queue for ever, holding memory and the half-written store. On
    Linux the kernel kills the worker with its parent (PR_SET_PDEATHSIG); elsewhere, and as a
    fallback, a thread checks every half second whether the worker has been orphaned.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the thread below still ends the worker
    parent = os.getppid()  # the ingest itself (fork), or the forkserver that dies with it
    try:
        os.kill(ingest_pid, 0)  # the ingest may have died before prctl took effect
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass  # alive, under another user id

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:  # re-parented: the parent is gone
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-ingest", daemon=True).start()


def shown_path(text: str) -> str:
    """A path as it can be written (CSV, parquet, the terminal): a name that is not UTF-8 (its bytes kept by
    Python as surrogates, e.g. a file named b"\\xff99.png") is written with those bytes escaped, ``\\xff99.png``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


NOT_UTF8 = "the name is not valid UTF-8 (its bytes that are not are shown as \\xNN): rename it"


def _report_row(rel, reason) -> tuple[str, str]:
    """One row of ingest_report.csv; a name that is not UTF-8 is written escaped, and said to be so."""
    shown = shown_path(str(rel))
    reason = shown_path(str(reason))
    return shown, (f"{reason}; {NOT_UTF8}" if shown != str(rel) else reason)


def _write_report(run_dir: Path, problems: list[tuple[str, str]]) -> None:
    rows = [_report_row(rel, reason) for rel, reason in problems]
    store.write_ingest_report(run_dir, pd.DataFrame(rows, columns=["file", "reason"]))


def _nothing_readable(data_root: Path, run_dir: Path, scan: Scan, problems: list[tuple[str, str]],
                      n_candidates: int) -> DatasetLayoutError:
    """The error for a data folder with no usable patch: what was expected, what was found where.

    ingest_report.csv is written first, so the user can open the full list; only a run folder that
    already holds an earlier, finished ingest keeps its own report (it still describes that run's
    manifest), and the list goes into the message instead.
    """
    lines = [f"no readable patches under {data_root}.",
             f"Expected layout: {LAYOUT_HELP} (here <data> is {data_root})."]
    if n_candidates:
        lines.append("The only patch file found in that layout was skipped:" if n_candidates == 1 else
                     f"All {n_candidates:,} patch files found in that layout were skipped, e.g.:")
        skipped = problems[len(scan.problems):] or problems
        lines += [f"  {shown_path(str(data_root / rel))}: {shown_path(str(reason))}" for rel, reason in skipped[:5]]
    elif scan.findings:
        lines.append("Found instead:")
        lines += [f"  {shown_path(str(folder))}: {shown_path(str(what))}" for folder, what in scan.findings[:8]]
        if len(scan.findings) > 8:
            lines.append(f"  ... and {len(scan.findings) - 8} more folders")
    earlier = store.read_meta(run_dir).get("stages", {}).get("ingest") and (run_dir / store.MANIFEST).exists()
    if earlier:
        lines.append(f"{run_dir} still holds its earlier ingest, left as it was; the {len(problems)} skipped "
                     f"entries are:")
        lines += [f"  {shown_path(str(rel))}: {shown_path(str(reason))}" for rel, reason in problems[:20]]
        if len(problems) > 20:
            lines.append(f"  ... and {len(problems) - 20} more")
    else:
        _write_report(run_dir, problems)
        lines.append(f"Every skipped file and folder is listed with its reason in {run_dir / store.INGEST_REPORT}.")
    return DatasetLayoutError("\n".join(lines))


def ingest(data_root: Path | str, run_dir: Path | str, workers: int | None = None, progress: bool = True) -> dict:
    """Write manifest.parquet, patches.npy and ingest_report.csv; skip if done for the same inputs.

    Raises DatasetLayoutError (a FileNotFoundError) when nothing under ``data_root`` can be read,
    after writing ingest_report.csv.
    """
    data_root, run_dir = Path(data_root), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    scan = scan_dataset(data_root)
    fp = input_fingerprint(data_root, scan)
    if store.stage_done(run_dir, "ingest", fp, store.MANIFEST, store.PATCHES):
        return store.read_meta(run_dir)["stages"]["ingest"] | {"skipped": True}

    n = len(scan.patches)
    if n == 0:
        raise _nothing_readable(data_root, run_dir, scan, scan.problems, 0)
    partial, progress_file = run_dir / PARTIAL, run_dir / PROGRESS
    done: dict[str, list] = {}
    if partial.exists() and progress_file.exists():
        saved = json.loads(progress_file.read_text())
        if saved.get("fingerprint") == fp and saved.get("format") == PROGRESS_FORMAT:
            done = saved["chunks"]  # resume: these chunks are already decoded in the partial store
    if not done:
        store.create_patch_store(partial, n).flush()
    paths, copies = scan.patches["path"].tolist(), scan.patches["copy"].tolist()
    todo = [(c, s, paths[s:s + CHUNK], copies[s:s + CHUNK], str(partial))
            for c, s in enumerate(range(0, n, CHUNK)) if str(c) not in done]

    def save_progress() -> None:
        store.write_json(progress_file, {"fingerprint": fp, "format": PROGRESS_FORMAT, "chunks": done})

    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    bar = tqdm(total=n, initial=n - sum(len(t[2]) for t in todo), unit="patch", desc="ingest",
               disable=not progress, smoothing=0.1)
    pool = (ProcessPoolExecutor(workers, initializer=_exit_with_parent, initargs=(os.getpid(),))
            if workers > 1 and len(todo) > 1 else None)
    try:
        results = pool.map(_decode_chunk, todo) if pool else map(_decode_chunk, todo)
        last_save = time.monotonic()
        for chunk_id, status in results:
            done[str(chunk_id)] = status
            bar.update(len(status))
            # Progress is saved every few seconds (not every chunk: the record grows with the
            # dataset), so an interrupted ingest resumes with at most that much work lost.
            if time.monotonic() - last_save > 5:
                save_progress()
                last_save = time.monotonic()
    finally:
        bar.close()
        if len(done) < -(-n // CHUNK):  # interrupted: keep what was decoded for the next run
            save_progress()
        if pool:
            pool.shutdown(cancel_futures=True)
    decode_s = time.perf_counter() - t0

    status = [s for c in range(len(done)) for s in done[str(c)]]
    ok = np.array([s[0] for s in status], dtype=bool)
    problems = scan.problems + [(rel, s[3]) for rel, s in zip(scan.patches["source"], status) if not s[0]]
    n_differ = 0
    for kept, copy, s in zip(scan.patches["source"], scan.patches["copy_source"], status):
        if not s[4]:
            continue  # no second copy, or the same bytes: read once
        n_differ += s[4] == COPY_DIFFERS
        problems.append((copy, _differs(kept, "same size, different content") if s[4] == COPY_DIFFERS else
                         f"not read: {kept} is the copy that is read and it could not be read; fix it, or "
                         f"replace it with this copy" if s[4] == COPY_UNREAD else s[4]))
    if not ok.any():
        partial.unlink(missing_ok=True)
        progress_file.unlink(missing_ok=True)
        raise _nothing_readable(data_root, run_dir, scan, problems, n)
    manifest = scan.patches.loc[ok].drop(columns=["path", "size", "mtime_ns", "copy", "copy_source", "copy_size",
                                                  "copy_mtime_ns"]).reset_index(drop=True)
    manifest["width"] = [s[1] for s in status if s[0]]
    manifest["height"] = [s[2] for s in status if s[0]]

    if ok.all():
        os.replace(partial, run_dir / store.PATCHES)
    else:  # drop the failed rows so the store stays row-aligned with the manifest
        src = store.open_patch_store(partial)
        with store.atomic_path(run_dir / store.PATCHES) as tmp:
            dst = store.create_patch_store(tmp, int(ok.sum()))
            keep = np.flatnonzero(ok)
            for s in range(0, len(keep), 65536):
                dst[s:s + 65536] = src[keep[s:s + 65536]]
            dst.flush()
            del dst
        del src
        partial.unlink()
    store.write_manifest(run_dir, manifest)
    _write_report(run_dir, problems)
    _copy_region_masks(data_root, run_dir, manifest["patient_id"].unique())
    progress_file.unlink(missing_ok=True)

    info = {
        "fingerprint": fp,
        "data_root": str(data_root.resolve()),
        "n_patches": len(manifest),
        "n_patients": int(manifest["patient_id"].nunique()),
        "n_positive": int(manifest["label"].sum()),
        "n_skipped": len(problems),
        "duplicate_patient_copies": scan.duplicate_patients,
        "duplicate_files_read_once": sum(1 for c, s in zip(copies, status) if c and not s[4]),
        "differing_copies": n_differ + sum(_is_differs(r) for _, r in scan.problems),
        "decode_seconds": round(decode_s, 3),
    }
    store.update_meta(run_dir, synthetic=scan.synthetic is not None, cohort=scan.synthetic or {},
                      data_root=str(data_root.resolve()), mpp=DATASET_MPP, stages={"ingest": info})
    return info


def _is_differs(reason: str) -> bool:
    return reason.startswith("differs from ")


def _copy_region_masks(data_root: Path, run_dir: Path, patient_ids) -> None:
    """Synthetic cohorts carry their true IDC regions; keep them with the run for the app."""
    src = data_root / MASK_DIR
    if not src.is_dir():
        return
    for pid in patient_ids:
        mask = src / f"{pid}.png"
        if mask.exists():
            dst = store.region_mask_path(run_dir, pid)
            dst.parent.mkdir(exist_ok=True)
            with store.atomic_path(dst) as tmp:
                shutil.copyfile(mask, tmp)


def summarise(info: dict, run_dir: Path | str, max_lines: int = 10) -> str:
    """The CLI's human-readable ingest summary, with the first problems and where the rest are."""
    if info.get("skipped"):
        return f"ingest: unchanged inputs, reusing {info['n_patches']:,} patches of {info['n_patients']} patients"
    lines = [
        f"ingest: {info['n_patches']:,} patches of {info['n_patients']} patients "
        f"({info['n_positive'] / max(info['n_patches'], 1):.1%} IDC-positive) in {info['decode_seconds']:.1f} s",
    ]
    if info["duplicate_patient_copies"]:
        lines.append(f"  {info['duplicate_patient_copies']} patients are in the data twice (the archive's two copies): "
                     f"{info.get('duplicate_files_read_once', 0):,} identical files read once")
    if info.get("differing_copies"):
        lines.append(f"  {info['differing_copies']} files differ between the two copies: read from {ARCHIVE_SUBDIR}/, "
                     f"the other copy listed as differing")
    if info["n_skipped"]:
        report = store.read_ingest_report(run_dir)
        lines.append(f"  {info['n_skipped']} files skipped; all listed in {Path(run_dir) / store.INGEST_REPORT}:")
        lines += [f"    {r.file}: {r.reason}" for r in report.head(max_lines).itertuples()]
        if len(report) > max_lines:
            lines.append(f"    ... and {len(report) - max_lines} more")
    return "\n".join(lines)
