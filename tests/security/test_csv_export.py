"""The journal's CSV export defuses every form a spreadsheet reads as a formula (OWASP CSV injection),
including those that hide behind leading whitespace, line breaks or full-width characters."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.journal.formats import escape_cell

FORMS = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1:A2)",
    '=HYPERLINK("http://evil.example","x")',
    "=cmd|' /C calc'!A0",
    " =1+1",
    "  =1+1",
    "\n=1+1",
    "\r=1+1",
    "\t=1+1",
    "\r\n=1+1",
    "\u00a0=1+1",  # no-break space
    "\u3000=1+1",  # ideographic space
    "\x00=1+1",
    "\x0b=1+1",
    "\uff1d1+1",  # full-width equals
    "\uff0b1+1",
    "\uff0d1+1",
    "\uff20SUM(A1)",
]


@pytest.mark.parametrize("cell", FORMS)
def test_every_formula_form_is_escaped(cell: str) -> None:
    safe = escape_cell(cell)
    assert safe == "'" + cell
    # written and read back by a CSV reader, the cell still starts with the quote mark
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe, "x"])
    assert next(csv.reader(io.StringIO(buffer.getvalue())))[0].startswith("'")


@pytest.mark.parametrize("cell", ["breakout", "a=b", "", "BTCUSDT", "1.5", "note: +5%", "Ümlaut = fine"])
def test_ordinary_text_is_left_alone(cell: str) -> None:
    assert escape_cell(cell) == cell
