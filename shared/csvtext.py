"""CSV text that is safe to open in a spreadsheet: the one helper every CSV
export uses (audit records, tasks, employees).

A cell starting with ``= + - @`` (or a tab or carriage return) would run as a
formula in Excel, LibreOffice or Google Sheets; it is prefixed with ``'`` so it
is shown as text (OWASP, "CSV Injection"). Rows are written with the ``csv``
module (quotes, commas and newlines inside cells survive) and ``\\r\\n`` line
ends (RFC 4180)."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A cell's text: empty for None, quoted with ``'`` if a spreadsheet would run it."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in FORMULA_STARTS else text


def csv_text(rows: Iterable[Sequence[object]], header: Sequence[str] | None = None) -> str:
    """``rows`` (one sequence of cells each) as CSV text, after ``header`` if given."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header is not None:
        writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
