"""What the Import page shows of a file before anything is published: its first rows as the importer
reads them, and their times as an import with the chosen options would read them.

Both read only the first rows (the whole workbook for a spreadsheet, as the importer does).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pipeline.errors import BadMessageError
from pipeline.journal.fills import TradeEntry
from pipeline.journal.formats import READ_OPTIONS, detect_format, row_parser
from pipeline.journal.importer import read_table


def preview_times(
    data: bytes, options: Mapping[str, str] | None = None, rows: int = 5, now_ms: int | None = None
) -> list[tuple[int, int | None, str]]:
    """Return (line, time in Unix ms or None, the problem or "") of the first ``rows`` rows as an
    import with ``options`` (its ``timezone``) would read them, so a wrong zone shows before
    anything is published. Empty when the format is unknown (the mapping comes first)."""
    table = read_table(data)
    fmt = detect_format(table.header)
    if fmt is None:
        return []
    carried = {k: v for k, v in (options or {}).items() if k in READ_OPTIONS and v}
    try:
        parse = row_parser(fmt, table.header, carried or None)
    except BadMessageError as exc:
        return [(table.header_line, None, str(exc))]
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    width = len(table.header)
    out: list[tuple[int, int | None, str]] = []
    for row in table.rows():
        cells = row.cells[:width] + [""] * (width - len(row.cells))
        try:
            item = parse(dict(zip(table.header, cells)), now)
        except BadMessageError as exc:
            out.append((row.line, None, str(exc)))
        else:
            out.append((row.line, item.entry_time if isinstance(item, TradeEntry) else item.time, ""))
        if len(out) >= rows:
            break
    return out
