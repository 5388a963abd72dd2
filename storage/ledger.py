"""The normalizer's ledger door: fills once each, the open FIFO lots, and the whole trades
published (``journal_fills``, ``journal_lots``, ``journal_ledger_records``).

Every function runs inside the normalizer's write transaction on its connection, except
``known_ids`` (the importer's check before it publishes), which reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from storage.db import Database
from storage.select import select_in
from storage.sql import upsert

Key = tuple[str, str]  # (user_id, symbol)
LOT_COLUMNS = "lot_id, user_id, symbol, side, price, quantity, remaining, time, seq, fee_quote_per_unit"
_UPSERT_RECORD = upsert("journal_ledger_records", "trade_id, user_id, symbol, fill_id, record", "trade_id")
FILL_COLUMNS = "fill_id, seq, user_id, symbol, side, price, quantity, time, fee_quote, source"


def existing(conn: sqlite3.Connection, table: str, column: str, ids: Iterable[str]) -> set[str]:
    """Return which of ``ids`` are in ``table.column`` (fills by ``fill_id``, records by ``trade_id``)."""
    return {r[0] for r in select_in(conn, f"SELECT {column} FROM {table} WHERE {column} IN ({{marks}})", ids)}


def known_ids(db: Database, ids: Sequence[str]) -> set[str]:
    """Return which raw ids the ledger already holds: ``f-`` ids as fills, ``t-`` ids as whole trades."""
    conn = db.reader().conn
    return existing(conn, "journal_fills", "fill_id", [i for i in ids if i.startswith("f-")]) | existing(
        conn, "journal_ledger_records", "trade_id", [i for i in ids if i.startswith("t-")]
    )


def record_trades(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Remember whole trades as published: (trade_id, user_id, symbol, fill_id, record JSON)."""
    conn.executemany(_UPSERT_RECORD, rows)


def trade_records(conn: sqlite3.Connection, trade_ids: Iterable[str]) -> list[str]:
    """Return the published JSON of whole trades, by trade id (each is its own; order is not meaning)."""
    return [
        r[0]
        for r in select_in(
            conn, "SELECT record FROM journal_ledger_records WHERE trade_id IN ({marks}) ORDER BY trade_id", trade_ids
        )
    ]


def fill_records(conn: sqlite3.Connection, fill_ids: Iterable[str]) -> list[str]:
    """Return the records (lots, round trips; one JSON a line) each fill made, in fill order."""
    return [
        r[0]
        for r in select_in(conn, "SELECT records FROM journal_fills WHERE fill_id IN ({marks}) ORDER BY seq", fill_ids)
    ]


def last_seq(conn: sqlite3.Connection) -> int:
    """Return the last fill's sequence number (fills are only appended, in seq order), or 0."""
    return conn.execute("SELECT coalesce(max(seq), 0) FROM journal_fills").fetchone()[0]


def last_fill_time(conn: sqlite3.Connection, key: Key) -> int | None:
    """Return the time of the newest fill of (user, symbol), or None."""
    return conn.execute("SELECT max(time) FROM journal_fills WHERE user_id=? AND symbol=?", key).fetchone()[0]


def add_fills(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Append fills: (fill_id, seq, user_id, symbol, side, price, quantity, time, fee, fee_asset,
    fee_quote, exchange_id, source, format, records)."""
    conn.executemany("INSERT INTO journal_fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def fills(conn: sqlite3.Connection, key: Key) -> list[tuple[Any, ...]]:
    """Return every fill of (user, symbol) in FIFO order, as ``FILL_COLUMNS``."""
    return conn.execute(
        f"SELECT {FILL_COLUMNS} FROM journal_fills WHERE user_id=? AND symbol=? ORDER BY time, seq", key
    ).fetchall()


def fills_between(db: Database, user_id: str, symbol: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
    """Return the user's fills of ``symbol`` in [``since_ms``, ``until_ms``] in time order: ``fill_id``,
    ``side``, ``price``, ``quantity``, ``time``, ``fee_quote`` (for the trade detail's chart)."""
    return db.query(
        "SELECT fill_id, side, price, quantity, time, fee_quote FROM journal_fills WHERE user_id=? AND symbol=? "
        "AND time>=? AND time<=? ORDER BY time, seq",
        (user_id, symbol, since_ms, until_ms),
    )


def set_fill_records(conn: sqlite3.Connection, rows: Sequence[tuple[str, str]]) -> None:
    """Replace what fills made: (records, fill_id)."""
    conn.executemany("UPDATE journal_fills SET records=? WHERE fill_id=?", rows)


def lots(conn: sqlite3.Connection, key: Key) -> list[tuple[Any, ...]]:
    """Return the open lots of (user, symbol) in FIFO order, as ``LOT_COLUMNS``."""
    return conn.execute(
        f"SELECT {LOT_COLUMNS} FROM journal_lots WHERE user_id=? AND symbol=? ORDER BY time, seq", key
    ).fetchall()


def replace_lots(conn: sqlite3.Connection, key: Key, rows: Sequence[tuple[Any, ...]]) -> None:
    """Make ``rows`` (``LOT_COLUMNS`` order) the open lots of (user, symbol)."""
    conn.execute("DELETE FROM journal_lots WHERE user_id=? AND symbol=?", key)
    conn.executemany("INSERT INTO journal_lots VALUES (?,?,?,?,?,?,?,?,?,?)", rows)


def last_fill_time_from(db: Database, user_id: str, symbol: str, source: str) -> int | None:
    """Return the time of the newest fill of (user, symbol) that ``source`` published, or None
    (where an exchange sync resumes after a restart)."""
    row = (
        db.reader()
        .conn.execute(
            "SELECT max(time) FROM journal_fills WHERE user_id=? AND symbol=? AND source=?", (user_id, symbol, source)
        )
        .fetchone()
    )
    return row[0] if row else None
