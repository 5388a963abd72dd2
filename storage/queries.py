"""Read models for the pages: plain queries on a reader connection, returned as DataFrames."""

from __future__ import annotations

import pandas as pd

from storage.db import Database


def symbols(db: Database) -> list[str]:
    """Return the symbols that have bars, alphabetically."""
    return [r["symbol"] for r in db.query("SELECT DISTINCT symbol FROM bars_1m ORDER BY symbol")]


def bars(db: Database, symbol: str, since_ms: int = 0, limit: int = 5000) -> pd.DataFrame:
    """Return up to ``limit`` most recent 1-minute bars of ``symbol`` since ``since_ms``, oldest first."""
    rows = db.query(
        "SELECT * FROM (SELECT start, open, high, low, close, volume, ticks FROM bars_1m "
        "WHERE symbol=? AND start>=? ORDER BY start DESC LIMIT ?) ORDER BY start",
        (symbol, since_ms, limit))
    frame = pd.DataFrame(rows, columns=["start", "open", "high", "low", "close", "volume", "ticks"])
    frame["time"] = pd.to_datetime(frame["start"], unit="ms", utc=True)
    return frame


def latest_ticks(db: Database) -> pd.DataFrame:
    """Return the last tick of every symbol."""
    rows = db.query(
        "SELECT t.* FROM ticks t JOIN (SELECT symbol, max(timestamp) AS ts FROM ticks GROUP BY symbol) l "
        "ON t.symbol=l.symbol AND t.timestamp=l.ts ORDER BY t.symbol")
    return pd.DataFrame(rows, columns=["symbol", "timestamp", "price", "open_24h", "high_24h", "low_24h",
                                       "volume_24h", "change_pct_24h", "tick_volume"])


SIGNAL_COLUMNS = ["symbol", "model", "timestamp", "signal", "prediction_type", "predicted_value", "current_price",
                  "expected_change_pct", "confidence", "model_version"]


def _signals_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=SIGNAL_COLUMNS)
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def signals(db: Database, symbol: str | None = None, *, since_ms: int = 0, model: str | None = None,
            actionable: bool = False, limit: int = 500) -> pd.DataFrame:
    """Return up to ``limit`` most recent stored signals, newest first; ``actionable`` keeps BUY and SELL."""
    where, params = ["timestamp>=?"], [since_ms]
    if symbol:
        where.append("symbol=?")
        params.append(symbol)
    if model:
        where.append("model=?")
        params.append(model)
    if actionable:
        where.append("signal!='HOLD'")
    rows = db.query(f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM ml_signals WHERE {' AND '.join(where)} "
                    "ORDER BY timestamp DESC LIMIT ?", (*params, limit))
    return _signals_frame(rows)


def latest_signals(db: Database) -> pd.DataFrame:
    """Return the newest signal of every (symbol, model)."""
    rows = db.query(
        f"SELECT {', '.join('s.' + c for c in SIGNAL_COLUMNS)} FROM ml_signals s JOIN "
        "(SELECT symbol, model, max(timestamp) AS ts FROM ml_signals GROUP BY symbol, model) l "
        "ON s.symbol=l.symbol AND s.model=l.model AND s.timestamp=l.ts ORDER BY s.symbol, s.model")
    return _signals_frame(rows)
