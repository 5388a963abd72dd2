"""Seed 003's stock analysis messages: prices, news, analysis triggers and results, alerts."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline import topics as t
from pipeline.messages.base import (
    Message,
    rule_error,
)


class StockPrice(Message):
    """A stock price bar on ``stock_prices_raw`` (seed 003); times are ISO-8601 strings."""

    topic: ClassVar[str] = t.STOCK_PRICES_RAW
    key_field: ClassVar[str | None] = "symbol"

    symbol: str = Field(pattern=r"^[A-Z0-9.]{1,10}$")
    time: str = Field(min_length=10)
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
    collected_at: str = Field(min_length=10)

    @model_validator(mode="after")
    def _range(self) -> StockPrice:
        if self.high < self.low:
            raise rule_error("high", self.high, f"high >= low (low={self.low})")
        return self


class StockNews(Message):
    """A news item on ``stock_news_raw`` (seed 003)."""

    topic: ClassVar[str] = t.STOCK_NEWS_RAW
    key_field: ClassVar[str | None] = "symbol"

    news_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    title: str = Field(min_length=1)
    content: str
    source: str
    source_url: str
    published_at: str = Field(min_length=10)
    collected_at: str = Field(min_length=10)
    category: str
    tags: list[str] = Field(default_factory=list)


class AnalysisTrigger(Message):
    """An analysis job on ``analysis_triggers`` (seed 003)."""

    topic: ClassVar[str] = t.ANALYSIS_TRIGGERS
    key_field: ClassVar[str | None] = "symbol"

    trigger_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    trigger_type: Literal["price_update", "news_update", "scheduled"]
    timestamp: str = Field(min_length=10)
    metadata: dict[str, Any] = Field(default_factory=dict)


class AnalysisScores(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    score: float
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
