"""Aggregation (seed 003's "Aggregation Service"): a symbol's latest technical and sentiment results
into a final score, a recommendation and a target price, and the alerts that follow, with hysteresis.

**The aggregate** (``combine``), from the latest technical (T) and sentiment (S) results younger
than ``ANALYSIS_WINDOW_MINUTES`` (either may be missing):

* ``final_score = (wT T + wS S) / (wT + wS)`` with each weight its result's confidence (a
  missing result weighs 0); both missing gives no aggregate;
* ``recommendation``: BUY when ``final_score >= enter``, SELL when ``<= -enter``, else HOLD;
* ``target_price = close * exp(final_score * 2 * vol * sqrt(15))``: the last close moved by up to
  two standard deviations of the technical's 25-bar volatility over 15 bars, in the score's
  direction. A scale of the signal, not a forecast.

**The state and its alerts** (``decide``), per symbol, kept across results:

* ``signal`` is BUY, SELL or HOLD. It enters BUY when ``final_score >= enter`` and T and S both
  reach ``agree`` (both present): then one ``buy_signal`` (SELL alike: ``sell_signal``). BUY
  stays until ``final_score < exit`` (SELL until ``> -exit``) or the other side is entered, so a
  score wobbling around ``enter`` alerts once (hysteresis: ``exit < enter``).
* ``risk`` is on when the last 15 bars moved against a holder by ``risk_move_pct`` or more
  (``move_pct <= -risk_move_pct``) or ``news_cluster`` or more negative items came within 6
  hours; one ``risk_alert`` when it turns on, none while it stays on, and it turns off once
  neither holds.
* Priority: a signal is ``high`` from ``|final_score| >= 0.8``, ``medium`` from 0.65, else
  ``low``; a risk is ``critical`` when both causes hold or the move is twice the threshold, else
  ``high``.

Pure functions; the aggregation stage stores the state (``storage.analysis``) and publishes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pipeline.analysis.settings import AlertThresholds

Recommendation = Literal["BUY", "SELL", "HOLD"]
AlertType = Literal["buy_signal", "sell_signal", "risk_alert"]
Priority = Literal["low", "medium", "high", "critical"]
TARGET_BARS = 15


@dataclass(frozen=True)
class Scored:
    """A result's score and confidence with the details the aggregation reads."""

    score: float
    confidence: float
    details: dict[str, Any] = field(default_factory=dict)
    result_id: str = ""


@dataclass(frozen=True)
class Aggregate:
    """The combination of a symbol's latest results."""

    final_score: float
    recommendation: Recommendation
    target_price: float | None
    technical: float | None
    sentiment: float | None
    confidence: float


@dataclass(frozen=True)
class AlertState:
    """What was last alerted for a symbol: the signal held and whether a risk is on."""

    signal: Recommendation = "HOLD"
    risk: bool = False


@dataclass(frozen=True)
class AlertDraft:
    """An alert to publish (the stage adds its id and time)."""

    alert_type: AlertType
    priority: Priority
    message: str
    data: dict[str, Any]


def combine(technical: Scored | None, sentiment: Scored | None, thresholds: AlertThresholds) -> Aggregate | None:
    """The aggregate of the two latest results, or None when both are missing."""
    parts = [(r.score, r.confidence) for r in (technical, sentiment) if r is not None]
    if not parts:
        return None
    weight = sum(c for _, c in parts)
    final = sum(s * c for s, c in parts) / weight if weight > 0 else 0.0
    final = max(-1.0, min(1.0, final))
    recommendation: Recommendation = (
        "BUY" if final >= thresholds.enter else "SELL" if final <= -thresholds.enter else "HOLD"
    )
    target = None
    if technical is not None and technical.details.get("last_close"):
        close = float(technical.details["last_close"])
        vol = float(technical.details.get("volatility_25") or 0.0)
        target = round(close * math.exp(final * 2 * vol * math.sqrt(TARGET_BARS)), 4)
    return Aggregate(
        final_score=round(final, 4),
        recommendation=recommendation,
        target_price=target,
        technical=None if technical is None else technical.score,
        sentiment=None if sentiment is None else sentiment.score,
        confidence=round(weight / len(parts), 4),
    )


def _signal_priority(score: float) -> Priority:
    magnitude = abs(score)
    return "high" if magnitude >= 0.8 else "medium" if magnitude >= 0.65 else "low"


def _data(agg: Aggregate) -> dict[str, Any]:
    return {
        "final_score": agg.final_score,
        "recommendation": agg.recommendation,
        "target_price": agg.target_price,
        "technical_score": agg.technical,
        "sentiment_score": agg.sentiment,
    }


def decide(
    symbol: str,
    state: AlertState,
    agg: Aggregate,
    technical: Scored | None,
    sentiment: Scored | None,
    thresholds: AlertThresholds,
) -> tuple[AlertState, list[AlertDraft]]:
    """The new state and the alerts its changes make (see the module docstring)."""
    alerts: list[AlertDraft] = []
    t = thresholds
    signal = state.signal
    score = agg.final_score
    if (signal == "BUY" and score < t.exit) or (signal == "SELL" and score > -t.exit):
        signal = "HOLD"
    if technical is not None and sentiment is not None:
        if score >= t.enter and technical.score >= t.agree and sentiment.score >= t.agree:
            signal = "BUY"
        elif score <= -t.enter and technical.score <= -t.agree and sentiment.score <= -t.agree:
            signal = "SELL"
    if signal != state.signal and signal != "HOLD":
        kind: AlertType = "buy_signal" if signal == "BUY" else "sell_signal"
        word = "bullish" if signal == "BUY" else "bearish"
        message = (
            f"{symbol}: strong {word} alignment of technicals ({agg.technical:+.2f}) and news sentiment "
            f"({agg.sentiment:+.2f}); final score {score:+.2f}, {signal}"
            + (f", target {agg.target_price:g}" if agg.target_price else "")
        )
        alerts.append(AlertDraft(kind, _signal_priority(score), message, _data(agg)))

    move = float(technical.details.get("move_pct", 0.0)) if technical is not None else 0.0
    negatives = int(sentiment.details.get("negative_recent", 0)) if sentiment is not None else 0
    moved = move <= -t.risk_move_pct
    cluster = negatives >= t.news_cluster
    risk = moved or cluster
    if risk and not state.risk:
        causes = []
        if moved:
            causes.append(f"fell {abs(move):.1f}% over the last {TARGET_BARS} bars")
        if cluster:
            causes.append(f"{negatives} negative news items within 6 hours")
        priority: Priority = "critical" if (moved and cluster) or move <= -2 * t.risk_move_pct else "high"
        message = f"{symbol}: risk: " + " and ".join(causes)
        alerts.append(
            AlertDraft(
                "risk_alert", priority, message, {**_data(agg), "move_pct": round(move, 3), "negative_news": negatives}
            )
        )
    return replace(state, signal=signal, risk=risk), alerts
