"""The behaviour stage's context read (``storage.behaviour.context``) costs the same for a user with
200 earlier records or 20,000: it reads the rows around the batch, never the user's history.

Counted in SQLite virtual-machine steps (a progress handler), never in seconds. The soak
(``python -m bench.soak``) found the part that looks for big losses before the batch reading every
entry since the start of the overtrading history, a cost that grew with every trade stored.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pipeline.journal.behaviour_book import Row
from storage import behaviour
from storage.db import Database
from tests.sqlite_steps import steps as sqlite_steps

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC: the batch's first entry


def history(user: str, n: int) -> list[Row]:
    """``n`` small winning trades, each closed a minute after its entry, in the 10 hours before T0."""
    step, start = 10 * 60 * MIN // n, T0 - 10 * 60 * MIN
    times = [start + i * step for i in range(n)]
    return [
        Row(user, f"{user}{i}", "trade", "BTCUSDT", "BUY", f"{user}{i}", t, t + MIN, 100.0, 1.0, 1.0)
        for i, t in enumerate(times)
    ]


def params(user: str) -> dict[str, Any]:
    """What the stage asks for a batch entered at T0 (its default rules' windows and counts)."""
    return {
        "u": user,
        "f0": T0,
        "hi": T0 + 120 * MIN,
        "lo": T0 - 120 * MIN,
        "hist": T0 - 15 * 86_400_000,
        "min_loss": 500.0,
        "min_pct": 3.0,
        "closes": 26,
        "k": 25,
    }


def steps(conn: sqlite3.Connection, user: str) -> tuple[int, int]:
    """SQLite virtual-machine steps (in hundreds) of one context read, and the rows it returned."""
    n, rows = sqlite_steps(conn, lambda: behaviour.context(conn, params(user)))
    return n, len(rows)


def test_the_context_read_costs_the_same_with_200_or_20000_earlier_records(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    db.write(lambda d: behaviour.store(d.conn, history("ann", 200) + history("bob", 20_000), []))
    conn = db.reader().conn
    (few, few_rows), (many, many_rows) = steps(conn, "ann"), steps(conn, "bob")
    assert min(few_rows, many_rows) >= 26  # at least the last 26 closes before the batch (streaks)
    # Reading every entry since the history's start costs about 100 times as much for 100 times the rows.
    assert many < 2 * few + 10, (few, many)
    db.close()
