"""The chunked ``IN (...)`` lookup: one query per chunk, so a long list never passes SQLite's
limit of bound variables (999 on older builds)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

CHUNK = 500


def select_in(
    conn: sqlite3.Connection, sql: str, values: Iterable[Any], *, params: Sequence[Any] = (), chunk: int = CHUNK
) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of ``sql`` for ``values`` a chunk at a time.

    ``sql`` holds ``{marks}`` where the placeholders of the ``IN`` list go; ``params`` are bound
    before them. Rows come chunk by chunk, each chunk in the order its query gives."""
    values = list(values)
    for i in range(0, len(values), chunk):
        part = values[i : i + chunk]
        yield from conn.execute(sql.format(marks=",".join("?" * len(part))), (*params, *part))
