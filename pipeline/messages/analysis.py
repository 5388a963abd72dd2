"""Seed 003's stock analysis messages: prices, news, analysis triggers and results, alerts.

Stock trades (``stock_trades_raw``) and the stock symbol rule live in ``stocks.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from pipeline import topics as t
from pipeline.messages.base import (
    Message,
    rule_error,
)
from pipeline.messages.stocks import STOCK_SYMBOL, iso_ms


def _iso_with_offset(field: str, value: str) -> str:
    try:
        iso_ms(value)
    except ValueError:
        raise rule_error(field, value, "an ISO-8601 time with an offset, e.g. 2024-12-04T10:00:00+07:00") from None
    return value


class StockPrice(Message):
    """A stock price bar on ``stock_prices_raw`` (seed 003): ``time`` is the bar's start as ISO-8601
    with an offset, ``collected_at`` when the desk received it (ISO-8601).

    Extensions to seed 003 (all optional, so seed 003's own messages are valid): ``timeframe``
    (``1Min`` by default, or ``1Day``), and Alpaca's ``trade_count`` and ``vwap``.
    """

    topic: ClassVar[str] = t.STOCK_PRICES_RAW
    key_field: ClassVar[str | None] = "symbol"

    symbol: str = Field(pattern=STOCK_SYMBOL)
    time: str = Field(min_length=10)
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
    collected_at: str = Field(min_length=10)
    timeframe: Literal["1Min", "1Day"] = "1Min"
    trade_count: int | None = Field(default=None, ge=0)
    vwap: float | None = Field(default=None, gt=0)

    @field_validator("time")
    @classmethod
    def _time_has_offset(cls, value: str) -> str:
        try:
            iso_ms(value)
        except ValueError:
            raise rule_error("time", value, "an ISO-8601 time with an offset, e.g. 2024-12-04T09:15:00+07:00") from None
        return value

    @field_validator("collected_at")
    @classmethod
    def _collected_is_a_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise rule_error("collected_at", value, "an ISO-8601 time") from None
        return value

    @model_validator(mode="after")
    def _range(self) -> StockPrice:
        if self.high < self.low:
            raise rule_error("high", self.high, f"high >= low (low={self.low})")
        if self.high < max(self.open, self.close):
            raise rule_error("high", self.high, f"high >= open and close (open={self.open}, close={self.close})")
        if self.low > min(self.open, self.close):
            raise rule_error("low", self.low, f"low <= open and close (open={self.open}, close={self.close})")
        return self

    @property
    def start_ms(self) -> int:
        """The bar's start as Unix milliseconds."""
        return iso_ms(self.time)


class StockNews(Message):
    """A news item on ``stock_news_raw`` (seed 003): one message per (item, symbol) it names.

    Rules: a stock symbol; a title that is not blank; ``published_at`` and ``collected_at`` as
    ISO-8601 with an offset. ``news_id`` is the item's stable hash (``pipeline.analysis.news``).
    """

    topic: ClassVar[str] = t.STOCK_NEWS_RAW
    key_field: ClassVar[str | None] = "symbol"

    news_id: str = Field(min_length=1)
    symbol: str = Field(pattern=STOCK_SYMBOL)
    title: str = Field(min_length=1)
    content: str
    source: str
    source_url: str
    published_at: str = Field(min_length=10)
    collected_at: str = Field(min_length=10)
    category: str
    tags: list[str] = Field(default_factory=list)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise rule_error("title", value, "a title that is not blank")
        return value

    @field_validator("published_at", "collected_at")
    @classmethod
    def _times_have_offsets(cls, value: str, info: ValidationInfo) -> str:
        try:
            iso_ms(value)
        except ValueError:
            rule = "an ISO-8601 time with an offset, e.g. 2024-12-04T08:30:00+07:00"
            raise rule_error(info.field_name or "published_at", value, rule) from None
        return value

    @property
    def published_ms(self) -> int:
        """When the item was published, as Unix milliseconds."""
        return iso_ms(self.published_at)


class AnalysisTrigger(Message):
    """An analysis job on ``analysis_triggers`` (seed 003)."""

    topic: ClassVar[str] = t.ANALYSIS_TRIGGERS
    key_field: ClassVar[str | None] = "symbol"

    trigger_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    trigger_type: Literal["price_update", "news_update", "scheduled"]
    timestamp: str = Field(min_length=10)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_has_offset(cls, value: str) -> str:
        return _iso_with_offset("timestamp", value)


class AnalysisScores(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    score: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    details: dict[str, Any] = Field(default_factory=dict)


class AnalysisResult(Message):
    """A technical or sentiment result on ``analysis_results`` (seed 003)."""

    topic: ClassVar[str] = t.ANALYSIS_RESULTS
    key_field: ClassVar[str | None] = "symbol"

    result_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    analysis_type: Literal["technical", "sentiment"]
    timestamp: str = Field(min_length=10)
    results: AnalysisScores
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_has_offset(cls, value: str) -> str:
        return _iso_with_offset("timestamp", value)


class Alert(Message):
    """An alert to notify on ``alerts`` (seed 003)."""

    topic: ClassVar[str] = t.ALERTS
    key_field: ClassVar[str | None] = "symbol"

    alert_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    alert_type: Literal["buy_signal", "sell_signal", "risk_alert"]
    priority: Literal["low", "medium", "high", "critical"]
    timestamp: str = Field(min_length=10)
    message: str
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_has_offset(cls, value: str) -> str:
        return _iso_with_offset("timestamp", value)
