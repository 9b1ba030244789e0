"""The `export-geojson` command: a run's predictions as QuPath GeoJSON, one FeatureCollection per
patient (pipeline.geojson owns the format; pipeline.reviews_cli the handler)."""
from __future__ import annotations

from pipeline.reviews_cli import add_export_geojson_arguments as add_arguments
from pipeline.reviews_cli import cmd_export_geojson as run_command

__all__ = ["add_arguments", "run_command"]
