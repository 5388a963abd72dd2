"""The drift alarm's statistics: a model's live hit rate and profit after fees over a rolling window,
against its walk-forward figures with a confidence band (pure numpy).

Live rows are made the way training made them (``pipeline.ml.evaluate.make_dataset``): one per bar,
the model's last signal in the bar (the features of the bar closing at that tick) against the
forward log return from that bar's close to the close ``horizon`` bars later. A row counts once
that later bar exists.

* **Hit rate**: the share of rows whose predicted direction (expected change > 0) matches the
  realised one, as the walk-forward ``accuracy``. Consecutive rows share ``horizon - 1`` bars of
  their outcome, so the band counts ``periods = rows // horizon`` independent draws:
  ``accuracy +- z * sqrt(accuracy * (1 - accuracy) / periods)``.
* **Profit after fees**: the walk-forward trading rule (``simulate_trades``: long for ``horizon``
  bars when the expected change clears the round-trip fee, fees on entry and exit) on the live rows,
  against the walk-forward profit per holding period scaled to the live periods, with a band of
  ``z`` standard deviations of a period's return times the square root of the periods.

``state`` is ``warming`` under ``min_periods``, ``below`` or ``above`` when either figure is outside
its band (below wins), else ``ok``. An alarm is a fact about the last window, not a verdict on the
model: a random walk moves a fair coin's hit rate outside a 95 % band one window in twenty.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.ml.evaluate import simulate_trades

State = Literal["warming", "ok", "below", "above"]


@dataclass(frozen=True)
class DriftCheck:
    """One model's live figures over one window, with the bands they are judged by."""

    symbol: str
    model: str
    version: int
    window_start: int
    window_end: int
    rows: int
    periods: int
    hit_rate: float | None
    wf_accuracy: float | None
    hit_lo: float | None
    hit_hi: float | None
    profit_pct: float | None
    wf_profit_pct: float | None
    profit_lo: float | None
    profit_hi: float | None
    state: State
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_rows(
    signals: pd.DataFrame, bars: pd.DataFrame, horizon: int, interval_ms: int = 60_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (bar starts, expected log returns, realised forward log returns) of the rows that have
    an outcome. ``signals``: ``bar`` and ``expected_change_pct`` (one per bar, the bar's last);
    ``bars``: ``start`` and ``close``."""
    if signals.empty or bars.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    close = pd.Series(bars["close"].to_numpy(dtype=float), index=bars["start"].to_numpy(dtype=np.int64))
    starts = signals["bar"].to_numpy(dtype=np.int64)
    now = close.reindex(starts).to_numpy()
    later = close.reindex(starts + horizon * interval_ms).to_numpy()
    ok = np.isfinite(now) & np.isfinite(later) & (now > 0) & (later > 0)
    expected = np.log1p(signals["expected_change_pct"].to_numpy(dtype=float) / 100.0)
    return starts[ok], expected[ok], np.log(later[ok] / now[ok])


def _growth(pct: float) -> float:
    return math.log1p(pct / 100.0)


def assess(
    *,
    symbol: str,
    model: str,
    version: int,
    metrics: dict[str, Any],
    horizon: int,
    fee_bps: float,
    starts: np.ndarray,
    expected: np.ndarray,
    realised: np.ndarray,
    window: tuple[int, int],
    z: float = 1.96,
    min_periods: int = 10,
) -> DriftCheck:
    """Judge the live rows of one model against its walk-forward ``metrics`` (``accuracy``,
    ``profit_pct``, ``samples``); see the module docstring."""
    rows = len(realised)
    periods = rows // horizon
    accuracy = metrics.get("accuracy")
    wf_profit = metrics.get("profit_pct")
    wf_periods = int(metrics.get("samples") or 0) // horizon
    hit = float(((expected > 0) == (realised > 0)).mean()) if rows else None
    hit_lo = hit_hi = profit = profit_lo = profit_hi = scaled = None
    if periods and accuracy is not None:
        half = z * math.sqrt(accuracy * (1 - accuracy) / periods)
        hit_lo, hit_hi = max(0.0, accuracy - half), min(1.0, accuracy + half)
    if rows >= horizon:
        trades = simulate_trades(expected > 2 * fee_bps / 1e4, realised, horizon, fee_bps)
        profit = trades.profit_pct
        if wf_profit is not None and wf_periods and trades.periods:
            centre = _growth(wf_profit) / wf_periods * trades.periods
            spread = z * float(np.std(realised[::horizon])) * math.sqrt(trades.periods)
            scaled = math.expm1(centre) * 100
            profit_lo, profit_hi = math.expm1(centre - spread) * 100, math.expm1(centre + spread) * 100
    label = f"{symbol} {model} v{version}"
    if periods < min_periods or hit is None:
        state: State = "warming"
        message = f"{label}: {periods} of the {min_periods} live periods a judgement needs"
    else:
        below: list[str] = []
        above: list[str] = []
        if hit_lo is not None and hit_hi is not None and accuracy is not None:
            band = f"the band {hit_lo:.1%}-{hit_hi:.1%} around the walk-forward {accuracy:.1%}"
            if hit < hit_lo:
                below.append(f"hit rate {hit:.1%} under {band}")
            elif hit > hit_hi:
                above.append(f"hit rate {hit:.1%} over {band}")
        if profit is not None and profit_lo is not None and profit_hi is not None:
            band = f"the band {profit_lo:+.2f}% to {profit_hi:+.2f}%"
            if profit < profit_lo:
                below.append(f"profit after fees {profit:+.2f}% under {band}")
            elif profit > profit_hi:
                above.append(f"profit after fees {profit:+.2f}% over {band}")
        if below:
            state, message = "below", f"{label} drifted below its walk-forward figures: " + "; ".join(below)
        elif above:
            state, message = "above", f"{label} runs above its walk-forward figures: " + "; ".join(above)
        else:
            state = "ok"
            message = f"{label}: hit rate {hit:.1%} within {hit_lo:.1%}-{hit_hi:.1%} over {periods} periods"
    return DriftCheck(
        symbol,
        model,
        version,
        window[0],
        window[1],
        rows,
        periods,
        hit,
        accuracy,
        hit_lo,
        hit_hi,
        profit,
        scaled,
        profit_lo,
        profit_hi,
        state,
        message,
    )
