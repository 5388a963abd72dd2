"""Price features computed only from the past, in two forms that agree to 1e-9.

Windows are counted in bars, whatever the bar interval: the seed's names are kept, so on
1-minute bars ``volatility_7d`` is the volatility over 7 bars (7 minutes), not 7 days.

Every feature is defined "at the current price p" with closed bars ``c[0..n-1]`` (``c[n-1]`` the
last closed bar); ``closes`` is the closed closes followed by ``p``:

- ``ret_k = ln(p / c[n-k])`` for k in 1, 5, 15;
- ``ma_7`` / ``ma_25``: mean of the last 7 / 25 values of ``closes`` (so they include p);
  ``ma_7_gap = p / ma_7 - 1``, ``ma_25_gap = p / ma_25 - 1``;
- ``rsi_14``: Cutler's RSI (simple means) over the last 14 differences of ``closes``:
  ``100 - 100 / (1 + mean_gain / mean_loss)``; 100 when there are no losses but some gains,
  50 when flat;
- ``volatility_7d`` / ``volatility_25``: sample std (ddof=1) of the last 7 / 25 one-bar log
  returns of ``closes``;
- ``volume_change_pct``: volume of the last closed bar against the mean volume of the 7 bars
  before it, in percent (0.0 when that mean is 0);
- ``range_pct``: ``(high - low) / close * 100`` of the last closed bar.

Volume and range come from the last closed bar, so a live tick inside a forming bar sees exactly
what training saw. The formulas need 25 closed bars (``volatility_25`` uses 26 closes ending in
p); features are published from ``WARMUP_BARS = 26`` closed bars on, in both forms, so the
vectorized rows and the incremental state start at the same bar.

``compute_features`` is the vectorized form used for training; ``FeatureState`` is the
incremental form the live stage keeps per symbol.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_15",
    "ma_7_gap",
    "ma_25_gap",
    "rsi_14",
    "volatility_7d",
    "volatility_25",
    "volume_change_pct",
    "range_pct",
)
SEED_FEATURES: tuple[str, ...] = ("ma_7", "ma_25", "rsi_14", "volatility_7d", "volume_change_pct")
LEVELS: tuple[str, ...] = ("ma_7", "ma_25")
WARMUP_BARS = 26
BAR_COLUMNS: tuple[str, ...] = ("start", "open", "high", "low", "close", "volume")

_RSI_N = 14
_VOLUME_N = 7


class FeatureError(PipelineError):
    """Bars that cannot give features (a missing column, unsorted starts): the caller's bug."""


def check_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` reduced to the bar columns, or raise FeatureError naming what is wrong."""
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars lack columns {missing}; have {list(bars.columns)}")
    starts = bars["start"].to_numpy()
    if len(starts) > 1 and not bool((np.diff(starts) > 0).all()):
        raise FeatureError("bars must be sorted by start with one row per bar")
    return bars.loc[:, list(BAR_COLUMNS)]


def _windows(x: np.ndarray, n: int, how: str) -> np.ndarray:
    """Return ``how`` ("sum", "mean", "std") over each window of ``n`` ending at i; NaN before."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        view = sliding_window_view(x, n)
        if how == "sum":
            out[n - 1 :] = view.sum(axis=1)
        elif how == "mean":
            out[n - 1 :] = view.mean(axis=1)
        else:
            out[n - 1 :] = view.std(axis=1, ddof=1)
    return out


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """Return ``x`` delayed by ``k`` rows (row i holds x[i-k]), NaN in front."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _rsi(mean_gain: np.ndarray | float, mean_loss: np.ndarray | float) -> np.ndarray:
    gain = np.asarray(mean_gain, dtype=float)
    loss = np.asarray(mean_loss, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    return np.where(loss == 0, np.where(gain > 0, 100.0, 50.0), rsi)


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Compute the features of every bar at its own close from the bars before it.

    Row t is the features with ``p = close[t]`` and closed bars ``0..t-1``; nothing at or after
    bar t+1 is read. Rows ``t < WARMUP_BARS`` are NaN; every row ``t >= 26`` is fully defined
    (given positive prices). Columns are ``FEATURES`` then ``ma_7``, ``ma_25``; the index is the
    bars' index. Windows are exact per row (no running sums), so flat stretches give exact zeros.
    """
    bars = check_bars(bars)
    c = bars["close"].to_numpy(dtype=float)
    high = bars["high"].to_numpy(dtype=float)
    low = bars["low"].to_numpy(dtype=float)
    vol = bars["volume"].to_numpy(dtype=float)
    n = len(c)
    # With p = c[t], "closes" at row t is c[0..t]: the window features are plain trailing windows.
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        for k in (1, 5, 15):
            out[f"ret_{k}"] = np.log(c / _shift(c, k))
    lr = out["ret_1"]
    ma_7 = _windows(c, 7, "mean")
    ma_25 = _windows(c, 25, "mean")
    out["ma_7_gap"] = c / ma_7 - 1.0
    out["ma_25_gap"] = c / ma_25 - 1.0
    d = np.full(n, np.nan)
    d[1:] = np.diff(c)
    gains = _windows(np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), _RSI_N, "sum") / _RSI_N
    losses = _windows(np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0)), _RSI_N, "sum") / _RSI_N
    out["rsi_14"] = np.where(np.isnan(gains), np.nan, _rsi(gains, losses))
    out["volatility_7d"] = _windows(lr, 7, "std")
    out["volatility_25"] = _windows(lr, 25, "std")
    before = _shift(_windows(vol, _VOLUME_N, "mean"), 2)  # mean of v[t-8..t-2]
    last_v = _shift(vol, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        vcp = (last_v / before - 1.0) * 100.0
    out["volume_change_pct"] = np.where(before == 0, 0.0, vcp)
    out["volume_change_pct"][np.isnan(before)] = np.nan
    out["range_pct"] = _shift((high - low) / c * 100.0, 1)
    out["ma_7"] = ma_7
    out["ma_25"] = ma_25
    frame = pd.DataFrame({name: out[name] for name in (*FEATURES, *LEVELS)}, index=bars.index)
    frame.iloc[:WARMUP_BARS] = np.nan
    return frame


class FeatureState:
    """The features of one symbol kept incrementally in bounded memory.

    One thread owns an instance (the ML stage's): it calls ``push`` when a bar closes and
    ``features``/``vector`` on every tick. Everything that does not depend on the live price is
    computed at ``push``, so ``features`` does a handful of float operations.
    """

    __slots__ = ("_closes", "_count", "_pre", "_volumes")

    def __init__(self) -> None:
        self._closes: deque[float] = deque(maxlen=25)
        self._volumes: deque[float] = deque(maxlen=_VOLUME_N + 1)
        self._count = 0
        self._pre: tuple[float, ...] | None = None

    @property
    def ready(self) -> bool:
        """Tell whether enough bars have closed for features to exist."""
        return self._count >= WARMUP_BARS

    @property
    def bars_seen(self) -> int:
        """Return how many closed bars were pushed."""
        return self._count

    def push(self, close: float, high: float, low: float, volume: float) -> None:
        """Record a closed bar."""
        self._closes.append(float(close))
        self._volumes.append(float(volume))
        self._count += 1
        if self._count < WARMUP_BARS:
            return
        c = list(self._closes)
        last = c[-1]
        diffs = [c[i] - c[i - 1] for i in range(len(c) - 13, len(c))]
        gain13 = sum(x for x in diffs if x > 0)
        loss13 = sum(-x for x in diffs if x < 0)
        rets = [math.log(c[i] / c[i - 1]) for i in range(len(c) - 24, len(c))]
        r6 = rets[-6:]
        m6 = sum(r6) / 6
        # x * x rather than x ** 2: C's pow() is not always correctly rounded, and the whole-history
        # form (pipeline.ml.batch) multiplies, so both give the same bits.
        ss6 = sum((r - m6) * (r - m6) for r in r6)
        m24 = sum(rets) / 24
        ss24 = sum((r - m24) * (r - m24) for r in rets)
        v = list(self._volumes)
        mean_v = sum(v[:-1]) / _VOLUME_N
        vcp = 0.0 if mean_v == 0 else (v[-1] / mean_v - 1.0) * 100.0
        rng = (float(high) - float(low)) / last * 100.0
        self._pre = (last, c[-5], c[-15], sum(c[-6:]), sum(c[-24:]), gain13, loss13, m6, ss6, m24, ss24, vcp, rng)

    def features(self, price: float) -> dict[str, float] | None:
        """Return the features at ``price`` (FEATURES plus ma_7, ma_25), or None before warm-up."""
        pre = self._pre
        if pre is None:
            return None
        last, c5, c15, sum6, sum24, gain13, loss13, m6, ss6, m24, ss24, vcp, rng = pre
        p = float(price)
        r1 = math.log(p / last)
        ma_7 = (sum6 + p) / 7
        ma_25 = (sum24 + p) / 25
        d = p - last
        gain = (gain13 + d) / 14 if d > 0 else gain13 / 14
        loss = (loss13 - d) / 14 if d < 0 else loss13 / 14
        if loss == 0:
            rsi = 100.0 if gain > 0 else 50.0
        else:
            rsi = 100.0 - 100.0 / (1.0 + gain / loss)
        # Welford: add r1 to the closed returns' mean and sum of squared deviations.
        delta = r1 - m6
        var7 = (ss6 + delta * (r1 - (m6 + delta / 7))) / 6
        delta = r1 - m24
        var25 = (ss24 + delta * (r1 - (m24 + delta / 25))) / 24
        return {
            "ret_1": r1,
            "ret_5": math.log(p / c5),
            "ret_15": math.log(p / c15),
            "ma_7_gap": p / ma_7 - 1.0,
            "ma_25_gap": p / ma_25 - 1.0,
            "rsi_14": rsi,
            "volatility_7d": math.sqrt(var7) if var7 > 0 else 0.0,
            "volatility_25": math.sqrt(var25) if var25 > 0 else 0.0,
            "volume_change_pct": vcp,
            "range_pct": rng,
            "ma_7": ma_7,
            "ma_25": ma_25,
        }

    def vector(self, price: float) -> list[float] | None:
        """Return the model inputs at ``price`` in FEATURES order, or None before warm-up."""
        f = self.features(price)
        if f is None:
            return None
        return [f[name] for name in FEATURES]
