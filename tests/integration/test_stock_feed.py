"""The Alpaca stock stream and REST backfill against local servers that speak Alpaca's v2 formats,
publishing through the fan-out and onto both buses.

Time runs from a fixed NYSE session minute (Tuesday 2026-12-01 10:00 New York) on the real
calendar: the source's clock is that minute plus the time the test has run, so "fresh" and "in
session" do not depend on when the suite runs. Symbols here are used by no other test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from pipeline.bus.base import Bus, Record
from pipeline.errors import ConfigError
from pipeline.fanout import InProcessFanout
from pipeline.messages import DeadLetter, StockPrice, StockTrade, decode, iso_ms
from pipeline.runner import FEED_HEADER, REPLAY
from pipeline.sources.alpaca_rest import AlpacaBars
from pipeline.sources.alpaca_stocks import AlpacaStockStream
from pipeline.stocks.hours import market_hours
from pipeline.topics import CATALOG, STOCK_PRICES_RAW, STOCK_TRADES_RAW, dlq_name
from tests.fakes.alpaca_stocks import (
    FakeAlpacaBarsRest,
    FakeAlpacaStocksWs,
    rest_bar,
    stock_bar,
    stock_quote,
    stock_trade,
)
from tests.fakes.market_servers import wait_for

KEY = "AKSTOCK7EXAMPLEKEY01"
SECRET = "s3cr3tStockVaLuE9f2kQx7Lw4Zr8Tn5Vb"
SESSION = datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp()  # Tue 10:00 New York
SATURDAY = datetime(2026, 12, 5, 15, 0, tzinfo=UTC).timestamp()
SYMBOLS = ("QSA", "QSB")


STARTED: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _started() -> None:
    STARTED["ms"] = int(time.time() * 1000) - 1000


def clock_from(start: float) -> Callable[[], float]:
    t0 = time.monotonic()
    return lambda: start + (time.monotonic() - t0)


@contextmanager
def stream(
    bus: Bus, url: str, *, clock: Callable[[], float], rest: AlpacaBars | None = None, **kw
) -> Iterator[AlpacaStockStream]:
    source = AlpacaStockStream(
        bus.producer(),
        kw.pop("fanout", InProcessFanout()),
        SYMBOLS,
        market_hours(),
        key=kw.pop("key", KEY),
        secret=kw.pop("secret", SECRET),
        url=url,
        rest=rest,
        clock=clock,
        backoff_s=0.05,
        backoff_max_s=0.2,
        **kw,
    )
    source.start()
    try:
        yield source
    finally:
        source.stop()


def read(
    bus: Bus, topic: str, group: str, keys: set[bytes | None], expected: int, timeout: float = 30.0
) -> list[Record]:
    """Read ``topic`` until ``expected`` records of ``keys`` written by this test came (a shared broker
    keeps other tests' records: only those produced since the test started count)."""
    since = STARTED.get("ms", 0)
    consumer = bus.consumer(group, [topic])
    got: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got += [r for r in consumer.poll(1000, 0.3) if r.key in keys and r.timestamp >= since]
        got += [r for r in consumer.poll(1000, 0.3) if r.key in keys and r.timestamp >= since]
    finally:
        consumer.close()
    return got


def test_stream_sends_trades_both_ways_and_bars_in_seed_003_format(bus: Bus, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    clock = clock_from(SESSION)
    now = int(SESSION * 1000)
    history = {s: [rest_bar(now - (10 - i) * 60_000, 100.0 + i) for i in range(5)] for s in SYMBOLS}
    fanout = InProcessFanout()
    sub = fanout.subscribe(SYMBOLS)
    with FakeAlpacaStocksWs(KEY, SECRET) as ws, FakeAlpacaBarsRest(KEY, SECRET, history, page_size=3) as rest:
        client = AlpacaBars(KEY, SECRET, url=rest.base_url)
        with stream(bus, ws.url, clock=clock, rest=client, fanout=fanout) as source:
            conn = ws.wait_live()
            wait_for(lambda: FakeAlpacaStocksWs.subscriptions(conn)["trades"], 5, "the subscription")
            ts = int(clock() * 1000)
            ws.send(
                [stock_trade("QSA", 101.25, 100, ts=ts, trade_id=7), stock_quote("QSA", ts=ts)],
                [
                    stock_bar("QSA", ts - ts % 60_000 - 60_000),
                    stock_bar("QSA", ts - ts % 60_000 - 60_000, kind="u", c=10.4),
                ],
                [stock_bar("QSB", int(datetime(2026, 12, 1, 5, 0, tzinfo=UTC).timestamp() * 1000), kind="d")],
            )
            fast = wait_for(lambda: sub.get(0.1), 10, "the trade on the fast path")
            wait_for(lambda: "QSA" in source.quotes, 5, "the quote")
            trades = read(bus, STOCK_TRADES_RAW, group_name("trades"), {b"QSA"}, 1)
            bars = read(bus, STOCK_PRICES_RAW, group_name("bars"), {b"QSA", b"QSB"}, 13)
    subs = FakeAlpacaStocksWs.subscriptions(conn)
    assert all(subs[c] == list(SYMBOLS) for c in ("trades", "quotes", "bars", "updatedBars", "dailyBars"))
    assert source.subscribed["trades"] == list(SYMBOLS)
    assert fast[0]["symbol"] == "QSA" and fast[0]["price"] == 101.25 and fast[0]["received_ns"] > 0
    (trade,) = [decode(STOCK_TRADES_RAW, r.value or b"") for r in trades]
    assert isinstance(trade, StockTrade)
    assert (trade.symbol, trade.price, trade.size, trade.trade_id, trade.exchange, trade.tape) == (
        "QSA",
        101.25,
        100,
        7,
        "V",
        "C",
    )
    assert trade.timestamp == ts and trade.conditions == ("@",)
    decoded = [(decode(STOCK_PRICES_RAW, r.value or b""), r.header(FEED_HEADER)) for r in bars]
    backfilled = [b for b, h in decoded if h == REPLAY]
    live = [b for b, h in decoded if h != REPLAY]
    assert len(backfilled) == 10 and len(live) == 3  # 5 per symbol over 4 pages of 3, then b, u and d
    assert len([r for r in rest.requests if r.params.get("page_token")]) == 3
    for b in (b for b, _ in decoded):
        assert isinstance(b, StockPrice)
        assert b.time.endswith("-05:00") and datetime.fromisoformat(b.collected_at).tzinfo is not None
    daily = [b for b in live if isinstance(b, StockPrice) and b.timeframe == "1Day"]
    assert len(daily) == 1 and iso_ms(daily[0].time) == int(datetime(2026, 12, 1, 5, 0, tzinfo=UTC).timestamp() * 1000)
    assert [b.close for b in live if isinstance(b, StockPrice) and b.symbol == "QSA"] == [10.2, 10.4]


def test_bad_frames_and_rule_breakers_are_dead_lettered_and_the_feed_goes_on(bus: Bus, group_name) -> None:
    bus.create_topics(CATALOG.values())
    clock = clock_from(SESSION)
    with FakeAlpacaStocksWs(KEY, SECRET) as ws, stream(bus, ws.url, clock=clock) as source:
        ws.wait_live()
        ts = int(clock() * 1000)
        ws.send(
            "this is not json",
            [stock_trade("QSA", -1.0, 100, ts=ts, trade_id=1)],
            [stock_trade("ZZZZ", 10.0, 100, ts=ts, trade_id=2)],
            [stock_trade("QSA", 10.0, 100, ts=ts - 3_600_000, trade_id=3)],
            [stock_bar("QSA", ts - ts % 60_000 - 60_000, h=9.0, l=9.5)],
            [{"T": "t", "S": "QSA", "p": "ten"}],
            [stock_trade("QSA", 10.5, 5, ts=ts, trade_id=4)],
        )
        good = read(bus, STOCK_TRADES_RAW, group_name("t"), {b"QSA"}, 1)
        letters = read(bus, dlq_name(STOCK_TRADES_RAW), group_name("d"), {None, b"QSA", b"ZZZZ"}, 5)
        bar_letters = read(bus, dlq_name(STOCK_PRICES_RAW), group_name("b"), {b"QSA"}, 1)
        health = source.health.snapshot()
    assert [decode(STOCK_TRADES_RAW, r.value or b"").trade_id for r in good] == [4]  # type: ignore[attr-defined]
    rules = [v["rule"] for r in letters for v in decode(dlq_name(STOCK_TRADES_RAW), r.value or b"").violations]  # type: ignore[attr-defined]
    assert any("valid JSON" in r for r in rules)
    assert any("price > 0" in r for r in rules)
    assert any("one of SUBSCRIBED_SYMBOLS (QSA, QSB)" in r for r in rules)
    assert any("within the last 5 minutes" in r for r in rules)
    (bar_letter,) = [decode(dlq_name(STOCK_PRICES_RAW), r.value or b"") for r in bar_letters]
    assert (
        isinstance(bar_letter, DeadLetter)
        and "high >= low" in bar_letter.reason
        and bar_letter.stage == "alpaca-stocks"
    )
    assert health.dead_lettered == 6 and health.running  # every one counted, and the feed went on


@pytest.mark.parametrize(
    ("setup", "words"),
    [("bad-secret", "rejected the credentials"), ("second-connection", "refused a second connection")],
)
def test_auth_failure_and_connection_limit_end_with_one_line_without_the_secret(
    tmp_path, setup: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.bus.embedded import EmbeddedBus

    caplog.set_level(logging.DEBUG)
    bus = EmbeddedBus(tmp_path / "bus.db")
    bus.create_topics(CATALOG.values())
    try:
        with FakeAlpacaStocksWs(KEY, SECRET) as ws:
            ws.connection_limit = setup == "second-connection"
            secret = "wrong" + SECRET if setup == "bad-secret" else SECRET
            with stream(bus, ws.url, clock=clock_from(SESSION), secret=secret) as source:
                wait_for(lambda: not source.health.snapshot().running, 10, "the source to stop")
                health = source.health.snapshot()
            assert len(ws.connections) == 1  # not retried
    finally:
        bus.close()
    assert (
        words in (health.last_error or "")
        and "AKST…" in (health.last_error or "")
        and "not retrying" in (health.last_error or "")
    )
    assert "\n" not in (health.last_error or "")
    for text in (health.last_error or "", caplog.text, repr(source)):
        assert SECRET not in text and SECRET[:12] not in text


def test_a_silent_connection_in_session_reconnects_and_resubscribes(tmp_path) -> None:
    from pipeline.bus.embedded import EmbeddedBus

    bus = EmbeddedBus(tmp_path / "bus.db")
    bus.create_topics(CATALOG.values())
    try:
        with (
            FakeAlpacaStocksWs(KEY, SECRET) as ws,
            stream(bus, ws.url, clock=clock_from(SESSION), recv_timeout_s=0.5) as source,
        ):
            first = ws.wait_live()
            # Silent only once the handshake is answered: silent before the subscription's answer, the
            # source waits out its 10 s handshake timeout instead of the 0.5 s one for frames (seen once).
            wait_for(lambda: FakeAlpacaStocksWs.subscriptions(first)["trades"] == list(SYMBOLS), 5, "a subscription")
            ws.go_silent()
            second = wait_for(lambda: ws.live if ws.live is not first else None, 30, "a second connection")
            wait_for(lambda: FakeAlpacaStocksWs.subscriptions(second)["trades"] == list(SYMBOLS), 5, "a resubscription")
            assert "no frame for 0.5 s" in (source.health.snapshot().last_error or "")
    finally:
        bus.close()


def test_silence_out_of_session_is_no_alarm(tmp_path) -> None:
    from pipeline.bus.embedded import EmbeddedBus

    bus = EmbeddedBus(tmp_path / "bus.db")
    bus.create_topics(CATALOG.values())
    try:
        with (
            FakeAlpacaStocksWs(KEY, SECRET) as ws,
            stream(bus, ws.url, clock=clock_from(SATURDAY), recv_timeout_s=0.3) as source,
        ):
            ws.wait_live()
            ws.go_silent()
            time.sleep(1.5)  # five silence timeouts: none counts while the market is closed
            assert len(ws.connections) == 1 and source.health.snapshot().errors == 0
            assert source.status()["market"].startswith("market closed, opens Mon 7 Dec 09:30 ET")
    finally:
        bus.close()


def test_rest_backfill_refuses_bad_credentials_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with FakeAlpacaBarsRest(KEY, SECRET, {"QSA": [rest_bar(1_764_600_000_000, 10.0)]}) as rest:
        good = AlpacaBars(KEY, SECRET, url=rest.base_url).minute_bars(["QSA"], datetime(2025, 1, 1, tzinfo=UTC))
        assert [b["c"] for b in good["QSA"]] == [10.1]
        with pytest.raises(ConfigError) as err:
            AlpacaBars(KEY, "nope" + SECRET, url=rest.base_url).minute_bars(["QSA"], datetime(2025, 1, 1, tzinfo=UTC))
    assert "rejected the credentials for key AKST…: forbidden (HTTP 403)" in str(err.value)
    assert SECRET not in str(err.value) + caplog.text
