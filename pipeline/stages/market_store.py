"""market-store: writes ``crypto.market_data`` ticks and 1-minute bars to SQLite, idempotently.

A tick's id is (symbol, timestamp); each bar touched by a batch is recomputed from its stored
ticks, so replaying the topic, or a batch delivered twice, gives the same rows.

Ticks are kept for ``tick_retention_ms`` before the newest tick of their symbol (not the wall
clock, so an old replay survives while it is written); bars are kept for ever. Pruning spares the
minutes the batch touches, so a bar split across two batches is still computed from all its ticks.
"""

from __future__ import annotations

import time
from typing import ClassVar

import sqlite_utils

from pipeline.messages import MarketData, Message
from pipeline.runner import Stage
from pipeline.topics import MARKET_DATA
from storage import market
from storage.db import Database

MINUTE_MS = 60_000
WEEK_MS = 7 * 86_400_000


def _write(db: sqlite_utils.Database, ticks: list[MarketData], retention_ms: int | None = None) -> None:
    market.store_ticks(
        db.conn,
        [
            (t.symbol, t.timestamp, t.price, t.open, t.high, t.low, t.volume, t.price_change_pct, t.tick_volume)
            for t in ticks
        ],
    )
    if retention_ms is not None:
        first_minute: dict[str, int] = {}
        for t in ticks:
            minute = t.timestamp - t.timestamp % MINUTE_MS
            first_minute[t.symbol] = min(minute, first_minute.get(t.symbol, minute))
        market.prune_ticks(db.conn, first_minute, retention_ms)


class MarketStore(Stage):
    """Sink stage; runs on its runner's thread and writes through the database's writer."""

    name: ClassVar[str] = "market-store"
    inputs: ClassVar[tuple[str, ...]] = (MARKET_DATA,)
    prune_every_s: ClassVar[float] = 60.0  # wall time between prunings of old ticks

    def __init__(self, db: Database, *, tick_retention_ms: int = WEEK_MS) -> None:
        self.db = db
        self.tick_retention_ms = tick_retention_ms
        self._pruned_at: float | None = None

    def process_batch(self, messages: list[Message]) -> list[Message]:
        ticks = [m for m in messages if isinstance(m, MarketData)]
        if ticks:
            now = time.monotonic()
            prune = self._pruned_at is None or now - self._pruned_at >= self.prune_every_s
            self.db.write(lambda db: _write(db, ticks, self.tick_retention_ms if prune else None))
            if prune:
                self._pruned_at = now
        return []
