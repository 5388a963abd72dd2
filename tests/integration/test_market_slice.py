"""The first live slice on both buses: simulator -> crypto.market_data -> market-store -> bars."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from pipeline.bus.base import Bus
from pipeline.runner import StageRunner
from pipeline.sources.simulator import MarketSimulator, SimulatorSource
from pipeline.stages.market_store import MarketStore
from pipeline.topics import CATALOG
from storage import market
from storage.db import Database


def test_simulated_ticks_become_idempotent_one_minute_bars(bus: Bus, tmp_path: Path) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    symbol = "QZXUSDT"  # a symbol no other test publishes, so a shared broker does not disturb counts

    class Store(MarketStore):
        name: ClassVar[str] = f"market-store-test-{time.time_ns()}"

    source = SimulatorSource(bus, MarketSimulator((symbol,), seed=5), tick_ms=50, history_minutes=0)
    stage = StageRunner(Store(db), bus, poll_timeout=0.2)
    stage.start()
    source.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rows = db.query("SELECT count(*) AS n FROM ticks WHERE symbol=?", (symbol,))
            if rows[0]["n"] >= 20:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"ticks stored: {rows}; health: {stage.health.snapshot()}")
    finally:
        source.stop()
    time.sleep(1.0)
    stage.stop()
    ticks = db.query("SELECT * FROM ticks WHERE symbol=? ORDER BY timestamp", (symbol,))
    bars = market.bars(db, symbol)
    assert bars["ticks"].sum() == len(ticks)
    last = bars.iloc[-1]
    in_last = [t for t in ticks if t["timestamp"] >= last["start"]]
    assert last["open"] == in_last[0]["price"] and last["close"] == in_last[-1]["price"]
    assert last["high"] == max(t["price"] for t in in_last) and last["low"] == min(t["price"] for t in in_last)
    # delivering the same ticks again changes nothing
    from pipeline.messages import MarketData, Message

    again: list[Message] = [
        MarketData(
            symbol=t["symbol"],
            timestamp=t["timestamp"],
            price=t["price"],
            open=t["open_24h"],
            high=t["high_24h"],
            low=t["low_24h"],
            volume=t["volume_24h"],
            price_change_pct=t["change_pct_24h"],
            tick_volume=t["tick_volume"],
        )
        for t in ticks
    ]
    Store(db).process_batch(again)
    assert market.bars(db, symbol).drop(columns="time").equals(bars.drop(columns="time"))
    assert db.query("SELECT count(*) AS n FROM ticks WHERE symbol=?", (symbol,))[0]["n"] == len(ticks)
    db.close()
