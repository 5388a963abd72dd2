"""market-store: writes ``crypto.market_data`` ticks and 1-minute bars to SQLite, idempotently.

A tick's id is (symbol, timestamp); each bar touched by a batch is recomputed from its stored
ticks, so replaying the topic, or a batch delivered twice, gives the same rows.
"""

from __future__ import annotations

from typing import ClassVar

import sqlite_utils

from pipeline.messages import MarketData, Message
from pipeline.runner import Stage
from pipeline.topics import MARKET_DATA
from storage.db import Database

MINUTE_MS = 60_000


def _write(db: sqlite_utils.Database, ticks: list[MarketData]) -> None:
    conn = db.conn
    conn.executemany(
        "INSERT OR REPLACE INTO ticks VALUES (?,?,?,?,?,?,?,?,?)",
        [(t.symbol, t.timestamp, t.price, t.open, t.high, t.low, t.volume, t.price_change_pct,
          t.tick_volume) for t in ticks])
    bars = []
    for symbol, start in sorted({(t.symbol, t.timestamp - t.timestamp % MINUTE_MS) for t in ticks}):
        rows = conn.execute(
            "SELECT price, coalesce(tick_volume, 0) FROM ticks WHERE symbol=? AND timestamp>=? "
            "AND timestamp<? ORDER BY timestamp", (symbol, start, start + MINUTE_MS)).fetchall()
        prices = [p for p, _ in rows]
        bars.append((symbol, start, prices[0], max(prices), min(prices), prices[-1],
                     sum(v for _, v in rows), len(rows)))
    conn.executemany("INSERT OR REPLACE INTO bars_1m VALUES (?,?,?,?,?,?,?,?)", bars)


class MarketStore(Stage):
    """Sink stage; runs on its runner's thread and writes through the database's writer."""

    name: ClassVar[str] = "market-store"
    inputs: ClassVar[tuple[str, ...]] = (MARKET_DATA,)

    def __init__(self, db: Database) -> None:
        self.db = db

    def process_batch(self, messages: list[Message]) -> list[Message]:
        ticks = [m for m in messages if isinstance(m, MarketData)]
        if ticks:
            self.db.write(lambda db: _write(db, ticks))
        return []
