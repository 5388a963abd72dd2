"""The topic catalog: every topic of the seeds with its partitions, retention and cleanup policy.

Seed 001/002 give the crypto topics, seed 000 the journal topics (retention only; three partitions
so a consumer group can spread), seed 003 the stock-analysis topics and the ``<topic>_dlq`` naming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Cleanup = Literal["delete", "compact"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

MARKET_DATA = "crypto.market_data"
ML_SIGNALS = "crypto.ml_signals"
ORDERS = "crypto.orders"
RAW_TRADES = "raw-trades"
NORMALIZED_TRADES = "normalized-trades"
ENRICHED_TRADES = "enriched-trades"
BEHAVIORAL_ALERTS = "behavioral-alerts"
STOCK_PRICES_RAW = "stock_prices_raw"
STOCK_TRADES_RAW = "stock_trades_raw"
STOCK_NEWS_RAW = "stock_news_raw"
ANALYSIS_TRIGGERS = "analysis_triggers"
ANALYSIS_RESULTS = "analysis_results"
ALERTS = "alerts"

DLQ_SUFFIX = "_dlq"


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is created on either bus."""

    name: str
    partitions: int
    retention_ms: int | None
    cleanup: Cleanup = "delete"
    compression: str = "producer"
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        """Return the topic-level Kafka configuration."""
        config = {"cleanup.policy": self.cleanup, "compression.type": self.compression}
        config["retention.ms"] = str(self.retention_ms if self.retention_ms is not None else -1)
        config.update(self.extra)
        return config

    @property
    def is_dead_letter(self) -> bool:
        return self.name.endswith(DLQ_SUFFIX)


def dlq_name(topic: str) -> str:
    """Return the dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


_SOURCES: tuple[TopicSpec, ...] = (
    TopicSpec(MARKET_DATA, 3, DAY_MS, compression="lz4", description="OHLCV ticks per symbol (seed 001); key = symbol"),
    TopicSpec(
        ML_SIGNALS,
        3,
        7 * DAY_MS,
        compression="lz4",
        description="model predictions and BUY/SELL/HOLD signals (seed 001)",
    ),
    TopicSpec(
        ORDERS,
        1,
        30 * DAY_MS,
        cleanup="compact",
        description="orders and their status changes; key = order_id, compacted (seed 002)",
    ),
    TopicSpec(RAW_TRADES, 3, 7 * DAY_MS, description="trades as received from any source (seed 000)"),
    TopicSpec(NORMALIZED_TRADES, 3, 30 * DAY_MS, description="trades in the Trade record (seed 000)"),
    TopicSpec(ENRICHED_TRADES, 3, 90 * DAY_MS, description="trades with market context (seed 000)"),
    TopicSpec(BEHAVIORAL_ALERTS, 3, 7 * DAY_MS, description="behavioural alerts (seed 000)"),
    TopicSpec(STOCK_PRICES_RAW, 10, 7 * DAY_MS, compression="snappy", description="stock price bars (seed 003)"),
    TopicSpec(
        STOCK_TRADES_RAW,
        10,
        7 * DAY_MS,
        compression="lz4",
        description="stock trades (seed 004 durable path); key = symbol",
    ),
    TopicSpec(STOCK_NEWS_RAW, 5, 30 * DAY_MS, compression="gzip", description="stock news (seed 003)"),
    TopicSpec(ANALYSIS_TRIGGERS, 3, DAY_MS, compression="snappy", description="analysis jobs to run (seed 003)"),
    TopicSpec(
        ANALYSIS_RESULTS, 5, 7 * DAY_MS, compression="snappy", description="technical and sentiment results (seed 003)"
    ),
    TopicSpec(ALERTS, 3, 30 * DAY_MS, compression="snappy", description="alerts to notify (seed 003)"),
)

_DEAD_LETTERS: tuple[TopicSpec, ...] = tuple(
    TopicSpec(dlq_name(s.name), 3, 7 * DAY_MS, description=f"rejected messages of {s.name}") for s in _SOURCES
)

CATALOG: dict[str, TopicSpec] = {s.name: s for s in _SOURCES + _DEAD_LETTERS}


def source_topics() -> list[TopicSpec]:
    """Return the catalog's topics that are not dead-letter topics."""
    return list(_SOURCES)
