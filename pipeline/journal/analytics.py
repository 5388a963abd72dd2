"""Trading analytics over closed trades (pure pandas; no I/O).

Every function takes a DataFrame of closed trades with the columns ``trade_id, symbol, side,
entry_price, exit_price, quantity, entry_time, exit_time, pnl, fees, stop_loss, tags, setup``.
Times are Unix milliseconds (UTC) or timezone-aware datetimes; ``tags`` holds lists of strings;
``pnl`` is net of fees. A trade without ``pnl`` gets it from its prices, less its known fees.
Results are JSON-ready (plain floats, ints and None) or small DataFrames for charts.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

BreakdownBy = Literal["symbol", "tag", "setup", "weekday", "hour"]
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NO_TAG = "(untagged)"
NO_SETUP = "(no setup)"
BREAKDOWN_COLUMNS = ["key", "trades", "net_pnl", "win_rate", "expectancy"]
COLUMNS = [
    "trade_id",
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
    "tags",
    "setup",
]


def to_utc(values: pd.Series) -> pd.Series:
    """Return times as timezone-aware UTC datetimes; numbers are read as Unix milliseconds."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    return pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit="ms", utc=True)


def realized_pnl(closed: pd.DataFrame) -> pd.Series:
    """Return each trade's net P&L: its own ``pnl``, else (exit - entry) x quantity x direction - fees."""
    direction = np.where(closed["side"].astype(str).str.upper() == "SELL", -1.0, 1.0)
    gross = (
        (pd.to_numeric(closed["exit_price"]) - pd.to_numeric(closed["entry_price"]))
        * pd.to_numeric(closed["quantity"])
        * direction
    )
    computed = gross - pd.to_numeric(closed["fees"]).fillna(0.0)
    return pd.to_numeric(closed["pnl"]).astype(float).fillna(computed.astype(float))


def _prepared(closed: pd.DataFrame) -> pd.DataFrame:
    """Return the trades ordered by exit time with float ``pnl`` and UTC ``entry_at``/``exit_at``."""
    frame = closed.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None if column in ("tags", "setup") else np.nan
    if frame.empty:
        frame["pnl"] = pd.Series(dtype=float)
        frame["entry_at"] = pd.Series(dtype="datetime64[ns, UTC]")
        frame["exit_at"] = pd.Series(dtype="datetime64[ns, UTC]")
        return frame
    frame["pnl"] = realized_pnl(frame)
    frame["entry_at"] = to_utc(frame["entry_time"])
    frame["exit_at"] = to_utc(frame["exit_time"]).fillna(frame["entry_at"])
    return frame.sort_values(["exit_at", "entry_at", "trade_id"], kind="stable").reset_index(drop=True)


def _num(value: Any) -> float | None:
    """Return a plain float, or None for missing or infinite values."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _risk(frame: pd.DataFrame) -> pd.Series:
    """Return each trade's initial risk in money, |entry - stop| x quantity (NaN without a stop)."""
    stop = pd.to_numeric(frame["stop_loss"]).astype(float)
    risk = (pd.to_numeric(frame["entry_price"]) - stop).abs() * pd.to_numeric(frame["quantity"])
    return risk.where(risk > 0)


def _drawdown(pnl: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Return the cumulative P&L and its fall below the running peak (the peak starts at 0)."""
    equity = pnl.cumsum()
    peak = equity.cummax().clip(lower=0.0)
    return equity, equity - peak


def summary(closed: pd.DataFrame) -> dict[str, Any]:
    """Return the headline statistics of closed trades.

    ``win_rate`` is wins / trades (a win has pnl > 0); ``profit_factor`` is gross profit over
    |gross loss|, None when there is no loss; ``avg_r`` is the mean of pnl / initial risk over
    trades with a stop; ``max_drawdown`` is the largest fall of cumulative P&L from a running
    peak that starts at 0, as a positive amount. Statistics without trades are None.
    """
    frame = _prepared(closed)
    pnl = frame["pnl"]
    n = len(frame)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_profit, gross_loss = float(wins.sum()), float(-losses.sum())
    r_multiples = (pnl / _risk(frame)).dropna() if n else pd.Series(dtype=float)
    _, drawdown = _drawdown(pnl)
    best = frame.loc[pnl.idxmax()] if n else None
    worst = frame.loc[pnl.idxmin()] if n else None
    return {
        "trades": n,
        "wins": len(wins),
        "losses": len(losses),
        "net_pnl": float(pnl.sum()),
        "gross_profit": gross_profit,
        "gross_loss": gross_loss,
        "fees": float(pd.to_numeric(frame["fees"]).sum()) if n else 0.0,
        "win_rate": len(wins) / n if n else None,
        "profit_factor": gross_profit / gross_loss if gross_loss > 0 else None,
        "expectancy": _num(pnl.mean()) if n else None,
        "avg_win": _num(wins.mean()) if len(wins) else None,
        "avg_loss": _num(losses.mean()) if len(losses) else None,
        "avg_r": _num(r_multiples.mean()) if len(r_multiples) else None,
        "trades_with_stop": len(r_multiples),
        "max_drawdown": float(-drawdown.min()) if n else 0.0,
        "best_trade": _num(best["pnl"]) if best is not None else None,
        "best_trade_id": str(best["trade_id"]) if best is not None else None,
        "worst_trade": _num(worst["pnl"]) if worst is not None else None,
        "worst_trade_id": str(worst["trade_id"]) if worst is not None else None,
    }


def equity_curve(closed: pd.DataFrame) -> pd.DataFrame:
    """Return ``time`` (exit, UTC), ``equity`` (cumulative P&L) and ``drawdown`` (equity minus
    its running peak, 0 or negative), one row per trade in exit order."""
    frame = _prepared(closed)
    equity, drawdown = _drawdown(frame["pnl"])
    return pd.DataFrame({"time": frame["exit_at"], "equity": equity.astype(float), "drawdown": drawdown.astype(float)})


def daily_pnl(closed: pd.DataFrame) -> pd.DataFrame:
    """Return ``date`` (UTC day of the exit, a midnight timestamp), ``pnl`` and ``trades`` per day."""
    frame = _prepared(closed)
    if frame.empty:
        return pd.DataFrame(
            {
                "date": pd.Series(dtype="datetime64[ns]"),
                "pnl": pd.Series(dtype=float),
                "trades": pd.Series(dtype="int64"),
            }
        )
    days = frame["exit_at"].dt.tz_localize(None).dt.normalize().rename("date")
    out = frame.groupby(days).agg(pnl=("pnl", "sum"), trades=("pnl", "size")).reset_index()
    out["trades"] = out["trades"].astype("int64")
    return out


def breakdown(closed: pd.DataFrame, by: BreakdownBy) -> pd.DataFrame:
    """Return ``key, trades, net_pnl, win_rate, expectancy`` per group.

    A trade with several tags counts once in each; weekday and hour are of the entry time (UTC).
    Weekdays come Mon..Sun and hours 0..23 (only those with trades); the other keys come by net
    P&L, best first.
    """
    frame = _prepared(closed)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "key" else float) for c in BREAKDOWN_COLUMNS})
    if by == "symbol":
        keys = frame["symbol"].astype(str)
    elif by == "setup":
        keys = frame["setup"].where(frame["setup"].notna() & (frame["setup"].astype(str) != ""), NO_SETUP)
    elif by == "tag":
        tags = frame["tags"].map(lambda t: list(t) if isinstance(t, (list, tuple)) and len(t) else [NO_TAG])
        frame = frame.assign(tag=tags).explode("tag").reset_index(drop=True)
        keys = frame["tag"]
    elif by == "weekday":
        keys = frame["entry_at"].dt.day_of_week
    elif by == "hour":
        keys = frame["entry_at"].dt.hour
    else:
        raise ValueError(f"unknown breakdown {by!r}; one of symbol, tag, setup, weekday, hour")
    grouped = frame.assign(key=keys.to_numpy(), win=(frame["pnl"] > 0).astype(float)).groupby("key")
    out = grouped.agg(
        trades=("pnl", "size"), net_pnl=("pnl", "sum"), win_rate=("win", "mean"), expectancy=("pnl", "mean")
    ).reset_index()
    out["trades"] = out["trades"].astype("int64")
    if by in ("weekday", "hour"):
        out = out.sort_values("key").reset_index(drop=True)
        if by == "weekday":
            out["key"] = [WEEKDAYS[int(k)] for k in out["key"]]
        else:
            out["key"] = out["key"].astype("int64")
    else:
        out["key"] = out["key"].astype(str)
        out = out.sort_values(["net_pnl", "key"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return out[BREAKDOWN_COLUMNS]
