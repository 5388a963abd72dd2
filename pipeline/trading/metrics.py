"""Backtest metrics: what an equity curve and a list of closed trades say, and when a figure says nothing.

Every function is pure; the Backtest page, the CLI and ``run_backtest`` show what these return.

* **return**: final equity over the starting balance, minus one.
* **CAGR**: ``(final / start) ** (1 / years) - 1``, the period being from the first bar's start to the
  last bar's end. Not given under ``MIN_CAGR_DAYS``: a yearly rate from a few days' move is
  arithmetic, not information (+20 % in 10 days is a CAGR of about 78,000 %).
* **Sharpe**: mean over sample standard deviation (``ddof=1``) of the bar-to-bar simple returns of
  the equity, times the square root of the bars in a year; no risk-free rate. Crypto trades every
  day, so a year is 365.25 days: 525,960 one-minute bars, 8,766 hourly, 365.25 daily.
* **Sortino**: the same mean over the downside deviation ``sqrt(mean(min(r, 0) ** 2))`` (all
  returns, target 0), annualised the same way.
  Sharpe and Sortino are not given with fewer than ``MIN_RETURNS`` returns, nor when the
  equity never moves (Sharpe) or never falls (Sortino).
* **max drawdown**: the largest fall from a running peak, in % of that peak.
* **win rate**: closed trades with a P&L above 0 over all closed trades (a trade at 0 is not a win);
  **profit factor**: gross profit over gross loss of the closed trades, not given without a loss.
* **exposure**: the share of bars that closed with a position open.
* **buy-and-hold**: the starting balance split equally over the symbols at each one's first open,
  one fee (``fee_bps``) paid on the way in, marked at every bar's close. No exit fee, as the
  strategy's open positions are marked at the close without one too.

A figure that is not given is None, and ``why_none`` maps its key to a one-line reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
YEAR_MS = 365.25 * DAY_MS
MIN_CAGR_DAYS = 30.0
MIN_RETURNS = 30


def bars_per_year(interval_ms: int) -> float:
    """Return how many bars of ``interval_ms`` make a year of 365.25 days."""
    return YEAR_MS / interval_ms


def period_days(starts: Sequence[int] | np.ndarray, interval_ms: int) -> float:
    """Return the days from the first bar's start to the last bar's end."""
    if len(starts) == 0:
        return 0.0
    return (int(starts[-1]) - int(starts[0]) + interval_ms) / DAY_MS


def curve_metrics(equity: np.ndarray, starts: np.ndarray, start_balance: float, interval_ms: int) -> dict[str, Any]:
    """Return, CAGR, Sharpe, Sortino and max drawdown of ``equity`` sampled at every bar's close."""
    equity = np.asarray(equity, dtype=float)
    why: dict[str, str] = {}
    out: dict[str, Any] = {
        "return_pct": 0.0,
        "cagr_pct": None,
        "sharpe": None,
        "sortino": None,
        "max_drawdown_pct": 0.0,
        "why_none": why,
    }
    if len(equity) == 0:
        for key in ("cagr_pct", "sharpe", "sortino"):
            why[key] = "no bar was tested"
        return out
    final = float(equity[-1])
    out["return_pct"] = (final / start_balance - 1.0) * 100.0
    peak = np.maximum.accumulate(equity)
    out["max_drawdown_pct"] = float((1.0 - equity / peak).max() * 100.0)
    days = period_days(starts, interval_ms)
    if days < MIN_CAGR_DAYS:
        why["cagr_pct"] = f"only {_span(days)} tested; a yearly rate needs at least {MIN_CAGR_DAYS:g} days"
    elif final <= 0:
        why["cagr_pct"] = "the equity reached zero"
    else:
        years = days * DAY_MS / YEAR_MS
        out["cagr_pct"] = ((final / start_balance) ** (1.0 / years) - 1.0) * 100.0
    returns = np.diff(equity) / equity[:-1]
    if len(returns) < MIN_RETURNS:
        reason = f"{len(returns)} bar returns; a yearly ratio needs at least {MIN_RETURNS}"
        why["sharpe"] = why["sortino"] = reason
        return out
    scale = math.sqrt(bars_per_year(interval_ms))
    mean = float(returns.mean())
    sd = float(returns.std(ddof=1))
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    if sd > 0:
        out["sharpe"] = mean / sd * scale
    else:
        why["sharpe"] = "the equity never moved"
    if downside > 0:
        out["sortino"] = mean / downside * scale
    else:
        why["sortino"] = "no bar lost money"
    return out


def _span(days: float) -> str:
    if days < 1:
        hours = days * 24
        return f"{hours:.3g} hour" + ("" if hours == 1 else "s")
    return f"{days:.3g} day" + ("" if days == 1 else "s")


def trade_metrics(pnls: Iterable[float]) -> dict[str, Any]:
    """Closed trades, win rate and profit factor of the closed trades' P&L."""
    pnls = [float(p) for p in pnls]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p <= 0]
    why: dict[str, str] = {}
    out: dict[str, Any] = {"trades": len(pnls), "win_rate_pct": None, "profit_factor": None, "why_none": why}
    if not pnls:
        why["win_rate_pct"] = why["profit_factor"] = "no closed trade"
        return out
    out["win_rate_pct"] = len(wins) / len(pnls) * 100.0
    gross_loss = -sum(losses)
    if gross_loss > 0:
        out["profit_factor"] = sum(wins) / gross_loss
    else:
        why["profit_factor"] = "no losing trade"
    return out


def exposure_pct(exposed: np.ndarray) -> float:
    """Return the share of bars (in %) that closed with a position open."""
    exposed = np.asarray(exposed, dtype=bool)
    return float(exposed.mean() * 100.0) if len(exposed) else 0.0


def buy_and_hold_curve(
    bars: Mapping[str, pd.DataFrame], starts: np.ndarray, start_balance: float, fee_bps: float
) -> np.ndarray:
    """Return the buy-and-hold equity at every slot of ``starts`` (see the module docstring)."""
    growth = np.mean([_growth(frame, starts) for frame in bars.values()], axis=0)
    return start_balance * (1.0 - fee_bps / 10_000.0) * growth


def _growth(frame: pd.DataFrame, starts: np.ndarray) -> np.ndarray:
    close = frame.set_index("start")["close"].reindex(starts).ffill().bfill().to_numpy(dtype=float)
    return close / float(frame["open"].iloc[0])


def merge_reasons(*parts: Mapping[str, Any]) -> dict[str, str]:
    """Return the ``why_none`` entries of ``parts`` as one mapping."""
    out: dict[str, str] = {}
    for part in parts:
        out.update(part.get("why_none") or {})
    return out


def why_none(key: str, *parts: Mapping[str, Any]) -> str | None:
    """Return the one-line reason why ``key`` is not given in any of ``parts`` (metric dicts, e.g. the
    strategy's and buy-and-hold's), each reason once; None when every part gives it."""
    reasons: list[str] = []
    for part in parts:
        reason = (part.get("why_none") or {}).get(key)
        if part.get(key) is None and reason and reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons) or None
