"""CSV reports that a spreadsheet opens as text, never as formulas.

A login or reason is data from a directory or from Okta; a cell starting with `=`, `+`, `-` or
`@` (or a tab or carriage return, which some spreadsheets strip first) would be run as a formula
when an admin opens the report (OWASP "CSV injection"). Such cells get a leading `'`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The cell as text, with a `'` in front when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write `header` and `rows` (cells made safe) to `path`; how many rows were written."""
    written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([safe_cell(cell) for cell in row])
            written += 1
    return written
