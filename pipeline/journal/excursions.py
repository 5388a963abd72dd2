"""Excursions and R of closed trades: how far each went for and against the trader, measured on the
stored 1-minute bars (pure numpy and pandas; no I/O).

Per closed trade (a whole trade with an exit, or a round trip):

* **R**: the risk per unit is ``|entry - stop|`` when the trade has a stop on the losing side of its
  entry, else ``entry x pct / 100`` with the default risk of its setup (``RiskDefaults``); ``r`` is
  the net P&L over ``risk per unit x quantity``. R needs no bars.
* **MFE / MAE** (maximum favourable / adverse excursion), from the bars that overlap the trade
  (``start > entry_time - 1 min`` and ``start <= exit_time``) and the entry and exit prices
  themselves: per unit in price, in percent of the entry and in R. A long's MFE is the highest high
  over the entry, its MAE the entry over the lowest low; a short's the reverse. At 1-minute
  resolution the bars where a trade enters and exits count whole.
* **Best exit in hindsight**: the MFE's price and the start of its first bar; **captured** is the
  share of the MFE the real exit kept, ``(exit - entry) x direction / MFE`` in percent (None when the
  MFE is 0).
* A trade whose span the bars do not cover says so (``status`` ``no_bars`` or ``gaps`` with the
  reason) and gets no excursion numbers, never zeros: its first overlapping bar must start within
  ``MAX_EDGE_GAP_MS`` of the entry and its last within that of the exit.

``compute`` costs one ``searchsorted`` and one ``maximum/minimum.reduceat`` per symbol plus an
argmax per trade over its own bars: 100,000 round trips take a couple of seconds (``bench.excursions``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

MINUTE_MS = 60_000
MAX_EDGE_GAP_MS = 5 * MINUTE_MS
Status = Literal["ok", "no_bars", "gaps"]
RiskSource = Literal["stop", "setup", "default"]

COLUMNS = [
    "trade_id",
    "user_id",
    "symbol",
    "status",
    "reason",
    "bars",
    "risk_per_unit",
    "risk_source",
    "r",
    "mfe",
    "mae",
    "mfe_pct",
    "mae_pct",
    "mfe_r",
    "mae_r",
    "best_exit_price",
    "best_exit_time",
    "worst_price",
    "worst_time",
    "captured_pct",
]
# What a trade's excursions depend on: a change to any of these computes it again.
INPUTS = [
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
]


@dataclass(frozen=True)
class RiskDefaults:
    """The risk of a trade without a stop, in percent of its entry price: per setup, else ``default_pct``."""

    default_pct: float = 1.0
    per_setup: tuple[tuple[str, float], ...] = ()
    _by_setup: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bad = [(name, pct) for name, pct in (("default", self.default_pct), *self.per_setup) if not 0 < pct <= 100]
        if bad:
            raise ValueError(f"risk percentages are > 0 and <= 100; got {bad}")
        object.__setattr__(self, "_by_setup", dict(self.per_setup))

    def pct_for(self, setup: str | None) -> tuple[float, RiskSource]:
        """The risk percent of a trade of ``setup`` without a stop, and where it came from."""
        if setup and setup in self._by_setup:
            return self._by_setup[setup], "setup"
        return self.default_pct, "default"

    def signature(self) -> str:
        """A short text that changes whenever any percentage does (stored with each result)."""
        return f"{self.default_pct:g};" + ";".join(f"{k}={v:g}" for k, v in sorted(self.per_setup))


def setup_risk_from_text(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``"breakout=0.5, scalp=0.25"`` (setup = percent of the entry price); raise ValueError."""
    out: list[tuple[str, float]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, pct = part.rpartition("=")
        try:
            value = float(pct)
        except ValueError:
            value = math.nan
        if not sep or not name.strip() or not (0 < value <= 100):
            raise ValueError(f"{part.strip()!r} is not SETUP=PERCENT with 0 < PERCENT <= 100")
        out.append((name.strip(), value))
    return tuple(out)


class Bars(NamedTuple):
    """One symbol's 1-minute bars, oldest first: ``start`` (ms), ``high`` and ``low`` (and, for the
    what-if replays, ``open`` and ``close``)."""

    start: np.ndarray
    high: np.ndarray
    low: np.ndarray
    open: np.ndarray | None = None
    close: np.ndarray | None = None

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Bars:
        """Bars from a frame with ``start, open, high, low, close`` columns (any order of rows)."""
        frame = frame.sort_values("start")
        return cls(
            frame["start"].to_numpy(dtype=np.int64),
            frame["high"].to_numpy(dtype=float),
            frame["low"].to_numpy(dtype=float),
            frame["open"].to_numpy(dtype=float) if "open" in frame else None,
            frame["close"].to_numpy(dtype=float) if "close" in frame else None,
        )


def _direction(side: pd.Series) -> np.ndarray:
    return np.where(side.astype(str).str.upper() == "SELL", -1.0, 1.0)


def net_pnl(trades: pd.DataFrame) -> np.ndarray:
    """Each trade's net P&L: its own ``pnl``, else from its prices less its known fees."""
    gross = (trades["exit_price"].astype(float) - trades["entry_price"].astype(float)) * trades["quantity"].astype(
        float
    )
    computed = gross * _direction(trades["side"]) - pd.to_numeric(trades["fees"]).astype(float).fillna(0.0)
    return pd.to_numeric(trades["pnl"]).astype(float).fillna(computed).to_numpy(dtype=float)


def risk_per_unit(trades: pd.DataFrame, risk: RiskDefaults) -> tuple[np.ndarray, list[RiskSource]]:
    """Each trade's risk per unit (from its stop when the stop is on its losing side, else from the
    default of its setup) and where it came from."""
    entry = trades["entry_price"].to_numpy(dtype=float)
    stop = pd.to_numeric(trades["stop_loss"]).astype(float).to_numpy()
    direction = _direction(trades["side"])
    from_stop = (entry - stop) * direction  # > 0 when the stop is below a long's entry, above a short's
    setups = trades["setup"] if "setup" in trades else pd.Series([None] * len(trades), index=trades.index)
    out = np.empty(len(trades))
    sources: list[RiskSource] = []
    for i, (per_unit, setup) in enumerate(zip(from_stop.tolist(), setups.tolist())):
        if per_unit > 0:  # NaN (no stop) and a stop on the wrong side both fail this
            out[i] = per_unit
            sources.append("stop")
        else:
            pct, source = risk.pct_for(setup if isinstance(setup, str) else None)
            out[i] = entry[i] * pct / 100.0
            sources.append(source)
    return out, sources


def with_r(trades: pd.DataFrame, risk: RiskDefaults) -> pd.DataFrame:
    """``trades`` with ``net_pnl``, ``risk_per_unit``, ``risk_source`` and ``r`` added."""
    per_unit, sources = risk_per_unit(trades, risk)
    pnl = net_pnl(trades) if len(trades) else np.zeros(0)
    quantity = trades["quantity"].to_numpy(dtype=float)
    return trades.assign(net_pnl=pnl, risk_per_unit=per_unit, risk_source=sources, r=pnl / (per_unit * quantity))


def _range_extremes(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, how: np.ufunc) -> np.ndarray:
    """``how.reduce(values[lo[i]:hi[i]])`` for every i with lo < hi (others get garbage)."""
    padded = np.append(values, values[-1:] if len(values) else [0.0])
    idx = np.empty(2 * len(lo), dtype=np.int64)
    idx[0::2], idx[1::2] = lo, hi
    return how.reduceat(padded, np.minimum(idx, len(padded) - 1))[0::2]


def compute(trades: pd.DataFrame, bars: Mapping[str, Bars], risk: RiskDefaults) -> pd.DataFrame:
    """Return ``COLUMNS`` for each closed trade (columns ``trade_id, user_id, symbol`` and ``INPUTS``).

    ``bars[symbol]`` holds at least the bars over the symbol's trades; a symbol missing from it has none.
    """
    if trades.empty:
        return pd.DataFrame(columns=COLUMNS)
    trades = with_r(trades.reset_index(drop=True), risk)
    n = len(trades)
    out = {c: np.full(n, np.nan) for c in COLUMNS if c not in ("trade_id", "user_id", "symbol", "status", "reason")}
    out["bars"] = np.zeros(n)
    status: list[str] = ["ok"] * n
    reason: list[str | None] = [None] * n
    entry_t = trades["entry_time"].to_numpy(dtype=np.int64)
    exit_t = trades["exit_time"].to_numpy(dtype=np.int64)
    entry = trades["entry_price"].to_numpy(dtype=float)
    exit_ = trades["exit_price"].to_numpy(dtype=float)
    direction = _direction(trades["side"])
    out["risk_per_unit"] = trades["risk_per_unit"].to_numpy(dtype=float)
    out["r"] = trades["r"].to_numpy(dtype=float)
    for symbol, rows in trades.groupby("symbol", sort=False).indices.items():
        series = bars.get(str(symbol))
        if series is None or len(series.start) == 0:
            for i in rows:
                status[i], reason[i] = "no_bars", f"no {symbol} bars in the store"
            continue
        lo = np.searchsorted(series.start, entry_t[rows] - MINUTE_MS, side="right")
        hi = np.searchsorted(series.start, exit_t[rows], side="right")
        count = hi - lo
        safe_lo = np.minimum(lo, len(series.start) - 1)
        safe_last = np.maximum(hi - 1, 0)
        first_start, last_start = series.start[safe_lo], series.start[safe_last]
        top = _range_extremes(series.high, lo, hi, np.maximum)
        bottom = _range_extremes(series.low, lo, hi, np.minimum)
        for k, i in enumerate(rows):
            if count[k] == 0:
                status[i], reason[i] = "no_bars", f"no {symbol} bar from {_utc(entry_t[i])} to {_utc(exit_t[i])}"
                continue
            late = first_start[k] - (entry_t[i] - entry_t[i] % MINUTE_MS)
            early = (exit_t[i] - exit_t[i] % MINUTE_MS) - last_start[k]
            if late > MAX_EDGE_GAP_MS or early > MAX_EDGE_GAP_MS:
                gap_at = entry_t[i] if late > MAX_EDGE_GAP_MS else exit_t[i]
                status[i] = "gaps"
                reason[i] = f"{symbol} bars stop short of the trade's {'entry' if gap_at == entry_t[i] else 'exit'}"
                out["bars"][i] = count[k]
                continue
            a, b = lo[k], hi[k]
            high = max(top[k], entry[i], exit_[i])
            low = min(bottom[k], entry[i], exit_[i])
            long = direction[i] > 0
            best, worst = (high, low) if long else (low, high)
            when = (entry_t[i], exit_t[i], exit_[i])
            best_at = _first_bar(series.high[a:b] if long else series.low[a:b], best, series.start[a:b], *when)
            worst_at = _first_bar(series.low[a:b] if long else series.high[a:b], worst, series.start[a:b], *when)
            mfe, mae = (best - entry[i]) * direction[i], (entry[i] - worst) * direction[i]
            unit = out["risk_per_unit"][i]
            out["bars"][i] = count[k]
            out["mfe"][i], out["mae"][i] = mfe, mae
            out["mfe_pct"][i], out["mae_pct"][i] = mfe / entry[i] * 100.0, mae / entry[i] * 100.0
            out["mfe_r"][i], out["mae_r"][i] = mfe / unit, mae / unit
            out["best_exit_price"][i], out["best_exit_time"][i] = best, best_at
            out["worst_price"][i], out["worst_time"][i] = worst, worst_at
            kept = (exit_[i] - entry[i]) * direction[i]
            out["captured_pct"][i] = kept / mfe * 100.0 if mfe > 0 else np.nan
    frame = pd.DataFrame(
        {
            "trade_id": trades["trade_id"].astype(str).to_numpy(),
            "user_id": trades["user_id"].astype(str).to_numpy(),
            "symbol": trades["symbol"].astype(str).to_numpy(),
            "status": status,
            "reason": reason,
            **{c: out[c] for c in COLUMNS[5:] if c != "risk_source"},
            "risk_source": trades["risk_source"].to_numpy(),
        }
    )
    frame["bars"] = frame["bars"].astype("int64")
    return frame[COLUMNS]


def _first_bar(
    values: np.ndarray, target: float, starts: np.ndarray, entry_time: int, exit_time: int, exit_price: float
) -> float:
    """Start of the first bar that reaches ``target``; the exit's (or else the entry's) own time when
    only the exit (or the entry) price does."""
    hits = np.flatnonzero(values == target)
    if len(hits):
        return float(starts[hits[0]])
    return float(exit_time if target == exit_price else entry_time)


def _utc(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
