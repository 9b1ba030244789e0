"""Command line: idc (or python -m pipeline) COMMAND ...; `idc --help` lists the commands (see README).

Each command's options and handler live with its stage, as ``add_arguments(parser)`` and
``run_command(args) -> int`` in the module named below; this module only lists the commands,
builds the parser and turns the user's errors into one line. No command module imports
TensorFlow at import time, so ``--help`` and the option checks answer at once; TensorFlow is
imported when a command trains or scores.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from model.config import ConfigError
from pipeline.errors import UsageError
from pipeline.names import BadPatchName
from pipeline.store import ArtifactError

# command -> (module with add_arguments and run_command, help line)
COMMANDS = {
    "synth": ("pipeline.synth", "generate the synthetic default cohort (dataset layout, labelled SYNTHETIC)"),
    "run": ("pipeline.run", "ingest a dataset folder, split by patient, train, score every patch, evaluate"),
    "score": ("pipeline.score", "score new patient folders with an already trained run"),
    "import-scores": ("pipeline.import_scores", "a run from any model's per-patch scores (CSV or Parquet)"),
    "compare": ("pipeline.compare", "train several architectures under the same budget on the same split"),
    "compare-runs": ("pipeline.compare_runs", "two runs of one cohort compared, paired, with patient-level intervals"),
    "reviews": ("pipeline.reviews_cli", "pathologist reviews of a run's cohort: add, export, agreement, import"),
    "export-geojson": ("pipeline.export_geojson", "a run's predictions as QuPath GeoJSON, one file per patient"),
    "ingest-slides": ("pipeline.ingest_slides", "whole-slide images (OpenSlide) -> a run folder of patches, one slide per "
                                                "patient"),
}

# What the command line reports as one "error: ..." line (exit 2): the user's input or artifacts.
# Anything else is a bug in the pipeline and keeps its traceback.
USER_ERRORS = (ArtifactError, BadPatchName, FileNotFoundError, UsageError, ConfigError)


MODULE_PROG = "python -m pipeline"
SCRIPT_PROG = "idc"  # the console script (pyproject.toml [project.scripts])


def prog_name(argv0: str | None = None) -> str:
    """The name usage lines give the command line: ``idc`` when run as the installed script, else
    ``python -m pipeline`` (sys.argv[0] is then pipeline/__main__.py)."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return SCRIPT_PROG if os.path.splitext(name)[0] == SCRIPT_PROG else MODULE_PROG


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog_name(), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = importlib.import_module(module)
        s = sub.add_parser(name, help=help_text, description=help_text)
        command.add_arguments(s)
        s.set_defaults(handler=command.run_command)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
