"""Any model's output as a run: the imported scores file format and the `import-scores` command.

    python -m pipeline import-scores --data DIR --scores FILE --out RUN [--name TEXT]

FILE is a CSV or Parquet file with one row per patch: ``patient_id, x, y, prob`` and optionally
``split`` (other columns are ignored). The patches are ingested from DIR as usual (pipeline.ingest)
and each score is matched to its patch by (patient, x, y). Nothing is dropped silently: every row
that cannot be used (a patient id that is not ASCII digits, an x or y that is not a whole number, a
prob that is not a finite number in [0, 1], a split that is not train/val/test, duplicates, a score
without a patch) and every patch without a score is listed in ``score_import_report.csv`` (file,
row, reason) and counted in the summary.

The run holds the scored patches only (manifest, patch store and scores stay row-aligned, and a
patch without a score has no probability to measure); the others are in the report. The
probabilities are used as given: no calibration, no neighbourhood context (prob = prob_patch =
prob_uncalibrated). The split comes from the file's ``split`` column, or else from the project's
patient split (pipeline.split, ``--seed``); thresholds are chosen on val (pipeline.evaluate) and
measured on test. There is no model, so Grad-CAM is unavailable, and the app says why.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import evaluate, ingest, runfolder, split, store
from model.config import TrainConfig
from pipeline.errors import UsageError, non_negative_int, positive_int
from pipeline.store import SPLITS

REQUIRED = ("patient_id", "x", "y", "prob")
FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
KEY = ["patient_id", "x", "y"]
DEFAULT_SEED = TrainConfig.seed  # the patient split's seed when none is given: the training default
VERSION = 1  # of the import's rules; part of the import stage's fingerprint


# --------------------------------------------------------------------------- the file format
def read_scores_file(path: Path | str) -> tuple[pd.DataFrame, list[tuple[str, str, str]], bool, int]:
    """Read and check every row of a scores file.

    Returns (valid rows: row, patient_id, x, y, prob[, split]; problems: (file, row, reason) for
    each row that cannot be used; whether the file has a split column; the number of rows). ``row`` counts the data
    rows from 1 (a CSV's line number minus 1, for its header). Duplicates are resolved here too
    (see :func:`_duplicates`). Raises FileNotFoundError or UsageError for a file that cannot be
    read at all (missing, unknown format, unreadable, required columns missing, no rows).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file {path} {'is not a file' if path.exists() else 'does not exist'}; "
                                "pass a CSV or Parquet file with patient_id, x, y, prob to --scores")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"scores file {path} is neither .csv nor .parquet; save the scores as one of those")
    try:
        if kind == "CSV":
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
        else:
            raw = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the file's (pandas, pyarrow, codecs)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"scores file {path} cannot be read as {kind} ({reason[:300]})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise UsageError(f"scores file {path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)} "
                         f"(it has {', '.join(raw.columns[:8]) or 'none'}); it needs one row per patch with "
                         f"{', '.join(REQUIRED)} and optionally split")
    if not len(raw):
        raise UsageError(f"scores file {path} has no rows")
    has_split = "split" in raw.columns
    rows = pd.Series(np.arange(1, len(raw) + 1), index=raw.index)
    reasons = pd.Series("", index=raw.index)

    def flag(bad: pd.Series, text) -> None:
        bad = bad.fillna(True).astype(bool)
        if bad.any():
            msg = text if isinstance(text, pd.Series) else pd.Series(text, index=raw.index)
            reasons[bad] = reasons[bad].where(reasons[bad] == "", reasons[bad] + "; ") + msg[bad]

    pid, ok_pid = _patient_ids(raw["patient_id"])
    flag(~ok_pid, _shown(raw["patient_id"], "patient_id", "is not a patient number (ASCII digits 0-9)"))
    coords = {}
    for axis in ("x", "y"):
        coords[axis], ok = _whole_numbers(raw[axis])
        flag(~ok, _shown(raw[axis], axis, "is not a whole number (ASCII digits 0-9)"))
    prob, ok_prob, prob_reason = _probabilities(raw["prob"])
    flag(~ok_prob, prob_reason)
    if has_split:
        split_col = _text(raw["split"])
        flag(~split_col.isin(SPLITS), _shown(raw["split"], "split", f"is not one of {', '.join(SPLITS)}"))
    bad = reasons != ""
    problems = [(path.name, str(r), reason) for r, reason in zip(rows[bad], reasons[bad])]
    valid = pd.DataFrame({"row": rows, "patient_id": pid, "x": coords["x"], "y": coords["y"], "prob": prob})
    if has_split:
        valid["split"] = split_col
    valid = valid[~bad].astype({"x": "int64", "y": "int64", "prob": "float64"})
    valid, more = _duplicates(valid, path.name)
    return valid, problems + more, has_split, len(raw)


def _text(values: pd.Series) -> pd.Series:
    """The values as the user wrote them (strings; missing as empty, a number's NaN as 'nan')."""
    if pd.api.types.is_float_dtype(values):
        return pd.Series([str(float(v)) for v in values], index=values.index, dtype="string")
    return values.astype("string").fillna("").str.strip()


def _shown(values: pd.Series, column: str, what: str) -> pd.Series:
    """'<column> '<value>' <what>', or '<column> is empty', per row."""
    text = _text(values)
    return (f"{column} '" + text.str.slice(0, 40) + f"' {what}").where(text != "", f"{column} is empty").astype(str)


def _patient_ids(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_integer_dtype(values):
        text = values.astype("Int64").astype("string").fillna("")
    else:
        text = _text(values)
    return text, text.str.fullmatch(r"[0-9]+").fillna(False).astype(bool)


def _whole_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the values as int64, 0 where bad; which are whole numbers >= 0)."""
    if pd.api.types.is_bool_dtype(values):
        return pd.Series(0, index=values.index), pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values):
        num = values.astype("float64")
        ok = np.isfinite(num) & (num >= 0) & (num == np.floor(num))
    else:
        text = _text(values)
        ok = text.str.fullmatch(r"[0-9]+(\.0*)?").fillna(False).astype(bool)
        num = pd.to_numeric(text.where(ok, "0"), errors="coerce").astype("float64")
        ok &= np.isfinite(num)
    ok = pd.Series(np.asarray(ok, bool) & (np.asarray(num.where(ok, 0)) < 2**31), index=values.index)
    return num.where(ok, 0).astype("int64"), ok


def _probabilities(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(the values as float64; which are finite numbers in [0, 1]; the reason for the others)."""
    text = _text(values)
    if pd.api.types.is_bool_dtype(values):
        num = pd.Series(np.nan, index=values.index)
    elif pd.api.types.is_numeric_dtype(values):
        num = values.astype("float64")
    else:
        num = pd.to_numeric(text, errors="coerce").astype("float64")
    finite = np.isfinite(num)
    ok = finite & (num >= 0) & (num <= 1)
    reason = ("prob '" + text.str.slice(0, 40) + "' is not a finite number").where(text != "", "prob is empty")
    reason = reason.where(~finite, "prob " + text.str.slice(0, 40) + " is outside [0, 1]")
    return num, pd.Series(np.asarray(ok, bool), index=values.index), reason.astype(str)


def _duplicates(valid: pd.DataFrame, file: str) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """Rows that score the same patch (patient, x, y) twice, and patients given two splits.

    Copies that agree (same prob, same split) are reported and the first is used; copies that
    disagree are all reported and none is used (there is no telling which is right). A patient
    whose rows name different splits is reported row by row and none of its rows is used.
    """
    problems = []
    dup = valid.duplicated(KEY, keep=False)
    if dup.any():
        cols = ["prob"] + (["split"] if "split" in valid else [])
        groups = valid[dup].groupby(KEY, sort=False)
        drop = []
        for (pid, x, y), g in groups:
            where = f"patient {pid}, x {x}, y {y}"
            rows = ", ".join(map(str, g["row"]))
            if (g[cols].nunique() <= 1).all():
                first = g["row"].iloc[0]
                problems += [(file, str(r), f"duplicate of row {first} ({where}, same score): row {first} is used")
                             for r in g["row"].iloc[1:]]
                drop += list(g.index[1:])
            else:
                problems += [(file, str(r), f"{where} is scored {len(g)} times with different values (rows {rows}): "
                              "none of them is used") for r in g["row"]]
                drop += list(g.index)
        valid = valid.drop(index=drop)
    if "split" in valid:
        n_splits = valid.groupby("patient_id")["split"].nunique()
        torn = n_splits.index[n_splits > 1]
        if len(torn):
            for pid, g in valid[valid["patient_id"].isin(torn)].groupby("patient_id"):
                names = ", ".join(sorted(g["split"].unique()))
                problems += [(file, str(r), f"patient {pid} has rows in splits {names}; a patient belongs to one "
                              "split (patches of one slide are alike): none of its rows is used") for r in g["row"]]
            valid = valid[~valid["patient_id"].isin(torn)]
    return valid, problems


def match(valid: pd.DataFrame, manifest: pd.DataFrame, file: str, data_name: str
          ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, list[tuple[str, str, str]]]:
    """Match checked score rows to the manifest's patches by (patient, x, y).

    Returns (manifest rows kept, in manifest order; their prob; the matched score rows, aligned;
    problems: scores without a patch, patches without a score, patches the key cannot tell apart).
    """
    m = manifest[KEY + ["source"]].copy()
    m["patient_id"] = m["patient_id"].astype(str)
    m[["x", "y"]] = m[["x", "y"]].astype("int64")
    m["mrow"] = np.arange(len(m))
    problems = []
    twin = m.duplicated(KEY, keep=False)
    for (pid, x, y), g in m[twin].groupby(KEY, sort=False):
        problems += [(src, "", f"another patch of the data has the same patient {pid}, x {x}, y {y} "
                      f"({', '.join(s for s in g['source'] if s != src)}); a score cannot tell them apart: "
                      "remove or rename one") for src in g["source"]]
    joined = valid.merge(m[~twin], on=KEY, how="left")
    unmatched = joined["mrow"].isna()
    patients = set(m["patient_id"])
    for r in joined[unmatched].itertuples():
        where = (f"patient {r.patient_id} has no patch at x {r.x}, y {r.y} under {data_name}/"
                 if r.patient_id in patients else f"patient {r.patient_id} has no patches under {data_name}/")
        problems.append((file, str(r.row), f"score without a patch: {where}"))
    joined = joined[~unmatched].sort_values("mrow")
    keep = joined["mrow"].to_numpy(np.int64)
    scored = np.zeros(len(m), bool)
    scored[keep] = True
    for r in m[~scored & ~twin.to_numpy()].itertuples():
        problems.append((r.source, "", f"patch without a score: {file} has no usable row for patient "
                                        f"{r.patient_id}, x {r.x}, y {r.y}"))
    return keep, joined["prob"].to_numpy(np.float64), joined.reset_index(drop=True), problems


# --------------------------------------------------------------------------- the run folder
def _keep_rows(run_dir: Path, manifest: pd.DataFrame, keep: np.ndarray, tag: str) -> None:
    """Rewrite manifest and patch store with the rows ``keep`` only, and make the ingest record say so.

    The ingest stage's fingerprint changes with it, so a later ingest into this folder (another
    command's, or another file's) decodes the data again instead of trusting the subset.
    """
    src = store.read_patches(run_dir)
    with store.atomic_path(run_dir / store.PATCHES, suffix=".npy") as tmp:
        dst = store.create_patch_store(tmp, len(keep))
        for s in range(0, len(keep), 65536):
            dst[s:s + 65536] = src[keep[s:s + 65536]]
        dst.flush()
        del dst
    del src
    kept = manifest.iloc[keep].reset_index(drop=True)
    store.write_manifest(run_dir, kept)
    record = dict(store.read_meta(run_dir)["stages"]["ingest"])
    record.pop("skipped", None)
    record.update(fingerprint=store.fingerprint(record["fingerprint"], "scored subset", tag),
                  n_patches=len(kept), n_patients=int(kept["patient_id"].nunique()),
                  n_positive=int(kept["label"].sum()), n_unscored=len(manifest) - len(kept))
    store.update_meta(run_dir, stages={"ingest": record})


def _assign_split(run_dir: Path, manifest: pd.DataFrame, matched: pd.DataFrame, has_split: bool, seed: int,
                  file: str) -> str:
    """split.json from the file's split column, or the project's patient split; says which."""
    if has_split:
        assignment = dict(zip(matched["patient_id"].astype(str), matched["split"]))
        shares = [sum(v == s for v in assignment.values()) / len(assignment) for s in SPLITS]
        store.write_split(run_dir, assignment, seed=None, fractions=shares)
        return f"split: from the split column of {file}"
    try:
        assignment = split.split_patients(manifest["patient_id"], manifest["label"], seed=seed)
    except ValueError as exc:
        raise UsageError(f"{file} has no split column, and the project's patient split cannot split the matched "
                         f"patches ({exc}); add a split column (train, val or test per row)") from None
    store.write_split(run_dir, assignment, seed=seed, fractions=split.DEFAULT_FRACTIONS)
    return f"split: the project's patient split (seed {seed}; {file} has no split column)"


def import_scores(data: Path | str, scores: Path | str, out: Path | str, name: str | None = None, seed: int = DEFAULT_SEED,
                  workers: int | None = None, force: bool = False) -> dict:
    """Ingest ``data``, match the scores file to its patches, and evaluate: a run folder like any other.

    Returns the evaluation report. Raises UsageError (exit 2) when no row matches a patch, after
    writing the report that says why for every row.
    """
    data, scores, out = Path(data), Path(scores), Path(out)
    valid, problems, has_split, n_rows = read_scores_file(scores)  # before anything is written
    sha = store.file_sha256(scores)
    runfolder.claim_run_folder(out, "import-scores", data, force=force, scores_file=scores)
    scan = ingest.scan_dataset(data)
    fp = store.fingerprint(VERSION, ingest.input_fingerprint(data, scan), sha, seed)
    if store.stage_done(out, "import", fp, store.SCORES, store.SCORE_IMPORT_REPORT, store.EVALUATION):
        print(f"import-scores: unchanged data and {scores.name}, reusing the run", flush=True)
        print(summarise(store.read_meta(out)["stages"]["import"], out), flush=True)
        return store.read_evaluation(out)

    info = ingest.ingest(data, out, workers=workers)
    print(ingest.summarise(info, out), flush=True)
    manifest = store.read_manifest(out)
    keep, prob, matched, unmatched = match(valid, manifest, scores.name, data.name)
    problems += unmatched
    store.write_score_import_report(out, pd.DataFrame(problems, columns=list(store.SCORE_IMPORT_COLUMNS)))
    counts = {"rows": n_rows, "matched": int(len(keep)), "rows_not_used": n_rows - int(len(keep)),
              "patches": int(len(manifest)), "patches_without_score": int(len(manifest) - len(keep)),
              "problems": len(problems)}
    if not len(keep):
        shown = "".join(f"\n  {f} row {r}: {why}" if r else f"\n  {f}: {why}" for f, r, why in problems[:5])
        raise UsageError(f"nothing in {scores} matched a patch under {data}: {n_rows:,} rows, {len(valid):,} of "
                         f"them usable, none with the patient_id, x and y of a patch; every row is listed with "
                         f"its reason in {out / store.SCORE_IMPORT_REPORT}:{shown}")
    if len(keep) < len(manifest):
        _keep_rows(out, manifest, keep, sha)
        manifest = store.read_manifest(out)
    ingest_fp = store.read_meta(out)["stages"]["ingest"]["fingerprint"]
    split_text = _assign_split(out, manifest, matched, has_split, seed, scores.name)
    store.mark_stage(out, "split", store.fingerprint(ingest_fp, "import", fp))
    store.write_scores(out, prob, prob, prob)
    score_fp = store.fingerprint(ingest_fp, fp)
    store.mark_stage(out, "score", score_fp, manifest=ingest_fp)
    source = {"kind": "imported", "file": str(scores.resolve()), "name": name, "sha256": sha,
              "format": FORMATS[scores.suffix.lower()], "split_from": "file" if has_split else "project"}
    store.update_meta(out, source=source, arch=f"imported scores ({name or scores.name})", cam_layer=None,
                      calibration=None, context=None, tta=False)
    print(split_text, flush=True)
    print(split.format_summary(out), flush=True)
    report = evaluate.stage_evaluate(out, score_fp)
    store.update_meta(out, thresholds=report["thresholds"])
    store.mark_stage(out, "import", fp, **counts)
    print(summarise(counts, out), flush=True)
    print("  the probabilities are used as given: no calibration, no neighbourhood context", flush=True)
    print(evaluate.format_report(report), flush=True)
    return report


def summarise(counts: dict, run_dir: Path | str, max_lines: int = 10) -> str:
    """The command line's summary: rows matched, rows not used, patches without a score, the first reasons."""
    lines = [f"import-scores: {counts['matched']:,} of {counts['rows']:,} rows matched a patch; "
             f"{counts['rows_not_used']:,} rows not used, {counts['patches_without_score']:,} of "
             f"{counts['patches']:,} patches without a score (left out of the run)"]
    if counts.get("problems"):
        report = store.read_score_import_report(run_dir)
        lines.append(f"  all {len(report):,} listed with the reason in {Path(run_dir) / store.SCORE_IMPORT_REPORT}:")
        lines += [f"    {r.file} row {r.row}: {r.reason}" if r.row else f"    {r.file}: {r.reason}"
                  for r in report.head(max_lines).itertuples()]
        if len(report) > max_lines:
            lines.append(f"    ... and {len(report) - max_lines:,} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the `import-scores` command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `import-scores` command's options."""
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset root with the scored patches: <pid>/<0|1>/*.png or IDC_regular_ps50_idx5/")
    parser.add_argument("--scores", type=Path, required=True,
                        help="CSV or Parquet file, one row per patch: patient_id, x, y, prob (P(IDC) in [0, 1]), "
                             "optionally split (train/val/test)")
    parser.add_argument("--out", type=Path, required=True, help="new run folder to write")
    parser.add_argument("--name", default=None, help="what made the scores (a model's name), shown in the app")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                        help=f"seed of the project's patient split, used when the file has no split column "
                             f"(default {DEFAULT_SEED})")
    parser.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    runfolder.add_force_argument(parser)


def run_command(args: argparse.Namespace) -> int:
    """`python -m pipeline import-scores`: the run, with every row not used reported; exit 0, 2 if nothing matched."""
    import_scores(args.data, args.scores, args.out, name=args.name, seed=args.seed, workers=args.workers,
                  force=args.force)
    print(f"run folder: {args.out}  (open it with: python -m app)")
    return 0
