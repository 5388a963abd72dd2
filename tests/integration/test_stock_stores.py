"""The durable path on both buses: trades and bars from a stock source through stock_trades_raw and
stock_prices_raw into SQLite by the two store stages, in batches, each once, with the resampled bars."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.bus.base import Bus
from pipeline.fanout import InProcessFanout
from pipeline.runner import StageRunner
from pipeline.sources.stocks import StockFeed
from pipeline.stages.stock_store import StockBarsStore, StockTradesStore
from pipeline.topics import CATALOG
from pipeline.worker_health import Health
from storage import stocks
from storage.db import Database
from tests.fakes.market_servers import wait_for

SESSION_START = 1_796_135_400_000  # Tue 2026-12-01 09:30 New York


@contextmanager
def running(runner: StageRunner) -> Iterator[StageRunner]:
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def feed(bus: Bus, symbols: tuple[str, ...], *, replay: bool = True) -> StockFeed:
    return StockFeed(
        "test-feed", bus.producer(), InProcessFanout(), symbols, Health("test-feed", "source"), replay=replay
    )


def unique_symbols(n: int) -> tuple[str, ...]:
    base = f"Q{time.time_ns() % 10**6:06d}"  # a shared broker keeps other runs' messages: new symbols each run
    return tuple(f"{base}{chr(65 + i)}"[:10] for i in range(n))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "desk.db")
    yield database
    database.close()


def count_for(db: Database, symbols: tuple[str, ...]) -> int:
    return sum(len(stocks.trades(db, s, limit=100_000)) for s in symbols)


def test_every_trade_is_stored_once_in_batches(bus: Bus, db: Database, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    symbols = unique_symbols(3)
    source = feed(bus, symbols)
    store = StockTradesStore(db)
    store.name  # noqa: B018 - the class attribute the runner uses
    writes: list[int] = []
    real_write = db.write

    def counting_write(fn, timeout: float = 60.0):
        writes.append(1)
        return real_write(fn, timeout)

    db.write = counting_write  # type: ignore[method-assign]
    runner = StageRunner(store, bus, max_batch=100, fill_wait_s=0.5)
    runner.stage.__class__.group_id = property(lambda self: group_name("store"))  # type: ignore[assignment]
    try:
        with running(runner):
            for i in range(1000):
                source.trade(
                    None, symbol=symbols[i % 3], timestamp=SESSION_START + i, price=100 + i % 7, size=i % 50, trade_id=i
                )
            assert source.flush() == 0
            wait_for(lambda: count_for(db, symbols) == 1000, 60, "1,000 stored trades")
            for i in range(1000):  # the same trades again (a redelivery, a replay): nothing changes
                source.trade(
                    None, symbol=symbols[i % 3], timestamp=SESSION_START + i, price=100 + i % 7, size=i % 50, trade_id=i
                )
            source.flush()
            wait_for(lambda: store.duplicates >= 1000, 60, "the duplicates to be seen")
        processed = runner.health.snapshot().processed
    finally:
        del runner.stage.__class__.group_id
    assert count_for(db, symbols) == 1000
    # Batches of up to 100, not a write per trade (a shared broker also hands over earlier runs' trades).
    assert processed >= 2000 and len(writes) <= processed // 50 + 5
    row = stocks.trades(db, symbols[1], limit=1)[0]
    assert (row["trade_id"], row["price"], row["size"]) == (997, 100 + 997 % 7, 997 % 50)


def test_a_small_batch_waits_at_most_the_maximum_wait(tmp_path: Path, db: Database) -> None:
    from pipeline.bus.embedded import EmbeddedBus

    bus = EmbeddedBus(tmp_path / "bus.db", poll_interval_s=0.02)
    bus.create_topics(CATALOG.values())
    try:
        store = StockTradesStore(db)
        writes: list[int] = []
        real_write = db.write

        def counting_write(fn, timeout: float = 60.0):
            writes.append(1)
            return real_write(fn, timeout)

        db.write = counting_write  # type: ignore[method-assign]
        source = feed(bus, ("QAA",))
        with running(StageRunner(store, bus, max_batch=100, fill_wait_s=0.4)):
            for i in range(5):
                source.trade(None, symbol="QAA", timestamp=SESSION_START + i, price=10.0, size=1, trade_id=i)
                source.flush()
                time.sleep(0.02)
            wait_for(lambda: store.stored == 5, 10, "five stored trades")
        assert len(writes) == 1  # five trades inside the wait: one batch
    finally:
        bus.close()


def test_bars_are_stored_updated_and_resampled(bus: Bus, db: Database, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    (symbol,) = unique_symbols(1)
    source = feed(bus, (symbol,))
    store = StockBarsStore(db)
    runner = StageRunner(store, bus, max_batch=100, fill_wait_s=0.1)
    runner.stage.__class__.group_id = property(lambda self: group_name("bars"))  # type: ignore[assignment]
    try:
        with running(runner):
            for i in range(12):  # 09:30 .. 09:41: two full 5-minute bars and a part of a third
                p = 100.0 + i
                source.bar(
                    None,
                    symbol=symbol,
                    start_ms=SESSION_START + i * 60_000,
                    open=p,
                    high=p + 1,
                    low=p - 1,
                    close=p + 0.5,
                    volume=10,
                )
            source.bar(
                None,
                symbol=symbol,
                start_ms=SESSION_START + 60_000,
                open=101,
                high=120,
                low=100,
                close=101.5,
                volume=30,
            )  # updated
            source.flush()
            wait_for(
                lambda: (
                    len(stocks.bars(db, symbol, "1Min", 100)) == 12
                    and stocks.bars(db, symbol, "1Min", 100)[1][2] == 120
                ),
                30,
                "12 stored bars, one of them updated",
            )
    finally:
        del runner.stage.__class__.group_id
    minutes = stocks.bars(db, symbol, "1Min", 100)
    assert len(minutes) == 12 and minutes[1][2] == 120 and minutes[1][5] == 30
    five = stocks.bars(db, symbol, "5Min", 10)
    assert [b[0] for b in five] == [SESSION_START, SESSION_START + 300_000, SESSION_START + 600_000]
    assert five[0][1:6] == (100.0, 120.0, 99.0, 104.5, 70.0)
    (day,) = stocks.bars(db, symbol, "1Day", 10)
    assert day[0] == stocks.day_start(SESSION_START) and day[1] == 100.0 and day[4] == 111.5 and day[5] == 140.0
    assert stocks.bars(db, symbol, "1Hour", 10)[0][0] == SESSION_START - 30 * 60_000  # the 09:00 hour
