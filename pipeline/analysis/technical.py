"""Technical analysis of a stock's bars into one score in [-1, 1] with a confidence (seed 003's
"AI Analysis Service").

Components, each a score in [-1, 1] computed at the last bar from the bars before and at it:

* ``ma_cross`` (weight 0.25): the gap of the 7-bar over the 25-bar moving average, in units of
  the 25-bar volatility over 7 bars, through ``tanh``; ``crossed`` says whether the averages
  crossed at the last bar. From ``pipeline.ml.features`` (``ma_7``, ``ma_25``, ``volatility_25``).
* ``rsi`` (0.15): the desk's RSI(14) read at its extremes: above 70 overbought (down to -1 at
  100), below 30 oversold (up to +1 at 0), 0 in between.
* ``macd`` (0.25): MACD(12, 26, 9)'s histogram (EMA12 - EMA26 - signal) over the price times the
  25-bar volatility, through ``tanh`` (needs ``MACD_BARS`` = 35 bars; left out before).
* ``bollinger`` (0.15): the position in the 20-bar, 2-sigma bands, read as mean reversion: +1 at
  the lower band, -1 at the upper, ``1 - 2 %b`` clipped.
* ``volume`` (0.10): a spike (the last bar's volume >= 2x the mean of the 20 before) confirms the
  last bar's direction, up to +-1 at 5x; 0 without a spike.
* ``model`` (0.10 each): an active registry model for the symbol (``pipeline.ml.registry``): the
  sign of its expected return times ``2 * (confidence - 0.5)``.

The score is the weighted mean of the components present; the confidence is half how much they
agree (``|sum w s| / sum w |s|``) and half how much history there was (bars / 60, at most 1).
``details`` carry each component's value and inputs, the last close, the move over the last 15
bars (``move_pct``, the aggregation's risk rule) and the 25-bar volatility (its target price).

Cost: one ``compute_features`` over at most ``HISTORY_BARS`` bars and a few numpy passes
(about a millisecond); a model adds its own predict on one row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipeline.ml.features import FEATURES, WARMUP_BARS, compute_features

MODEL_VERSION = "technical-1"
HISTORY_BARS = 120
MACD_BARS = 35
MOVE_BARS = 15
WEIGHTS = {"ma_cross": 0.25, "rsi": 0.15, "macd": 0.25, "bollinger": 0.15, "volume": 0.10}
MODEL_WEIGHT = 0.10


class Model(Protocol):
    """What the analysis needs of a registry model (``pipeline.ml.models.Predictor``)."""

    name: str
    features: tuple[str, ...]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class TechnicalResult:
    """A score in [-1, 1], a confidence in [0, 1], and each component in ``details``."""

    score: float
    confidence: float
    details: dict[str, Any] = field(default_factory=dict)


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x)) if math.isfinite(x) else 0.0


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(x).ewm(span=span, adjust=False).mean().to_numpy()


def macd(close: np.ndarray) -> tuple[float, float, float]:
    """MACD(12, 26, 9) at the last bar: (macd line, signal line, histogram)."""
    line = _ema(close, 12) - _ema(close, 26)
    signal = _ema(line, 9)
    return float(line[-1]), float(signal[-1]), float(line[-1] - signal[-1])


def bollinger(close: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[float, float, float]:
    """The 20-bar, 2-sigma bands at the last bar (population sigma): (lower, middle, upper)."""
    window = close[-n:]
    mid = float(window.mean())
    sd = float(window.std())
    return mid - k * sd, mid, mid + k * sd


def volume_spike(volume: np.ndarray, n: int = 20) -> float:
    """The last bar's volume over the mean of the ``n`` before it (0 when that mean is 0)."""
    before = volume[-n - 1 : -1]
    mean = float(before.mean()) if len(before) else 0.0
    return float(volume[-1]) / mean if mean > 0 else 0.0


def analyse(bars: pd.DataFrame, models: Sequence[tuple[str, Model]] = ()) -> TechnicalResult | None:
    """Analyse ``bars`` (columns start, open, high, low, close, volume; oldest first, one row per
    bar); None with fewer than ``WARMUP_BARS`` + 1 bars. ``models`` are (label, model) pairs."""
    bars = bars.tail(HISTORY_BARS).reset_index(drop=True)
    n = len(bars)
    if n <= WARMUP_BARS:
        return None
    feats = compute_features(bars).iloc[-1]
    close = bars["close"].to_numpy(dtype=float)
    volume = bars["volume"].to_numpy(dtype=float)
    last = float(close[-1])
    vol = float(feats["volatility_25"]) or 1e-9
    components: dict[str, dict[str, Any]] = {}

    ma7, ma25 = float(feats["ma_7"]), float(feats["ma_25"])
    prev = compute_features(bars.iloc[:-1]).iloc[-1] if n > WARMUP_BARS + 1 else None
    crossed = prev is not None and np.sign(prev["ma_7"] - prev["ma_25"]) != np.sign(ma7 - ma25)
    z = (ma7 / ma25 - 1.0) / (vol * math.sqrt(7))
    components["ma_cross"] = {"score": _clip(math.tanh(z)), "ma_7": ma7, "ma_25": ma25, "crossed": bool(crossed)}

    rsi = float(feats["rsi_14"])
    rsi_score = -(rsi - 70) / 30 if rsi > 70 else (30 - rsi) / 30 if rsi < 30 else 0.0
    components["rsi"] = {"score": _clip(rsi_score), "rsi_14": rsi}

    if n >= MACD_BARS:
        line, signal, hist = macd(close)
        components["macd"] = {
            "score": _clip(math.tanh(hist / (last * vol))),
            "macd": line,
            "signal": signal,
            "histogram": hist,
        }

    lower, mid, upper = bollinger(close)
    pct_b = (last - lower) / (upper - lower) if upper > lower else 0.5
    components["bollinger"] = {
        "score": _clip(1 - 2 * pct_b),
        "lower": lower,
        "middle": mid,
        "upper": upper,
        "pct_b": pct_b,
    }

    ratio = volume_spike(volume)
    direction = float(np.sign(close[-1] - close[-2]))
    spike = ratio >= 2.0
    components["volume"] = {
        "score": _clip(direction * min(1.0, (ratio - 1) / 4)) if spike else 0.0,
        "ratio": ratio,
        "spike": spike,
    }

    weights = {name: WEIGHTS[name] for name in components}
    if models:
        row = feats[list(FEATURES)].to_numpy(dtype=float).reshape(1, -1)
        for label, model in models:
            expected, certainty = model.predict(row[:, [FEATURES.index(f) for f in model.features]])
            e, c = float(expected[0]), float(certainty[0])
            key = f"model:{label}"
            components[key] = {"score": _clip(float(np.sign(e)) * 2 * (c - 0.5)), "expected_return": e, "confidence": c}
            weights[key] = MODEL_WEIGHT

    total = sum(weights.values())
    signed = float(sum(weights[k] * components[k]["score"] for k in components))
    magnitude = float(sum(weights[k] * abs(components[k]["score"]) for k in components))
    score = signed / total
    agreement = abs(signed) / magnitude if magnitude > 0 else 0.0
    confidence = 0.5 * agreement + 0.5 * min(1.0, n / 60)
    start = close[-MOVE_BARS - 1] if n > MOVE_BARS else close[0]
    details = {
        "components": {k: {**v, "weight": weights[k]} for k, v in components.items()},
        "bars": n,
        "last_close": last,
        "last_bar_start": int(bars["start"].iloc[-1]),
        "move_pct": (last / float(start) - 1) * 100,
        "last_return_pct": (last / float(close[-2]) - 1) * 100,
        "volatility_25": vol,
    }
    return TechnicalResult(_clip(score), round(max(0.0, min(1.0, confidence)), 4), details)
