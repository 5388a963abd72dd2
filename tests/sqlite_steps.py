"""Cost counted in SQLite's virtual-machine steps instead of seconds, for tests that a read or a pass
does not grow with a table: a progress handler called every 100 steps counts the calls."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def steps(conn: sqlite3.Connection, work: Callable[[], T]) -> tuple[int, T]:
    """Run ``work`` and return the steps (in hundreds) it took on ``conn``, and what it returned."""
    n = 0

    def count() -> int:
        nonlocal n
        n += 1
        return 0

    conn.set_progress_handler(count, 100)
    try:
        result = work()
    finally:
        conn.set_progress_handler(None, 0)
    return n, result
