"""Formula-safe CSV: the one place every table leaves the project as CSV (the app's downloads, the
`reviews export` command, the review store's ``to_csv_bytes``).

A spreadsheet opening a CSV runs any cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in
some programs, a tab or carriage return) as a formula, so a reviewer's note such as
``=HYPERLINK("http://...")`` would become a live link or command on a colleague's machine (CSV
or formula injection). Following the OWASP guidance, every text cell that starts with one of
those characters is prefixed with a single quote, which spreadsheets show as text. Only text
cells change: numbers, including negative ones, stay numbers.
"""
from __future__ import annotations

import io

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """``value`` with a leading single quote when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (object, string and categorical columns) are neutralised."""
    out = df.copy()
    for name in out.columns:
        column = out[name]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            column = column.astype(object)
        elif not (dtype == object or pd.api.types.is_string_dtype(dtype)):
            continue  # numbers, booleans and dates are never read as formulas
        out[name] = column.map(neutralise, na_action="ignore")
    # Column names are cells too (the header row).
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV (no index) with formula-like text cells neutralised, for a download or a file."""
    buf = io.StringIO()
    # CRLF rows, as RFC 4180 has them: then a text cell holding a bare carriage return is quoted
    # too (the csv module quotes only the line terminator's characters), instead of splitting a row.
    safe_frame(df).to_csv(buf, index=False, lineterminator="\r\n")
    return buf.getvalue().encode("utf-8")
