"""Read models for the pages: plain queries on a reader connection, returned as DataFrames."""

from __future__ import annotations

import json

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


def _equal(**columns: object) -> tuple[list[str], list[object]]:
    """WHERE terms and parameters for the ``columns`` given a value (None or empty: no filter)."""
    given = {c: v for c, v in columns.items() if v}
    return [f"{c}=?" for c in given], list(given.values())


def signals(db: Database, symbol: str | None = None, *, since_ms: int = 0, model: str | None = None,
            actionable: bool = False, limit: int = 500) -> pd.DataFrame:
    """Return up to ``limit`` most recent stored signals, newest first; ``actionable`` keeps BUY and SELL."""
    where, params = _equal(symbol=symbol, model=model)
    where.append("timestamp>=?")
    params.append(since_ms)
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


# --------------------------------------------------------------------------- paper portfolio

ORDER_COLUMNS = ["order_id", "symbol", "action", "order_type", "status", "quantity", "price", "created_at",
                 "updated_at", "strategy", "model", "fill_price", "fill_fee", "filled_at", "exit_price", "exit_fee",
                 "closed_at", "exit_reason", "pnl", "reason", "closes"]
EQUITY_COLUMNS = ["timestamp", "cash", "equity", "exposure", "fees_paid", "realized"]


def orders(db: Database, symbol: str | None = None, status: str | None = None, limit: int = 500) -> pd.DataFrame:
    """Return up to ``limit`` orders in their last state as the virtual exchange stored them, newest
    first, with ``created``/``updated`` as UTC times."""
    where, params = _equal(symbol=symbol, status=status)
    rows = db.query(f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE {' AND '.join(where) or '1=1'} "
                    "ORDER BY created_at DESC, order_id DESC LIMIT ?", (*params, limit))
    frame = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    frame["created"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
    frame["updated"] = pd.to_datetime(frame["updated_at"], unit="ms", utc=True)
    return frame


def order_symbols(db: Database) -> list[str]:
    """Return the symbols that have orders, alphabetically."""
    return [r["symbol"] for r in db.query("SELECT DISTINCT symbol FROM orders ORDER BY symbol")]


def traded_symbols(db: Database) -> list[str]:
    """Return the symbols of BUY orders that filled (open or closed), alphabetically."""
    return [r["symbol"] for r in db.query(
        "SELECT DISTINCT symbol FROM orders WHERE action='BUY' AND filled_at IS NOT NULL ORDER BY symbol")]


def portfolio_state(db: Database) -> dict | None:
    """Return the paper account now (``Exchange.snapshot()`` plus ``updated_at``), or None before
    the virtual exchange has stored one."""
    rows = db.query("SELECT updated_at, snapshot FROM portfolio_state WHERE id=1")
    if not rows:
        return None
    return {**json.loads(rows[0]["snapshot"]), "updated_at": rows[0]["updated_at"]}


def equity_curve(db: Database, since_ms: int = 0) -> pd.DataFrame:
    """Return the account's equity points since ``since_ms``, oldest first, with ``time`` (UTC)."""
    rows = db.query(f"SELECT {', '.join(EQUITY_COLUMNS)} FROM portfolio_equity WHERE timestamp>=? "
                    "ORDER BY timestamp", (since_ms,))
    frame = pd.DataFrame(rows, columns=EQUITY_COLUMNS)
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def buy_and_hold(db: Database, symbols: list[str], since_ms: int, until_ms: int, balance: float) -> pd.DataFrame:
    """Return the value of ``balance`` split equally over ``symbols`` at ``since_ms`` and held until
    ``until_ms``, on the 1-minute bars' closes: columns ``timestamp`` (bar start), ``value`` and ``time``.
    Empty when a symbol has no bar in the period."""
    first = since_ms // 60_000 * 60_000
    empty = pd.DataFrame({"timestamp": pd.Series(dtype="int64"), "value": pd.Series(dtype=float)})
    empty["time"] = pd.to_datetime(empty["timestamp"], unit="ms", utc=True)
    if not symbols or until_ms < first:
        return empty
    marks = ",".join("?" * len(symbols))
    rows = db.query(f"SELECT symbol, start, close FROM bars_1m WHERE symbol IN ({marks}) AND start>=? AND start<=? "
                    "ORDER BY start", (*symbols, first, until_ms))
    if not rows:
        return empty
    closes = pd.DataFrame(rows).pivot_table(index="start", columns="symbol", values="close").sort_index()
    if set(closes.columns) != set(symbols):
        return empty
    closes = closes.ffill().dropna()
    if closes.empty:
        return empty
    growth = closes / closes.iloc[0]
    out = pd.DataFrame({"timestamp": growth.index.astype("int64"),
                        "value": (growth.mean(axis=1) * balance).to_numpy()})
    out["time"] = pd.to_datetime(out["timestamp"], unit="ms", utc=True)
    return out
