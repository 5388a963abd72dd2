"""The paper account's door: orders in their last state, the account now and over time
(``orders``, ``portfolio_state``, ``portfolio_equity``).

The virtual exchange writes them (the compacted orders topic is the truth; this is what pages
read). An order row moves forward only: a late PENDING never overwrites a FILLED or CLOSED one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from storage.db import Database
from storage.signals import equal_terms
from storage.sql import upsert

ORDER_COLUMNS = [
    "order_id",
    "symbol",
    "action",
    "order_type",
    "status",
    "quantity",
    "price",
    "created_at",
    "updated_at",
    "strategy",
    "model",
    "fill_price",
    "fill_fee",
    "filled_at",
    "exit_price",
    "exit_fee",
    "closed_at",
    "exit_reason",
    "pnl",
    "reason",
    "closes",
]
EQUITY_COLUMNS = ["timestamp", "cash", "equity", "exposure", "fees_paid", "realized"]


def store(
    conn: sqlite3.Connection,
    orders: Sequence[tuple[Any, ...]],
    *,
    equity: tuple[Any, ...] | None,
    snapshot_json: str,
    now_ms: int,
) -> None:
    """Write orders (rows in the table's column order, ``message`` last), an equity point
    (``EQUITY_COLUMNS`` order) when given, and the account's snapshot."""
    if orders:
        conn.executemany(
            "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(order_id) "
            "DO UPDATE SET status=excluded.status, updated_at=excluded.updated_at, "
            "fill_price=excluded.fill_price, fill_fee=excluded.fill_fee, filled_at=excluded.filled_at, "
            "exit_price=excluded.exit_price, exit_fee=excluded.exit_fee, closed_at=excluded.closed_at, "
            "exit_reason=excluded.exit_reason, pnl=excluded.pnl, reason=excluded.reason, "
            "message=excluded.message "
            "WHERE excluded.status != 'PENDING' OR orders.status = 'PENDING'",
            orders,
        )
    if equity is not None:
        conn.execute(
            upsert("portfolio_equity", "timestamp, cash, equity, exposure, fees_paid, realized", "timestamp"), equity
        )
    conn.execute(upsert("portfolio_state", "id, updated_at, snapshot", "id"), (1, now_ms, snapshot_json))


def orders(db: Database, symbol: str | None = None, status: str | None = None, limit: int = 500) -> pd.DataFrame:
    """Return up to ``limit`` orders in their last state as the virtual exchange stored them, newest
    first, with ``created``/``updated`` as UTC times."""
    where, params = equal_terms(symbol=symbol, status=status)
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE {' AND '.join(where) or '1=1'} "
            "ORDER BY created_at DESC, order_id DESC LIMIT ?",
            (*params, limit),
        )
        .fetchall()
    )
    frame = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    frame["created"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
    frame["updated"] = pd.to_datetime(frame["updated_at"], unit="ms", utc=True)
    return frame


def order_symbols(db: Database) -> list[str]:
    """Return the symbols that have orders, alphabetically."""
    return [r[0] for r in db.reader().conn.execute("SELECT DISTINCT symbol FROM orders ORDER BY symbol")]


def traded_symbols(db: Database) -> list[str]:
    """Return the symbols of BUY orders that filled (open or closed), alphabetically."""
    return [
        r[0]
        for r in db.reader().conn.execute(
            "SELECT DISTINCT symbol FROM orders WHERE action='BUY' AND filled_at IS NOT NULL ORDER BY symbol"
        )
    ]


def portfolio_state(db: Database) -> dict[str, Any] | None:
    """Return the paper account now (``Exchange.snapshot()`` plus ``updated_at``), or None before
    the virtual exchange has stored one."""
    row = db.reader().conn.execute("SELECT updated_at, snapshot FROM portfolio_state WHERE id=1").fetchone()
    if row is None:
        return None
    return {**json.loads(row[1]), "updated_at": row[0]}


def equity_curve(db: Database, since_ms: int = 0) -> pd.DataFrame:
    """Return the account's equity points since ``since_ms``, oldest first, with ``time`` (UTC)."""
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(EQUITY_COLUMNS)} FROM portfolio_equity WHERE timestamp>=? ORDER BY timestamp",
            (since_ms,),
        )
        .fetchall()
    )
    frame = pd.DataFrame(rows, columns=EQUITY_COLUMNS)
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def position_order(db: Database, symbol: str, filled_at: int, closed_at: int) -> dict[str, Any] | None:
    """Return the BUY order whose position filled at ``filled_at`` and closed at ``closed_at`` (a paper
    trade in the journal), as its last message, or None."""
    row = (
        db.reader()
        .conn.execute(
            "SELECT message FROM orders WHERE symbol=? AND action='BUY' AND filled_at=? AND closed_at=? LIMIT 1",
            (symbol, filled_at, closed_at),
        )
        .fetchone()
    )
    return None if row is None else dict(json.loads(row[0]))
