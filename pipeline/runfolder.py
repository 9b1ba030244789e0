"""Which folder a run may write into: a run folder belongs to the command and inputs that made it.

`run`, `score` and `import-scores` claim their --out folder here before writing anything, so the rule
is the same for all: a new or empty folder, or the same command's own folder from the same data (and
trained run), is resumed; anything else is refused with the fix, or moved aside with --force.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from pipeline import ingest, store
from pipeline.errors import UsageError

# What a run folder may hold besides run.json: its artifacts, the app's reviews (and SQLite's side
# files), and the pipeline's hidden temporary and resume files (every one starts with a dot).
RUN_FILES = frozenset({store.RUN_META, store.MANIFEST, store.PATCHES, store.INGEST_REPORT, store.SPLIT,
                       store.MODEL, store.HISTORY, store.SCORES, store.EVALUATION, store.REGION_MASKS,
                       store.SCORE_IMPORT_REPORT, store.REVIEWS, f"{store.REVIEWS}-wal", f"{store.REVIEWS}-shm",
                       f"{store.REVIEWS}-journal"})


def _made_by(meta: dict) -> dict:
    """What made a run folder: the command, its data root and, for `score`, the trained run it used.

    Runs written before this was recorded are read from what they do record (the data root that
    ingest wrote, the source run that `score` wrote), so they can still be resumed.
    """
    if meta.get("made_by"):
        return meta["made_by"]
    return {"command": "score" if meta.get("source_run") else "run", "data_root": meta.get("data_root"),
            "source_run": meta.get("source_run")}


def _differences(found: dict, wanted: dict) -> list[str]:
    names = {"command": "made by `pipeline {}`", "data_root": "data {}", "source_run": "scored with the model of {}",
             "scores_file": "scores imported from {}", "model_file": "scored by the model {}"}
    return [names[k].format(found.get(k)) for k in names
            if found.get(k) is not None and found.get(k) != wanted.get(k)]


def claim_run_folder(out: Path, command: str, data: Path, source_run: Path | None = None,
                     force: bool = False, scores_file: Path | None = None, model_file: Path | None = None) -> None:
    """Make sure ``out`` is this command's own run folder before anything is written into it.

    A new or empty folder, or one that the same command made from the same data (and, for `score`,
    the same trained run), is this run's: it is resumed, its unchanged stages skipped. Anything else
    (another run's artifacts, or files the pipeline does not write, which may be the user's) is
    refused, naming the folder and the fix, so that no run ever overwrites another or the user's
    files. With ``force`` the folder is moved aside to ``<out>.replaced-<time>``, never deleted.
    Used by `run`, `score` and `import-scores`, so the rule is the same for all. ``scores_file``
    (import-scores) and ``model_file`` (score --model) are part of what made the folder: importing
    another file, or scoring with another model, into it is refused like another run.
    """
    out = Path(out)
    wanted, problem = _check(out, command, data, source_run, force, scores_file, model_file)
    if problem:
        aside = _move_aside(out)
        print(f"--force: {problem}; moved it aside to {aside} (nothing in it was deleted)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    meta = store.read_meta(out)
    if not meta.get("created"):
        store.update_meta(out, created=dt.datetime.now().isoformat(timespec="seconds"), name=out.name)
    if meta.get("made_by") != wanted:
        store.update_meta(out, made_by=wanted)


def check_run_folder(out: Path, command: str, data: Path, source_run: Path | None = None, force: bool = False,
                     scores_file: Path | None = None, model_file: Path | None = None) -> None:
    """Refuse ``out`` exactly as :func:`claim_run_folder` would, but write, make and move nothing.

    For a command that claims several folders (`compare`): each is checked before any is claimed.
    """
    _check(Path(out), command, data, source_run, force, scores_file, model_file)


def _check(out: Path, command: str, data: Path, source_run, force: bool, scores_file, model_file):
    """(what made the folder as this command would record it, why ``out`` is not its own or None);
    raises when it may not be used (without ``force``, or whatever the flags)."""
    data = Path(data)
    wanted = {"command": command, "data_root": str(data.resolve()),
              "source_run": str(Path(source_run).resolve()) if source_run else None}
    for key, path in (("scores_file", scores_file), ("model_file", model_file)):
        if path is not None:  # only when given, so the folders of run and score keep their record
            wanted[key] = str(Path(path).resolve())
    # Checked before the run folder is made: a mistyped --data leaves nothing behind.
    try:
        what = "" if data.is_dir() else ("is not a folder" if data.exists() else "does not exist")
    except OSError as exc:
        what = f"cannot be read ({exc.strerror or exc})"
    if what:
        raise FileNotFoundError(f"data folder {data} {what}; pass the folder that holds the patient "
                                f"folders (or {ingest.ARCHIVE_SUBDIR}/) with --data")
    # Never in the folder the inputs live in, even with --force: moving it aside would move them too.
    resolved = out.resolve()
    for what, path in (("the data folder", data), ("the trained run", source_run), ("the scores file", scores_file),
                       ("the model file", model_file)):
        if path is not None and (Path(path).resolve() == resolved or resolved in Path(path).resolve().parents):
            raise UsageError(f"--out {out} holds {what} {path}; pass --out a new folder outside it.")
    problem = _folder_problem(out, wanted)
    if problem and not force:
        raise UsageError(f"{problem}: refusing to write into it (nothing was changed). Pass --out a new folder, "
                         f"or add --force to move {out} aside to {out.name}.replaced-<time> and start afresh there.")
    return wanted, problem


def _folder_problem(out: Path, wanted: dict) -> str | None:
    """Why ``out`` is not this command's own run folder, or None when it is (or is new or empty)."""
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} is a file, not a folder"
    entries = sorted(e.name for e in out.iterdir())
    if not entries:
        return None
    if store.RUN_META not in entries:
        foreign = [n for n in entries if n not in RUN_FILES and not n.startswith(".")]
        if foreign or any(n in RUN_FILES for n in entries):
            shown = ", ".join(foreign[:3] or entries[:3]) + (" ..." if len(foreign or entries) > 3 else "")
            return f"--out {out} is not empty ({shown}) and is not a run folder (it has no {store.RUN_META})"
        return None  # only hidden leftovers of a run killed before it wrote run.json
    try:
        meta = store.read_meta(out)
    except store.ArtifactError as exc:
        return f"--out {out} has an unreadable {store.RUN_META} ({exc})"
    differences = _differences(_made_by(meta), wanted)
    if differences:
        return f"--out {out} holds another run ({'; '.join(differences)})"
    return None


def _move_aside(out: Path) -> Path:
    """Rename ``out`` to ``<out>.replaced-<time>`` (with a counter if taken) and return the new path."""
    out = out.resolve()
    if out == Path.cwd() or out in Path.cwd().parents:  # the new run would be written into the moved folder
        raise UsageError(f"--force cannot move {out} aside: it holds the current folder; pass --out a new folder.")
    aside = aside_path(out)
    out.rename(aside)
    return aside


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (an artifact shared by two run folders, no copy), or a copy when
    they are on different file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def aside_path(out: Path) -> Path:
    """A free ``<out>.replaced-<time>`` beside ``out`` (with a counter if taken): where --force moves things."""
    out = Path(out).resolve()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside, n = out.with_name(f"{out.name}.replaced-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = out.with_name(f"{out.name}.replaced-{stamp}-{n}")
    return aside


def add_force_argument(parser) -> None:
    """--force, the same for every command that claims a run folder."""
    parser.add_argument("--force", action="store_true",
                        help="if --out holds another run or other files, move it aside to <out>.replaced-<time> first")
