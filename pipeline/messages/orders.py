"""Seed 001's orders on ``crypto.orders``: the signal that triggered them, their risk and status."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline import topics as t
from pipeline.messages.base import (
    CRYPTO_SYMBOL,
    Message,
    OrderStatus,
    OrderType,
    Side,
    rule_error,
)


class TriggerSignal(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    model: str
    confidence: float = Field(ge=0.0, le=1.0)
    expected_change_pct: float


class RiskManagement(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    stop_loss: float | None = Field(default=None, gt=0)
    take_profit: float | None = Field(default=None, gt=0)
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None


class Order(Message):
    """An order or one of its status changes on ``crypto.orders`` (seed 001); key = order_id."""

    topic: ClassVar[str] = t.ORDERS
    key_field: ClassVar[str | None] = "order_id"
    time_field: ClassVar[str | None] = "timestamp"

    order_id: str = Field(min_length=1)
    symbol: str = Field(pattern=CRYPTO_SYMBOL)
    timestamp: int = Field(gt=0)
    action: Side
    order_type: OrderType
    quantity: float = Field(gt=0)
    price: float = Field(gt=0)
    total_value: float
    status: OrderStatus
    strategy: str
    trigger_signal: TriggerSignal
    risk_management: RiskManagement
    metadata: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> Order:
        expected = self.quantity * self.price
        if not math.isclose(self.total_value, expected, rel_tol=1e-6, abs_tol=0.01):
            raise rule_error("total_value", self.total_value, f"total_value = quantity * price ({expected:.8g})")
        sl, tp = self.risk_management.stop_loss, self.risk_management.take_profit
        if self.action == "BUY":
            if sl is not None and not sl < self.price:
                raise rule_error("risk_management.stop_loss", sl, f"stop_loss < price ({self.price}) for BUY")
            if tp is not None and not self.price < tp:
                raise rule_error("risk_management.take_profit", tp, f"price ({self.price}) < take_profit for BUY")
        else:
            if sl is not None and not sl > self.price:
                raise rule_error("risk_management.stop_loss", sl, f"stop_loss > price ({self.price}) for SELL")
            if tp is not None and not self.price > tp:
                raise rule_error("risk_management.take_profit", tp, f"price ({self.price}) > take_profit for SELL")
        return self
