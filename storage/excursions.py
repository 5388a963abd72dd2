"""The excursions door (``trade_excursions``): each closed trade's MFE, MAE and R, as the
``excursions`` worker computed them from the bars.

The worker asks what changed (``change_token``), reads the closed trades with what they were last
computed from (``closed_with_state``), and writes results (``store``) in one transaction; pages and
the API read them (``for_user``, ``of_trade``). Rows of trades the journal no longer holds are
deleted (``forget_orphans``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipeline.journal.excursions import COLUMNS as RESULT_COLUMNS
from storage.db import Database
from storage.sql import upsert

# The domain's result columns, then what the store keeps to know when to compute a trade again.
COLUMNS = [*RESULT_COLUMNS, "sig", "bars_until", "computed_at"]
TRADE_COLUMNS = [
    "trade_id",
    "user_id",
    "symbol",
    "side",
    "entry_price",
    "exit_price",
    "quantity",
    "entry_time",
    "exit_time",
    "pnl",
    "fees",
    "stop_loss",
    "setup",
    "sig",
    "status",
    "bars_until",
]

# Closed trades (whole trades with an exit, round trips) with the trader's setup edits, and their
# last computed state.
_CLOSED = """
SELECT t.trade_id, t.user_id, t.symbol, t.side, t.entry_price, t.exit_price, t.quantity, t.entry_time, t.exit_time,
    t.pnl, t.fees, t.stop_loss, CASE WHEN a.trade_id IS NULL THEN t.setup ELSE a.setup END AS setup,
    e.sig, e.status, e.bars_until
FROM journal_trades t
LEFT JOIN journal_annotations a ON a.trade_id = t.trade_id
LEFT JOIN trade_excursions e ON e.trade_id = t.trade_id
WHERE t.kind IN ('trade', 'round_trip') AND t.exit_price IS NOT NULL AND t.exit_time IS NOT NULL
"""


def change_token(db: Database) -> tuple[Any, ...]:
    """A value that changes whenever the closed trades, the trader's edits or the bars may have."""
    conn = db.reader().conn
    trades = conn.execute("SELECT count(*), max(stored_at) FROM journal_trades").fetchone()
    edits = conn.execute("SELECT count(*), max(updated_at) FROM journal_annotations").fetchone()
    bars = conn.execute("SELECT max(start) FROM bars_1m").fetchone()
    return (*trades, *edits, *bars)


def closed_with_state(db: Database) -> pd.DataFrame:
    """Every closed trade with ``sig``, ``status`` and ``bars_until`` of its stored result (None
    when it has none)."""
    rows = db.reader().conn.execute(_CLOSED).fetchall()
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)


def store(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Upsert results (``COLUMNS`` order), inside the caller's write transaction."""
    conn.executemany(
        upsert("trade_excursions", COLUMNS, "trade_id"),
        rows,
    )


def forget_orphans(conn: sqlite3.Connection) -> int:
    """Delete the results of trades the journal no longer holds; return how many."""
    return conn.execute(
        "DELETE FROM trade_excursions WHERE trade_id NOT IN (SELECT trade_id FROM journal_trades)"
    ).rowcount


def for_user(db: Database, user_id: str) -> pd.DataFrame:
    """Return the user's results (``COLUMNS``), newest computation first."""
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM trade_excursions WHERE user_id=? ORDER BY computed_at DESC", (user_id,)
        )
        .fetchall()
    )
    return pd.DataFrame(rows, columns=COLUMNS)


def of_trade(db: Database, trade_id: str) -> dict[str, Any] | None:
    """Return one trade's result, or None when it has not been computed yet."""
    row = (
        db.reader()
        .conn.execute(f"SELECT {', '.join(COLUMNS)} FROM trade_excursions WHERE trade_id=?", (trade_id,))
        .fetchone()
    )
    return None if row is None else dict(zip(COLUMNS, row))
