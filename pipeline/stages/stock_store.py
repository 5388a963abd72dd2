"""stock-trades-store and stock-bars-store: seed 004's durable consumers, writing SQLite.

* ``StockTradesStore`` writes ``stock_trades_raw`` into ``stock_trades``; a trade already stored
  (same symbol, time and trade id: a redelivery, a replayed topic) changes nothing.
* ``StockBarsStore`` writes ``stock_prices_raw`` into ``stock_bars`` and recomputes the 5Min,
  1Hour and 1Day bars the batch's 1Min bars fall in (``storage.stocks``).

Batches: the wiring runs them with ``max_batch = BATCH_SIZE`` (100 by default) and a maximum wait
(``BATCH_MAX_WAIT_MS``): a batch is written, in one transaction, once it is full or its first
trade waited that long; the runner commits the offsets only after the write is durable, so
nothing is lost or doubled across a crash. Both run on their runner's thread.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pipeline.messages import Message, StockPrice, StockTrade
from pipeline.runner import Stage
from pipeline.topics import STOCK_PRICES_RAW, STOCK_TRADES_RAW
from storage import stocks
from storage.db import Database


class StockTradesStore(Stage):
    """Sink of ``stock_trades_raw``."""

    name: ClassVar[str] = "stock-trades-store"
    inputs: ClassVar[tuple[str, ...]] = (STOCK_TRADES_RAW,)

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stored = 0
        self.duplicates = 0

    def process_batch(self, messages: list[Message]) -> list[Message]:
        rows: list[stocks.TradeRow] = [
            (t.symbol, t.timestamp, t.trade_id, t.price, t.size, t.exchange, t.conditions, t.tape, t.collected_at)
            for t in messages
            if isinstance(t, StockTrade)
        ]
        if rows:
            new = self.db.write(lambda db: stocks.store_trades(db.conn, rows))
            self.stored += new
            self.duplicates += len(rows) - new
        return []

    def status(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates}


class StockBarsStore(Stage):
    """Sink of ``stock_prices_raw``."""

    name: ClassVar[str] = "stock-bars-store"
    inputs: ClassVar[tuple[str, ...]] = (STOCK_PRICES_RAW,)

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stored = 0

    def process_batch(self, messages: list[Message]) -> list[Message]:
        rows: list[stocks.BarRow] = [
            (b.symbol, b.timeframe, b.start_ms, b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap)
            for b in messages
            if isinstance(b, StockPrice)
        ]
        if rows:
            self.db.write(lambda db: stocks.store_bars(db.conn, rows))
            self.stored += len(rows)
        return []

    def status(self) -> dict[str, Any]:
        return {"stored": self.stored}
