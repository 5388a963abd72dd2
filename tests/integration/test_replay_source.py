"""Replay of candle files on both buses: replay source -> crypto.market_data -> market-store -> bars."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from pipeline.bus.base import Bus, Record
from pipeline.candles import read_candles
from pipeline.runner import StageRunner
from pipeline.sources.replay import ReplaySource
from pipeline.stages.market_store import MarketStore
from pipeline.topics import CATALOG, MARKET_DATA, dlq_name
from storage import market
from storage.db import Database

CANDLES = Path(__file__).resolve().parents[1] / "fixtures" / "candles"
KLINES = CANDLES / "BTCUSDT-1m-2024-11-16.csv"  # ten clean 1-minute candles from 2024-11-16 00:00 UTC
BAD_ROWS = CANDLES / "bad-rows.csv"  # nine good candles (one out of order) among bad rows on lines 3,5-9,11,15
BAD_LINES = {
    3: "not a number",
    5: "non-positive price",
    6: "high < low",
    7: "high below open/close",
    8: "low above open/close",
    9: "negative volume",
    11: "duplicate time",
    15: "not a number",
}
OHLCV = ["start", "open", "high", "low", "close", "volume"]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "desk.db")
    yield database
    database.close()


def new_symbol() -> str:
    """A symbol no other test (or earlier run on the shared broker) publishes."""
    return "Q" + "".join(random.choices(string.ascii_uppercase, k=4)) + "USDT"


def new_store(db: Database, **kwargs: Any) -> MarketStore:
    class Store(MarketStore):
        name: ClassVar[str] = f"market-store-replay-test-{time.time_ns()}"
        prune_every_s: ClassVar[float] = 0.0  # prune on every batch, so retention shows at once

    return Store(db, **kwargs)


def wait_for(condition: Callable[[], bool], what: Callable[[], object], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what()}")


def tick_count(db: Database, symbol: str) -> int:
    return db.query("SELECT count(*) AS n FROM ticks WHERE symbol=?", (symbol,))[0]["n"]


def read_all(
    bus: Bus, group: str, topic: str, keep: Callable[[Record], bool], expected: int, timeout: float = 90.0
) -> list[Record]:
    """Read ``topic`` from the start until caught up with at least ``expected`` kept records."""
    consumer = bus.consumer(group, [topic])
    found: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            found.extend(r for r in consumer.poll(500, 1.0) if keep(r))
            if len(found) >= expected and consumer.assignment() and consumer.lag() == 0:
                return found
        raise AssertionError(f"{topic}: {len(found)} records, expected {expected}")
    finally:
        consumer.close()


def write_klines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def shifted(line: str, minutes: int) -> str:
    cells = line.split(",")
    cells[0] = str(int(cells[0]) + minutes * 60_000)
    cells[6] = str(int(cells[6]) + minutes * 60_000)
    return ",".join(cells)


def bar_rows(db: Database, symbol: str) -> list[dict[str, Any]]:
    return market.bars(db, symbol)[OHLCV].to_dict("records")


def test_replayed_klines_become_the_files_bars_and_bad_rows_are_dead_lettered(
    bus: Bus, db: Database, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    symbol = new_symbol()
    source_name = f"replay-test-{time.time_ns()}"
    good = read_candles(BAD_ROWS).frame
    store = new_store(db)
    stage = StageRunner(store, bus, poll_timeout=0.2)
    source = ReplaySource(bus.producer(), {symbol: BAD_ROWS}, speed=0, name=source_name)
    assert source.progress == 0.0 and not source.done
    stage.start()
    source.start()
    try:
        wait_for(
            lambda: source.done and tick_count(db, symbol) >= 4 * len(good),
            lambda: (source.health.snapshot(), stage.health.snapshot(), tick_count(db, symbol)),
        )
    finally:
        source.stop()
        stage.stop()
    assert source.progress == 1.0
    assert source.health.snapshot().produced == 4 * len(good)
    # the stored 1-minute bars are the file's good candles, exactly
    assert bar_rows(db, symbol) == good.to_dict("records")
    assert market.bars(db, symbol)["ticks"].tolist() == [4] * len(good)
    assert tick_count(db, symbol) == 4 * len(good)
    # each bad row is on the dead-letter topic once, naming its line and rule; no tick was refused
    letters = [
        orjson.loads(r.value or b"")
        for r in read_all(
            bus,
            group_name("dlq"),
            dlq_name(MARKET_DATA),
            lambda r: orjson.loads(r.value or b"")["stage"] in (source_name, store.name) and r.key == symbol.encode(),
            len(BAD_LINES),
        )
    ]
    assert all(letter["stage"] == source_name for letter in letters), "ticks were dead-lettered by the store"
    by_line = {int(letter["value"].split(":")[1]): letter for letter in letters}
    assert sorted(by_line) == sorted(BAD_LINES) and len(letters) == len(BAD_LINES)
    for line, rule in BAD_LINES.items():
        letter = by_line[line]
        assert letter["value"].startswith(f"bad-rows.csv:{line}: ")
        assert rule in [v["rule"] for v in letter["violations"]] and rule in letter["reason"]
        assert letter["source_topic"] == MARKET_DATA and letter["source_key"] == symbol
    assert by_line[3]["violations"] == [{"field": "open", "value": "abc", "rule": "not a number"}]
    assert source.rejection_counts()["not a number"] == 2
    # every tick is marked as a replay
    ticks = read_all(bus, group_name("ticks"), MARKET_DATA, lambda r: r.key == symbol.encode(), 4 * len(good))
    assert len(ticks) == 4 * len(good)
    assert {r.header("feed") for r in ticks} == {b"replay"}
    first = [orjson.loads(r.value or b"") for r in ticks[:4]]
    assert [t["price"] for t in first] == [91000.0, 90980.1, 91050.5, 91020.0]  # open, low, high, close
    assert [t["timestamp"] - good["start"][0] for t in first] == [0, 15_000, 30_000, 59_999]
    last = orjson.loads(ticks[-1].value or b"")  # the 24 h figures span every candle replayed
    assert (last["open"], last["high"], last["low"]) == (91000.0, 91260.0, 90890.37)
    assert last["volume"] == pytest.approx(good["volume"].sum())
    assert last["price_change_pct"] == pytest.approx((91255.55 / 91000 - 1) * 100)


def test_speed_60_replays_three_minutes_of_candles_in_three_seconds_of_its_clock(bus: Bus, tmp_path: Path) -> None:
    bus.create_topics(CATALOG.values())
    path = write_klines(tmp_path / "c.csv", KLINES.read_text().splitlines()[:3])
    start = 1000.0
    now = [start]
    halfway, go_on = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:  # time passes only when the replay waits; it stops half-way
        now[0] += seconds
        if now[0] - start >= 1.5 and not halfway.is_set():
            halfway.set()
            go_on.wait(60)

    source = ReplaySource(
        bus.producer(),
        {new_symbol(): path},
        speed=60,
        name=f"replay-test-{time.time_ns()}",
        clock=lambda: now[0],
        sleep=sleep,
    )
    source.start()
    try:
        assert halfway.wait(30), source.health.snapshot()
        assert 0.0 < source.progress < 1.0 and not source.done
        go_on.set()
        wait_for(lambda: source.done, lambda: source.health.snapshot(), timeout=30)
        assert now[0] - start == pytest.approx(179.999 / 60)  # first open to last close, at 60x
        assert source.progress == 1.0
        assert source.health.snapshot().running  # idles until stopped
        assert source.health.snapshot().produced == 12
    finally:
        go_on.set()
        source.stop()
    assert not source.health.snapshot().running


def test_pacing_follows_candle_time_with_an_injected_clock(bus: Bus, tmp_path: Path) -> None:
    bus.create_topics(CATALOG.values())
    path = write_klines(tmp_path / "c.csv", KLINES.read_text().splitlines()[:3])
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    source = ReplaySource(
        bus.producer(),
        {new_symbol(): path},
        speed=60,
        name=f"replay-test-{time.time_ns()}",
        clock=lambda: now[0],
        sleep=sleep,
    )
    source.start()
    try:
        wait_for(lambda: source.done, lambda: source.health.snapshot(), timeout=30)
    finally:
        source.stop()
    assert len(slept) == 9  # before every tick but the first and the opens 1 ms after a close
    assert sum(slept) == pytest.approx(179.999 / 60)
    assert slept[:3] == pytest.approx([0.25, 0.25, 29.999 / 60])


def test_stop_is_prompt_while_pacing(bus: Bus, tmp_path: Path) -> None:
    """The pacing wait is the stop event's: stopping wakes it. At speed 0.001 the next tick is
    15,000 s away, so a wait that stop did not wake would outlast stop's 10 s join."""
    bus.create_topics(CATALOG.values())
    source = ReplaySource(bus.producer(), {new_symbol(): KLINES}, speed=0.001, name=f"replay-test-{time.time_ns()}")
    source.start()
    wait_for(lambda: source.health.snapshot().produced == 1, lambda: source.health.snapshot(), timeout=30)
    source.stop(timeout=10.0)
    assert not source.health.snapshot().running and not source.done
    assert source.health.snapshot().produced == 1  # the first open; the next tick never came


def test_loop_repeats_the_files_later_in_time(bus: Bus, db: Database) -> None:
    bus.create_topics(CATALOG.values())
    symbol = new_symbol()
    stage = StageRunner(new_store(db), bus, poll_timeout=0.2)
    source = ReplaySource(bus.producer(), {symbol: KLINES}, speed=1200, loop=True, name=f"replay-test-{time.time_ns()}")
    stage.start()
    source.start()
    try:
        wait_for(lambda: len(bar_rows(db, symbol)) >= 25, lambda: (source.health.snapshot(), bar_rows(db, symbol)))
    finally:
        source.stop()
        stage.stop()
    bars = bar_rows(db, symbol)
    assert not source.done and source.health.snapshot().dead_lettered == 0
    first, second = bars[:10], bars[10:20]
    assert [b["start"] - 10 * 60_000 for b in second] == [b["start"] for b in first]
    assert [{k: b[k] for k in OHLCV[1:]} for b in second] == [{k: b[k] for k in OHLCV[1:]} for b in first]


def test_retention_deletes_old_ticks_of_the_symbol_and_keeps_the_bars(bus: Bus, db: Database, tmp_path: Path) -> None:
    bus.create_topics(CATALOG.values())
    symbol = new_symbol()
    lines = KLINES.read_text().splitlines()
    later = write_klines(tmp_path / "later.csv", [shifted(line, 10) for line in lines[:3]])  # minutes 10-12
    stage = StageRunner(new_store(db, tick_retention_ms=3 * 60_000), bus, poll_timeout=0.2)
    stage.start()
    try:
        first = ReplaySource(bus.producer(), {symbol: KLINES}, speed=0, name=f"replay-test-{time.time_ns()}")
        first.start()
        wait_for(lambda: len(bar_rows(db, symbol)) == 10, lambda: bar_rows(db, symbol))
        first.stop()
        # the replay of 2024 is not deleted as it is written: retention counts from the newest tick,
        # so the last three minutes (12 ticks) of it stay
        recent = db.query(
            "SELECT count(*) AS n FROM ticks WHERE symbol=? AND timestamp>=?",
            (symbol, int(read_candles(KLINES).frame["start"][7])),
        )
        assert recent[0]["n"] == 12
        second = ReplaySource(bus.producer(), {symbol: later}, speed=0, name=f"replay-test-{time.time_ns()}")
        second.start()
        wait_for(lambda: len(bar_rows(db, symbol)) == 13, lambda: bar_rows(db, symbol))
        second.stop()
        time.sleep(0.5)
    finally:
        stage.stop()
    candles = read_candles(KLINES).frame
    t0 = int(candles["start"][0])
    newest = t0 + 12 * 60_000 + 59_999
    kept = [
        r["timestamp"] for r in db.query("SELECT timestamp FROM ticks WHERE symbol=? ORDER BY timestamp", (symbol,))
    ]
    assert kept[-1] == newest
    assert kept[0] >= newest - 3 * 60_000  # older ticks are gone...
    assert len(kept) < 13 * 4
    bars = bar_rows(db, symbol)  # ...and every bar is kept
    assert [b["start"] for b in bars] == [t0 + k * 60_000 for k in range(13)]
    assert bars[:10] == candles.to_dict("records")
