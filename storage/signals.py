"""The signals table's door (``ml_signals``): the signal store writes, pages read.

A signal's id is (symbol, model, timestamp), so writing the same signal twice gives one row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from storage.db import Database
from storage.sql import upsert

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

_UPSERT = upsert("ml_signals", [*SIGNAL_COLUMNS, "features"], "symbol, model, timestamp")


def store(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], *, keep_ms: int | None = None) -> None:
    """Upsert signal rows (the table's column order, ``features`` last as JSON); with ``keep_ms``,
    delete signals older than that before the newest stored one."""
    conn.executemany(_UPSERT, rows)
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


def latest_of(db: Database, symbol: str, models: Sequence[str]) -> list[dict[str, Any]]:
    """Return the newest stored signal of each of ``models`` for ``symbol`` (one index seek each)."""
    conn = db.reader().conn
    out = []
    for model in models:
        row = conn.execute(
            f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM ml_signals WHERE symbol=? AND model=? "
            "ORDER BY timestamp DESC LIMIT 1",
            (symbol, model),
        ).fetchone()
        if row is not None:
            out.append(dict(zip(SIGNAL_COLUMNS, row)))
    return out


def signal_at(db: Database, symbol: str, model: str, at_ms: int, max_age_ms: int) -> dict[str, Any] | None:
    """Return ``model``'s last signal of ``symbol`` at or before ``at_ms`` and at most ``max_age_ms``
    older, or None."""
    row = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM ml_signals WHERE symbol=? AND model=? AND timestamp<=? "
            "AND timestamp>=? ORDER BY timestamp DESC LIMIT 1",
            (symbol, model, at_ms, at_ms - max_age_ms),
        )
        .fetchone()
    )
    return None if row is None else dict(zip(SIGNAL_COLUMNS, row))


def between(
    db: Database, symbol: str, since_ms: int, until_ms: int, *, models: Sequence[str] | None = None
) -> pd.DataFrame:
    """Return the signals of ``symbol`` in [``since_ms``, ``until_ms``], oldest first (of ``models``
    when given), with ``time`` (UTC)."""
    where, params = ["symbol=?", "timestamp>=?", "timestamp<=?"], [symbol, since_ms, until_ms]
    if models is not None:
        where.append(f"model IN ({','.join('?' * len(models))})")
        params.extend(models)
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM ml_signals WHERE {' AND '.join(where)} ORDER BY timestamp",
            params,
        )
        .fetchall()
    )
    return _frame(rows)


def last_per_bar(db: Database, symbol: str, model: str, since_ms: int, interval_ms: int = 60_000) -> pd.DataFrame:
    """Return ``model``'s last signal of ``symbol`` in each bar of ``interval_ms`` since ``since_ms``:
    ``bar`` (its start), ``timestamp``, ``expected_change_pct``, ``signal``, ``confidence``, ``current_price``."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT s.timestamp - s.timestamp % :i AS bar, s.timestamp, s.expected_change_pct, s.signal, "
            "s.confidence, s.current_price FROM ml_signals s JOIN (SELECT max(timestamp) AS ts FROM ml_signals "
            "WHERE symbol=:s AND model=:m AND timestamp>=:t GROUP BY timestamp - timestamp % :i) l "
            "ON s.timestamp = l.ts "
            "WHERE s.symbol=:s AND s.model=:m ORDER BY bar",
            {"i": interval_ms, "s": symbol, "m": model, "t": since_ms},
        )
        .fetchall()
    )
    return pd.DataFrame(
        rows, columns=["bar", "timestamp", "expected_change_pct", "signal", "confidence", "current_price"]
    )
