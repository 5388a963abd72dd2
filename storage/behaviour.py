"""The behaviour stage's door: each user's recent journal records (``behaviour_trades``).

The stage upserts the records it receives (``store``) and reads the context its rules need for a
batch: the rows around the batch's times, entries per trader day, and one day's entries. The
queries on exit time want the index on ``behaviour_trades (user_id, exit_time)``.

``store`` also keeps ``behaviour_day_counts``, each user's entries per quarter hour, in the same
transaction (it reads the stored rows it replaces or deletes, to move their counts). Counting a
trader day's entries then reads at most 96 rows whatever the day holds: counting the rows
themselves cost each batch a read of every entry of the day (the soak's behaviour stage slowed
as the day filled). Times are milliseconds after 1970 (plausibility refuses earlier ones), so
SQLite's integer division and Python's ``//`` give the same quarter.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from storage.select import select_in
from storage.sql import upsert

MINUTE_MS = 60_000
COLUMNS = "user_id, trade_id, kind, symbol, side, entry_key, entry_time, exit_time, notional, pnl, pnl_pct"
_T = f"SELECT {COLUMNS} FROM behaviour_trades WHERE user_id = :u"
_LAST_ENTRIES = f"""SELECT * FROM ({_T} AND kind != 'round_trip' AND entry_time < :f0
    ORDER BY entry_time DESC LIMIT :k) AS last_entries"""
# The context of a batch (f0 = its earliest entry or exit): rows entered in [f0, hi]; results closed
# in [f0, hi]; the last closes before f0 (streaks); the last entries before f0 (size baselines, and
# the entries after a big loss before f0) and the big losses among them (revenge).
_FIRST_ENTRY = f"coalesce((SELECT min(entry_time) FROM ({_LAST_ENTRIES}) AS e), 0)"
# One expression, so SQLite bounds its exit-time index range by it (two comparisons bounded the range
# by :lo alone and filtered the rest); two-argument max() is SQLite's only, hence the CASE.
_LATER_OF_LO_AND_FIRST_ENTRY = f"CASE WHEN :lo >= {_FIRST_ENTRY} THEN :lo ELSE {_FIRST_ENTRY} END"
_CONTEXT = f"""{_T} AND entry_time BETWEEN :f0 AND :hi
UNION {_T} AND exit_time BETWEEN :f0 AND :hi AND pnl IS NOT NULL AND entry_time BETWEEN :hist AND :hi
UNION SELECT * FROM ({_T} AND exit_time < :f0 AND pnl IS NOT NULL AND entry_time BETWEEN :hist AND :hi
    ORDER BY exit_time DESC LIMIT :closes) AS last_closes
UNION {_LAST_ENTRIES}
UNION {_T} AND exit_time >= {_LATER_OF_LO_AND_FIRST_ENTRY} AND exit_time < :f0
    AND pnl < 0 AND (pnl <= -:min_loss OR pnl_pct <= -:min_pct) AND +entry_time BETWEEN :hist AND :hi"""
# The unary + in the last part keeps SQLite off the entry-time index there: with it, the planner read
# every entry since :hist (weeks of them) instead of the closes in the short exit-time range.
BUCKET_MS = 15 * MINUTE_MS  # every UTC offset is a whole number of quarter hours
_DAY_COUNTS = f"""SELECT entry_time / {BUCKET_MS} AS q, count(*) FROM behaviour_trades
WHERE user_id = ? AND kind != 'round_trip' AND entry_time >= ? AND entry_time < ? GROUP BY q"""
_KEPT_COUNTS = """SELECT bucket, entries FROM behaviour_day_counts
WHERE user_id = ? AND bucket >= ? AND bucket < ? AND entries != 0"""
_MOVE_COUNTS = """INSERT INTO behaviour_day_counts VALUES (?, ?, ?)
ON CONFLICT (user_id, bucket) DO UPDATE SET entries = behaviour_day_counts.entries + excluded.entries"""
_DAY_ENTRIES = """SELECT trade_id, entry_time FROM behaviour_trades WHERE user_id = ? AND kind != 'round_trip'
AND entry_time >= ? AND entry_time < ? ORDER BY entry_time, trade_id LIMIT ? OFFSET ?"""
_UPSERT = upsert("behaviour_trades", COLUMNS, "trade_id")


def stored_results(conn: sqlite3.Connection, trade_ids: Iterable[str]) -> dict[str, tuple[Any, Any]]:
    """Return (exit_time, pnl) of the ids stored."""
    return {
        t: (x, p)
        for t, x, p in select_in(
            conn, "SELECT trade_id, exit_time, pnl FROM behaviour_trades WHERE trade_id IN ({marks})", trade_ids
        )
    }


def store(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], voided: Sequence[str]) -> None:
    """Delete the voided ids and upsert ``rows`` (``COLUMNS`` order), and move the entry counts.

    Run it inside one write transaction: the counts must change with the rows or not at all."""
    final = {r[1]: r for r in rows}  # the last row of an id wins, as the upserts leave it
    moves: Counter[tuple[str, int]] = Counter()
    before = "SELECT user_id, entry_time FROM behaviour_trades WHERE kind != 'round_trip' AND trade_id IN ({marks})"
    for user, entry_time in select_in(conn, before, {*voided, *final}):
        moves[(user, entry_time // BUCKET_MS)] -= 1
    for r in final.values():
        if r[2] != "round_trip":
            moves[(r[0], r[6] // BUCKET_MS)] += 1
    conn.executemany("DELETE FROM behaviour_trades WHERE trade_id = ?", [(i,) for i in voided])
    conn.executemany(_UPSERT, rows)
    conn.executemany(_MOVE_COUNTS, [(user, q, n) for (user, q), n in moves.items() if n])


def context(conn: sqlite3.Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Return the rows a batch's rules need (see ``_CONTEXT``), as ``COLUMNS``."""
    return conn.execute(_CONTEXT, params).fetchall()


def day_counts(conn: sqlite3.Connection, user: str, lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """Return (quarter hour, entries) of ``user``'s entries in [lo, hi); quarters, since every UTC
    offset is a whole number of them, let the caller sum trader days in any time zone.

    Whole quarters come from the kept counts; a quarter that ``lo`` or ``hi`` cuts is counted from
    the rows (at most a quarter hour of them)."""
    first, end = -(-lo_ms // BUCKET_MS), hi_ms // BUCKET_MS  # the whole quarters inside [lo, hi)
    if first >= end:
        return conn.execute(_DAY_COUNTS, (user, lo_ms, hi_ms)).fetchall()
    out = conn.execute(_KEPT_COUNTS, (user, first, end)).fetchall()
    if lo_ms < first * BUCKET_MS:
        out += conn.execute(_DAY_COUNTS, (user, lo_ms, first * BUCKET_MS)).fetchall()
    if end * BUCKET_MS < hi_ms:
        out += conn.execute(_DAY_COUNTS, (user, end * BUCKET_MS, hi_ms)).fetchall()
    return out


def day_entries(
    conn: sqlite3.Connection, user: str, lo_ms: int, hi_ms: int, limit: int, offset: int
) -> list[tuple[str, int]]:
    """Return (trade_id, entry_time) of ``user``'s entries in [lo, hi), by time, a page at a time."""
    return conn.execute(_DAY_ENTRIES, (user, lo_ms, hi_ms, limit, offset)).fetchall()
