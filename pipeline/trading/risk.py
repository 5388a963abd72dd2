"""Risk rules shared by the live decision stage and the backtest: which signals act, how big an
order is, and where its stop-loss and take-profit sit.

Everything here is a pure function of its arguments, so live trading and a backtest that see the
same signals, prices and portfolio make the same orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Literal

from pipeline.errors import ConfigError

# Seed 001: confidence >= 0.8 is high (act), 0.6-0.8 medium (act when confirmed), below is low (ignore).
HIGH_CONFIDENCE = 0.8
MEDIUM_CONFIDENCE = 0.6
# Quantities keep this many significant digits, rounded down so an order never costs more than sized.
QUANTITY_DIGITS = 8

Sizing = Literal["fixed_fraction", "fixed_risk"]
SIZINGS: tuple[str, ...] = ("fixed_fraction", "fixed_risk")


@dataclass(frozen=True)
class RiskSettings:
    """How the decision engine sizes and protects positions (percentages are of equity or price)."""

    stop_loss_pct: float = 2.0  # seed 001: stop 2 % under the entry
    take_profit_pct: float = 5.0  # seed 001: take profit 5 % over the entry
    trailing_stop_pct: float = 0.0  # 0: off; else the stop follows the highest price by this much
    sizing: Sizing = "fixed_fraction"
    position_pct: float = 10.0  # fixed_fraction: each entry is this share of equity
    risk_pct: float = 1.0  # fixed_risk: a stop-out loses this share of equity
    max_symbol_exposure_pct: float = 25.0
    max_total_exposure_pct: float = 100.0
    min_order_usdt: float = 10.0  # exchanges refuse smaller orders (Binance's minimum notional)
    high_confidence: float = HIGH_CONFIDENCE  # a signal this confident acts alone
    medium_confidence: float = MEDIUM_CONFIDENCE  # acts when confirmed; a less confident one never

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.stop_loss_pct < 100:
            problems.append(f"stop_loss_pct={self.stop_loss_pct} must be between 0 and 100")
        if not self.take_profit_pct > 0:
            problems.append(f"take_profit_pct={self.take_profit_pct} must be > 0")
        if not 0 <= self.trailing_stop_pct < 100:
            problems.append(f"trailing_stop_pct={self.trailing_stop_pct} must be between 0 (off) and 100")
        if self.sizing not in SIZINGS:
            problems.append(f"sizing={self.sizing!r} must be one of {', '.join(SIZINGS)}")
        for name in ("position_pct", "risk_pct", "max_symbol_exposure_pct", "max_total_exposure_pct"):
            value = getattr(self, name)
            if not 0 < value <= 100:
                problems.append(f"{name}={value} must be > 0 and <= 100")
        if not self.min_order_usdt >= 0:
            problems.append(f"min_order_usdt={self.min_order_usdt} must be >= 0")
        if not 0 < self.medium_confidence <= 1:
            problems.append(f"medium_confidence={self.medium_confidence} must be > 0 and <= 1")
        if not self.medium_confidence <= self.high_confidence <= 1:
            problems.append(
                f"high_confidence={self.high_confidence} must be >= medium_confidence ({self.medium_confidence}) "
                "and <= 1"
            )
        if problems:
            raise ConfigError("; ".join(problems))


def confidence_level(confidence: float, high: float = HIGH_CONFIDENCE, medium: float = MEDIUM_CONFIDENCE) -> str:
    """Return the level of ``confidence``: high, medium or low (seed 001's levels by default)."""
    return "high" if confidence >= high else "medium" if confidence >= medium else "low"


def actionable(signal: str, confidence: float, medium: float = MEDIUM_CONFIDENCE) -> bool:
    """Tell whether a signal can lead to an order at all: BUY or SELL at medium confidence or more."""
    return signal != "HOLD" and confidence >= medium


def indicator_confirms(signal: str, features: dict[str, float | None]) -> bool:
    """The indicator check a medium signal may pass instead of another model: the 7-bar average on the
    signal's side of the 25-bar one, and RSI(14) not already stretched that way."""
    ma_7, ma_25, rsi = features.get("ma_7"), features.get("ma_25"), features.get("rsi_14")
    if ma_7 is None or ma_25 is None or rsi is None:
        return False
    if signal == "BUY":
        return ma_7 > ma_25 and rsi < 70.0
    if signal == "SELL":
        return ma_7 < ma_25 and rsi > 30.0
    return False


def brackets(price: float, settings: RiskSettings) -> tuple[float, float]:
    """Return (stop_loss, take_profit) of a long entry at ``price``: stop < price < take-profit."""
    return price * (1.0 - settings.stop_loss_pct / 100.0), price * (1.0 + settings.take_profit_pct / 100.0)


def floor_quantity(quantity: float) -> float:
    """Round ``quantity`` down to ``QUANTITY_DIGITS`` significant digits (0 stays 0), in decimal, so
    0.29 stays 0.29 and nothing is ever rounded up."""
    if not quantity > 0 or not math.isfinite(quantity):
        return 0.0
    exact = Decimal(repr(quantity))  # the shortest decimal that is this float
    step = Decimal(1).scaleb(exact.adjusted() - (QUANTITY_DIGITS - 1))
    return float(exact.quantize(step, rounding=ROUND_DOWN))


@dataclass(frozen=True)
class SizeDecision:
    """An entry's size, or why there is none (``quantity`` 0 and ``reason``)."""

    quantity: float
    notional: float
    reason: str | None = None
    capped_by: str | None = None


def size_entry(
    price: float,
    stop: float,
    *,
    equity: float,
    cash: float,
    symbol_exposure: float,
    total_exposure: float,
    settings: RiskSettings,
    cost_rate: float = 0.0,
) -> SizeDecision:
    """Size a long entry at ``price`` with its stop at ``stop``.

    ``cost_rate`` is what a fill costs over its notional (slippage and fee), so a sized order
    still fits the cash when it fills at the same price. The size is the sizing rule's, capped by the room
    left under the per-symbol and total exposure limits and by the cash; below the minimum order
    there is no entry.
    """
    if not (price > 0 and math.isfinite(price)):
        return SizeDecision(0.0, 0.0, f"price {price} is not a positive number")
    if not equity > 0:
        return SizeDecision(0.0, 0.0, f"equity is {equity:.2f} USDT")
    if settings.sizing == "fixed_risk":
        per_unit = price - stop
        if not per_unit > 0:
            return SizeDecision(0.0, 0.0, f"stop {stop} is not under the price {price}")
        wanted = equity * settings.risk_pct / 100.0 / per_unit * price
    else:
        wanted = equity * settings.position_pct / 100.0
    caps = {
        "symbol exposure": equity * settings.max_symbol_exposure_pct / 100.0 - symbol_exposure,
        "total exposure": equity * settings.max_total_exposure_pct / 100.0 - total_exposure,
        "cash": cash / (1.0 + cost_rate),
    }
    notional, capped_by = wanted, None
    for name, room in caps.items():
        if room < notional:
            notional, capped_by = room, name
    if notional < max(settings.min_order_usdt, 1e-12):
        why = capped_by or "sizing"
        return SizeDecision(
            0.0,
            max(notional, 0.0),
            f"{why} leaves {max(notional, 0.0):.2f} USDT, under the {settings.min_order_usdt:g} USDT minimum order",
            capped_by,
        )
    quantity = floor_quantity(notional / price)
    if quantity <= 0:
        return SizeDecision(0.0, 0.0, f"{notional:.2f} USDT buys nothing at {price}")
    return SizeDecision(quantity, quantity * price, None, capped_by)
