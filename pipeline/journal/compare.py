"""Trader against models: the same statistics for every journal account on the same symbols and
period, and whether a model agreed with each of the trader's entries at that moment (pure pandas).

``compare`` gives one row per account (the trader's own, ``paper:<model>``): closed trades, net
P&L, win rate, expectancy in money and in R (``pipeline.journal.excursions.with_r``), the largest
drawdown of cumulative P&L and the fees, as ``analytics.summary`` computes them.

``agreement`` looks at the model's last signal of the symbol at or before each entry (at most
``MAX_SIGNAL_AGE_MS`` older, through a lookup the caller passes): ``agreed`` when it said the trade's
side (BUY for a long, SELL for a short), ``against`` for the other side, ``neutral`` for HOLD, and
``no signal`` when none was stored then (the signal store keeps two days).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from pipeline.journal import analytics
from pipeline.journal.excursions import RiskDefaults, with_r
from pipeline.journal.r_stats import r_summary

Agreement = Literal["agreed", "against", "neutral", "no signal"]
MAX_SIGNAL_AGE_MS = 120_000
COMPARE_COLUMNS = [
    "account",
    "trades",
    "net_pnl",
    "win_rate",
    "expectancy",
    "expectancy_r",
    "max_drawdown",
    "fees",
]
SignalLookup = Callable[[str, str, int], Mapping[str, Any] | None]


def in_scope(
    closed: pd.DataFrame, symbols: Sequence[str] | None, since_ms: int | None, until_ms: int | None
) -> pd.DataFrame:
    """The closed trades of ``symbols`` (all when None) that closed in [since, until)."""
    keep = pd.Series(True, index=closed.index)
    if symbols is not None:
        keep &= closed["symbol"].isin(list(symbols))
    exit_time = pd.to_numeric(closed["exit_time"])
    if since_ms is not None:
        keep &= exit_time >= since_ms
    if until_ms is not None:
        keep &= exit_time < until_ms
    return closed[keep]


def compare(accounts: Mapping[str, pd.DataFrame], risk: RiskDefaults) -> pd.DataFrame:
    """One row of ``COMPARE_COLUMNS`` per account, in the order given."""
    rows = []
    for name, closed in accounts.items():
        s = analytics.summary(closed)
        r = r_summary(with_r(closed, risk)) if len(closed) else {"expectancy_r": None}
        rows.append(
            {
                "account": name,
                "trades": s["trades"],
                "net_pnl": s["net_pnl"],
                "win_rate": s["win_rate"],
                "expectancy": s["expectancy"],
                "expectancy_r": r["expectancy_r"],
                "max_drawdown": s["max_drawdown"],
                "fees": s["fees"],
            }
        )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def agreement_of(side: str, signal: str | None) -> Agreement:
    """What a model's signal says of a trade on ``side``."""
    if signal is None:
        return "no signal"
    if signal == "HOLD":
        return "neutral"
    return "agreed" if signal == side.upper() else "against"


def agreement(trades: pd.DataFrame, models: Sequence[str], lookup: SignalLookup, risk: RiskDefaults) -> pd.DataFrame:
    """Per trade (``trade_id, symbol, side, entry_time, r``): one column per model with its agreement
    and one ``<model> confidence`` with the signal's confidence (None without a signal)."""
    rated = with_r(trades, risk) if len(trades) else trades.assign(r=pd.Series(dtype=float))
    out = rated[["trade_id", "symbol", "side", "entry_time", "r"]].copy()
    for model in models:
        said, confidence = [], []
        for row in rated.itertuples(index=False):
            signal = lookup(str(row.symbol), model, int(row.entry_time))
            said.append(agreement_of(str(row.side), None if signal is None else str(signal["signal"])))
            confidence.append(None if signal is None else float(signal["confidence"]))
        out[model] = said
        out[f"{model} confidence"] = confidence
    return out


def agreement_summary(table: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Per model and agreement: how many trades, their win rate and average R."""
    rows = []
    for model in models:
        for said, part in table.groupby(model, sort=True):
            r = pd.to_numeric(part["r"]).astype(float)
            rows.append(
                {
                    "model": model,
                    "agreement": said,
                    "trades": len(part),
                    "win_rate": float((r > 0).mean()) if len(part) else None,
                    "avg_r": float(r.mean()) if len(part) else None,
                }
            )
    return pd.DataFrame(rows, columns=["model", "agreement", "trades", "win_rate", "avg_r"])
