"""CSV files offered for download: formula-safe CSV, which pipeline/exports.py owns (the CLI's
review export uses the same functions); re-exported here for the pages."""
from __future__ import annotations

from pipeline.exports import FORMULA_STARTS, csv_bytes, neutralise, safe_frame

__all__ = ["FORMULA_STARTS", "csv_bytes", "neutralise", "safe_frame"]
