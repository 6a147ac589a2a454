"""CSV that opens correctly in Excel and cannot run formulas.

- UTF-8 with a byte-order mark, so Excel detects the encoding (Polish names survive).
- ``sep=";"`` with ``decimal=","`` for locales such as pl-PL, where Excel expects them.
- Dates and times ISO-8601; units spelled out in the header.
- CSV injection (OWASP): a text cell beginning with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return is prefixed with ``'`` so a spreadsheet shows it as text. Numbers
  are written by us as numbers, so ``-3.5`` stays a number.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"

# Column -> header with its unit; columns not listed keep their name.
HEADERS = {
    "value": "value (unit in 'unit')",
    "previous": "previous period value (unit in 'unit')",
    "delta_previous": "delta vs previous period (unit in 'unit')",
    "delta_previous_pct": "delta vs previous period (%)",
    "last_year": "same period last year value (unit in 'unit')",
    "delta_last_year": "delta vs same period last year (unit in 'unit')",
    "delta_last_year_pct": "delta vs same period last year (%)",
    "target": "target (unit in 'unit')",
    "started_at": "start (ISO-8601)",
    "ended_at": "end (ISO-8601)",
    "coverage": "coverage (blank: the whole period; partial: from when, share of the period)",
    "previous_coverage": "previous period coverage (blank: whole)",
    "last_year_coverage": "same period last year coverage (blank: whole)",
}


class CsvOptionError(ValueError):
    """Separator and decimal mark that would make the file unreadable."""


def neutralise(text: str) -> str:
    """A text cell a spreadsheet will not evaluate."""
    return "'" + text if text.startswith(DANGEROUS_START) else text


def _number(value: float, decimal: str) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".") if math.isfinite(value) else ""
    if text in ("-0", ""):
        text = "0" if math.isfinite(value) else ""
    return text.replace(".", decimal) if decimal != "." else text


def cell(value: Any, decimal: str = ".") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return _number(float(value), decimal)
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return neutralise(str(value))


def check_options(sep: str, decimal: str) -> None:
    """Raise CsvOptionError for a separator / decimal mark pair that cannot be read back."""
    if sep not in (",", ";", "\t"):
        raise CsvOptionError(f"separator {sep!r} is not supported; use ',', ';' or a tab")
    if decimal not in (".", ","):
        raise CsvOptionError(f"decimal mark {decimal!r} is not supported; use '.' or ','")
    if sep == decimal:
        raise CsvOptionError("separator and decimal mark are both ','; use sep=';' with decimal=','")


def write(rows: Iterable[dict[str, Any]] | pd.DataFrame, columns: list[str] | None = None, *,
          sep: str = ",", decimal: str = ".", bom: bool = True,
          headers: dict[str, str] | None = None) -> bytes:
    """Rows as CSV bytes. ``headers`` renames columns (default: the report's ``HEADERS``,
    units spelled out); ``{}`` keeps every column's own name."""
    headers = HEADERS if headers is None else headers
    check_options(sep, decimal)
    if isinstance(rows, pd.DataFrame):
        columns = columns or list(rows.columns)
        records = rows.to_dict("records")
    else:
        records = list(rows)
        columns = columns or (list(records[0]) if records else [])
    out = io.StringIO()
    w = csv.writer(out, delimiter=sep, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    w.writerow([headers.get(c, c) for c in columns])
    for r in records:
        w.writerow([cell(r.get(c), decimal) for c in columns])
    return ((BOM if bom else "") + out.getvalue()).encode("utf-8")
