"""The signals table's door (``ml_signals``): the signal store writes, pages read.

A signal's id is (symbol, model, timestamp), so writing the same signal twice gives one row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from storage.db import Database

SIGNAL_COLUMNS = [
    "symbol",
    "model",
    "timestamp",
    "signal",
    "prediction_type",
    "predicted_value",
    "current_price",
    "expected_change_pct",
    "confidence",
    "model_version",
]


def store(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], *, keep_ms: int | None = None) -> None:
    """Upsert signal rows (the table's column order, ``features`` last as JSON); with ``keep_ms``,
    delete signals older than that before the newest stored one."""
    conn.executemany("INSERT OR REPLACE INTO ml_signals VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    if keep_ms is not None:
        conn.execute("DELETE FROM ml_signals WHERE timestamp < (SELECT max(timestamp) FROM ml_signals) - ?", (keep_ms,))


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=SIGNAL_COLUMNS)
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def equal_terms(**columns: object) -> tuple[list[str], list[object]]:
    """WHERE terms and parameters for the ``columns`` given a value (None or empty: no filter)."""
    given = {c: v for c, v in columns.items() if v}
    return [f"{c}=?" for c in given], list(given.values())


def signals(
    db: Database,
    symbol: str | None = None,
    *,
    since_ms: int = 0,
    model: str | None = None,
    actionable: bool = False,
    limit: int = 500,
) -> pd.DataFrame:
    """Return up to ``limit`` most recent stored signals, newest first; ``actionable`` keeps BUY and SELL."""
    where, params = equal_terms(symbol=symbol, model=model)
    where.append("timestamp>=?")
    params.append(since_ms)
    if actionable:
        where.append("signal!='HOLD'")
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM ml_signals WHERE {' AND '.join(where)} "
            "ORDER BY timestamp DESC LIMIT ?",
            (*params, limit),
        )
        .fetchall()
    )
    return _frame(rows)


def latest(db: Database) -> pd.DataFrame:
    """Return the newest signal of every (symbol, model)."""
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join('s.' + c for c in SIGNAL_COLUMNS)} FROM ml_signals s JOIN "
            "(SELECT symbol, model, max(timestamp) AS ts FROM ml_signals GROUP BY symbol, model) l "
            "ON s.symbol=l.symbol AND s.model=l.model AND s.timestamp=l.ts ORDER BY s.symbol, s.model"
        )
        .fetchall()
    )
    return _frame(rows)
