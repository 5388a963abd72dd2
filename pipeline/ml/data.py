"""Bars for training: from the store, from the simulator, or from a candle file.

Every function returns the bars shape the ML package uses: int ``start`` (bar open time, Unix
ms) and float ``open, high, low, close, volume``, one row per bar, oldest first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.ml.features import BAR_COLUMNS
from pipeline.sources.simulator import MarketSimulator
from storage import market
from storage.db import Database

if TYPE_CHECKING:
    from pipeline.candles import CandleFile

log = logging.getLogger(__name__)

SUB_STEPS = 4  # simulator steps per bar: enough for a high and a low that differ from O and C


def _frame(rows: dict[str, np.ndarray] | Sequence[Sequence[object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(BAR_COLUMNS))
    frame["start"] = frame["start"].astype(np.int64)
    for col in BAR_COLUMNS[1:]:
        frame[col] = frame[col].astype(float)
    return frame


def bars_from_store(db: Database, symbol: str, limit: int | None = None) -> pd.DataFrame:
    """Return the stored 1-minute bars of ``symbol`` (the most recent ``limit`` if set), oldest first."""
    return _frame(market.history(db, symbol, limit))


def bars_from_simulator(
    symbol: str, n_bars: int, *, seed: int = 0, interval_ms: int = 60_000, end_ms: int | None = None
) -> pd.DataFrame:
    """Return ``n_bars`` synthetic bars of ``symbol`` from the market simulator's GARCH walk.

    Each bar is ``SUB_STEPS`` simulator steps: open is the previous close, high and low the
    extremes of the path, volume the sum. The last bar starts one interval before ``end_ms``
    (default: now, rounded down to the interval). The same seed gives the same bars.
    """
    if end_ms is None:
        end_ms = int(time.time() * 1000)
    end_ms -= end_ms % interval_ms
    sim = MarketSimulator((symbol,), seed=seed)
    walk = sim.walks[symbol]
    step = sim._step
    dt_s = interval_ms / 1000 / SUB_STEPS
    opens = np.empty(n_bars)
    highs = np.empty(n_bars)
    lows = np.empty(n_bars)
    closes = np.empty(n_bars)
    volumes = np.empty(n_bars)
    for i in range(n_bars):
        price = walk.price
        opens[i] = hi = lo = price
        volume = 0.0
        for _ in range(SUB_STEPS):
            _, v = step(walk, dt_s)
            price = walk.price
            volume += v
            if price > hi:
                hi = price
            elif price < lo:
                lo = price
        highs[i], lows[i], closes[i], volumes[i] = hi, lo, price, volume
    starts = end_ms - interval_ms * np.arange(n_bars, 0, -1, dtype=np.int64)
    return _frame({"start": starts, "open": opens, "high": highs, "low": lows, "close": closes, "volume": volumes})


def bars_from_file(path: Path | str) -> pd.DataFrame:
    """Return the bars of a candle file (an exchange export) read by the replay source."""
    from pipeline.candles import read_candles

    return bars_from_candles(read_candles(Path(path)), str(path))


def bars_from_candles(candles: CandleFile, name: str) -> pd.DataFrame:
    """Return the bars of candles already read; rejected rows are logged by line, column and rule
    (never their content)."""
    if candles.rejected:
        first = candles.rejected[0]
        log.warning(
            "%s: %d rows rejected, first: line %d, %s: %s",
            name,
            len(candles.rejected),
            first.line,
            first.column,
            first.reason,
        )
    return _frame(candles.frame.loc[:, list(BAR_COLUMNS)])
