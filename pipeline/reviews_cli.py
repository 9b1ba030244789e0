"""The `reviews` command (add, export, agreement, import) and the `export-geojson` command.

Every subcommand works on a run's cohort review store (pipeline.reviews.open_for_run: one store per
data folder, shared by every run made from it, with the run's old per-run file migrated on first
open). No TensorFlow is imported.

    python -m pipeline reviews add --run RUN --patient P --x X --y Y --verdict agree|label_wrong|unsure
                                   --reviewer NAME [--note TEXT] [--threshold T]
    python -m pipeline reviews export --run RUN --format csv|geojson --out FILE|DIR [--threshold T|--preset NAME]
    python -m pipeline reviews agreement --run RUN
    python -m pipeline reviews import --run RUN --csv FILE
    python -m pipeline export-geojson --run RUN --out DIR [--threshold T|--preset NAME] [--object-type tile]
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import agreement, exports, geojson, reviews, store, wsi
from pipeline.errors import UsageError, non_negative_int
from pipeline.metrics import check_threshold

DEFAULT_PRESET = "f1_optimal"


def _load(run_dir: Path) -> store.Run:
    return store.load_run(run_dir)


def _open(run: store.Run) -> reviews.ReviewStore:
    try:
        return reviews.open_for_run(run.path, run.table)
    except reviews.LegacyReviewsError as exc:
        raise UsageError(reviews.problem_text(str(exc.path), exc, exc.reason)) from None
    except sqlite3.DatabaseError as exc:  # the cohort store itself is not a reviews database
        raise UsageError(reviews.problem_text(str(reviews.cohort_store_path(run.path)), exc)) from None


def _threshold(run: store.Run, threshold: float | None, preset: str | None) -> float:
    """--threshold, else the run's preset (F1-optimal on validation by default; 0.5 when it has none)."""
    if threshold is not None:
        try:
            return check_threshold(threshold)
        except ValueError as exc:
            raise UsageError(f"--threshold: {exc}") from None
    presets = run.meta.get("thresholds") or (run.evaluation or {}).get("thresholds") or {}
    name = preset or DEFAULT_PRESET
    if name in presets:
        return float(presets[name])
    if preset:
        raise UsageError(f"--preset {preset}: the run has no such threshold preset; it has {', '.join(presets) or 'none'}")
    return float(presets.get("default", 0.5))


def _threshold_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None, help="decision threshold on P(IDC)")
    g.add_argument("--preset", default=None,
                   help=f"one of the run's threshold presets (default: {DEFAULT_PRESET}, chosen on validation)")


def _patch_rows(run: store.Run) -> pd.DataFrame:
    return run.table[["patient_id", "x", "y", "width", "height", "label", "prob"]]


# --------------------------------------------------------------------------- subcommands
def cmd_add(args) -> int:
    run = _load(args.run)
    table = run.table
    hit = table[(table["patient_id"] == str(args.patient).strip()) & (table["x"] == args.x) & (table["y"] == args.y)]
    if hit.empty:
        raise UsageError(f"{args.run} has no patch of patient {args.patient} at x={args.x}, y={args.y}")
    threshold = _threshold(run, args.threshold, None)
    name, model = reviews.run_identity(run.path, run.meta)
    rs = _open(run)
    try:
        rid = rs.add(patient_id=str(args.patient).strip(), x=args.x, y=args.y, verdict=args.verdict,
                     reviewer=args.reviewer, note=args.note, run_name=name, model=model, threshold=threshold,
                     prob_shown=float(hit["prob"].iloc[0]), source="cli")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"review {rid} saved in {rs.path}: patient {args.patient} x={args.x} y={args.y} {args.verdict} "
          f"by {args.reviewer.strip()} (P(IDC) {float(hit['prob'].iloc[0]):.3f}, threshold {threshold:.3f})")
    return 0


def cmd_export(args) -> int:
    run = _load(args.run)
    rs = _open(run)
    resolved = rs.resolved(run.table)
    if args.format == "csv":
        data = exports.csv_bytes(resolved.export_frame())
        with store.atomic_path(args.out) as tmp:
            tmp.write_bytes(data)
        print(f"{len(resolved.every):,} reviews ({len(resolved.not_in_run):,} of patches not in this run) -> {args.out}")
        return 0
    threshold = _threshold(run, args.threshold, args.preset)
    reviewed = resolved.found["row"].unique()
    if len(reviewed) == 0:
        print(f"no reviews of patches in {args.run}; nothing written")
        return 0
    rows = _patch_rows(run).loc[np.sort(reviewed)]
    written = geojson.write_patient_geojson(args.out, rows, threshold, verdicts=resolved.found,
                                            scales=wsi.slide_scales(run.meta),
                                            object_type=args.object_type)
    print(f"{len(rows):,} reviewed patches of {len(written)} patients at threshold {threshold:.3f} -> {args.out}/ "
          "(one <patient>.geojson per slide: drag it onto the slide's image in QuPath)")
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def cmd_agreement(args) -> int:
    run = _load(args.run)
    rs = _open(run)
    every = rs.all()
    if every.empty:
        print(f"no reviews in {rs.path}")
        return 0
    report = agreement.agreement_report(every, run.table[["patient_id", "x", "y", "label"]])
    print(f"reviews: {report.n_reviews:,} by {report.n_reviewers} reviewer(s) on {report.n_patches:,} patches "
          f"({report.n_patches_multi:,} reviewed by two or more), store {rs.path}")
    print(f"Fleiss' kappa (patches with 2+ reviewers): {_fmt(report.fleiss_kappa)}")
    if len(report.pairwise):
        print("Cohen's kappa per pair (each reviewer's latest verdict, patches both reviewed):")
        for r in report.pairwise.itertuples(index=False):
            print(f"  {r.reviewer_a} vs {r.reviewer_b}: kappa {_fmt(r.kappa)} on {r.n_patches} patches "
                  f"(observed agreement {r.observed_agreement:.3f})")
    print("per reviewer, agreement with the dataset label:")
    for r in report.reviewer_vs_label.itertuples(index=False):
        print(f"  {r.reviewer}: {r.n} patches, agree {r.agree}, label_wrong {r.label_wrong}, unsure {r.unsure} "
              f"(agree share {_fmt(r.agree_share)})")
    d = report.disagreements
    print(f"disagreements: {len(d):,} patches" + (":" if len(d) else ""))
    for r in d.head(20).itertuples(index=False):
        print(f"  patient {r.patient_id} x={r.x} y={r.y}: {r.summary}")
    if len(d) > 20:
        print(f"  ... and {len(d) - 20:,} more")
    return 0


def cmd_import(args) -> int:
    run = _load(args.run)
    try:
        valid, problems = agreement.read_reviews_csv(args.csv)
    except ValueError as exc:
        raise UsageError(f"{args.csv}: {exc}") from None
    for n, reason in problems:
        print(f"  {args.csv} row {n}: {reason}", file=sys.stderr)
    rs = _open(run)
    name, model = reviews.run_identity(run.path, run.meta)
    added, known = rs.import_reviews(valid, run_name=name, model=model)
    rejected = sum(1 for n, _ in problems if n > 1)
    print(f"{added:,} reviews imported into {rs.path}; {known:,} already there; {rejected:,} rows rejected"
          + (" (listed above)" if rejected else ""))
    if valid.empty and rejected:
        return 2
    return 0


def cmd_export_geojson(args) -> int:
    run = _load(args.run)
    threshold = _threshold(run, args.threshold, args.preset)
    verdicts = None
    try:
        verdicts = reviews.open_for_run(run.path, run.table).all()
    except reviews.LegacyReviewsError as exc:
        print(f"warning: reviews left out: {exc.reason}", file=sys.stderr)
    written = geojson.write_patient_geojson(args.out, _patch_rows(run), threshold, verdicts=verdicts,
                                            scales=wsi.slide_scales(run.meta),
                                            object_type=args.object_type)
    print(f"{len(run.table):,} patches of {len(written)} patients at threshold {threshold:.3f} -> {args.out}/ "
          "(one <patient>.geojson per slide, with each reviewer's latest verdict)")
    return 0


# --------------------------------------------------------------------------- parsers
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`reviews` and its subcommands."""
    sub = parser.add_subparsers(dest="reviews_command", required=True)
    p = sub.add_parser("add", help="add one review of a patch to the run's cohort store")
    p.add_argument("--run", type=Path, required=True, help="run folder")
    p.add_argument("--patient", required=True)
    p.add_argument("--x", type=non_negative_int, required=True)
    p.add_argument("--y", type=non_negative_int, required=True)
    p.add_argument("--verdict", choices=list(reviews.VERDICTS), required=True)
    p.add_argument("--reviewer", required=True)
    p.add_argument("--note", default="")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"the threshold recorded as shown (default: the run's {DEFAULT_PRESET} preset)")
    p.set_defaults(reviews_handler=cmd_add)

    p = sub.add_parser("export", help="every review of the cohort as CSV, or the reviewed patches as QuPath GeoJSON")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--format", choices=("csv", "geojson"), required=True)
    p.add_argument("--out", type=Path, required=True, help="CSV file, or the folder for <patient>.geojson files")
    _threshold_options(p)
    p.add_argument("--object-type", choices=geojson.OBJECT_TYPES, default="tile")
    p.set_defaults(reviews_handler=cmd_export)

    p = sub.add_parser("agreement", help="agreement between reviewers (Cohen's and Fleiss' kappa, disagreements)")
    p.add_argument("--run", type=Path, required=True)
    p.set_defaults(reviews_handler=cmd_agreement)

    p = sub.add_parser("import", help="import reviews from a CSV with the export's columns (re-importing adds nothing)")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--csv", type=Path, required=True)
    p.set_defaults(reviews_handler=cmd_import)


def run_command(args: argparse.Namespace) -> int:
    return args.reviews_handler(args)


def add_export_geojson_arguments(parser: argparse.ArgumentParser) -> None:
    """`export-geojson`: the run's predictions, one QuPath FeatureCollection per patient."""
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the <patient>.geojson files")
    _threshold_options(parser)
    parser.add_argument("--object-type", choices=geojson.OBJECT_TYPES, default="tile")
