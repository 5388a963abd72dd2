"""Seed 001's market messages: ticks on ``crypto.market_data`` and signals on ``crypto.ml_signals``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from pipeline import topics as t
from pipeline.messages.base import (
    CRYPTO_SYMBOL,
    Message,
    PredictionType,
    Signal,
    rule_error,
)


class MarketData(Message):
    """A tick of ``crypto.market_data`` (seed 001); open/high/low/volume are 24 h figures."""

    topic: ClassVar[str] = t.MARKET_DATA
    key_field: ClassVar[str | None] = "symbol"
    max_age_ms: ClassVar[int | None] = 5 * 60_000
    time_field: ClassVar[str | None] = "timestamp"

    symbol: str = Field(pattern=CRYPTO_SYMBOL)
    timestamp: int = Field(gt=0)
    price: float = Field(gt=0)
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    volume: float = Field(ge=0)
    price_change_pct: float
    # Extension to seed 001: base-asset volume traded since the previous tick (for bar volumes).
    tick_volume: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _high_not_below_low(self) -> MarketData:
        if self.high < self.low:
            raise rule_error("high", self.high, f"high >= low (low={self.low})")
        return self


class MLSignal(Message):
    """A model's prediction on ``crypto.ml_signals`` (seed 001)."""

    plain_json: ClassVar[bool] = True  # 150 of them a burst of 50 symbols: a quarter of pydantic's time
    kept_json: ClassVar[bool] = True  # the ml stage's features and metadata are KeptJSON, encoded once
    topic: ClassVar[str] = t.ML_SIGNALS
    key_field: ClassVar[str | None] = "symbol"
    max_age_ms: ClassVar[int | None] = 2 * 60_000
    time_field: ClassVar[str | None] = "timestamp"

    symbol: str = Field(pattern=CRYPTO_SYMBOL)
    timestamp: int = Field(gt=0)
    model: str = Field(min_length=1)
    prediction_type: PredictionType
    predicted_value: float = Field(gt=0)
    current_price: float = Field(gt=0)
    expected_change_pct: float
    confidence: float = Field(ge=0.0, le=1.0)
    signal: Signal
    features: dict[str, float | None]
    metadata: dict[str, Any]
