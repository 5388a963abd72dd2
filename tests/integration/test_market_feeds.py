"""Live market feeds (Binance REST + WebSocket, Bybit, Alpaca) against local fakes that speak each
exchange's documented wire format, publishing to ``crypto.market_data`` on both buses.

Symbols here (``QF?USDT``) are used by no other test, so a shared broker's other messages are
filtered out by key.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from pipeline.bus.base import Bus
from pipeline.bus.embedded import EmbeddedBus
from pipeline.messages import DeadLetter, MarketData, decode
from pipeline.runner import Worker
from pipeline.sources.alpaca import AlpacaStream
from pipeline.sources.binance import BinanceStream, BinanceTickerPoller
from pipeline.sources.bybit import BybitStream
from pipeline.topics import CATALOG, MARKET_DATA, dlq_name
from tests.fakes.market_servers import (
    FakeAlpacaWs,
    FakeBinanceRest,
    FakeBinanceWs,
    FakeBybitWs,
    alpaca_bar,
    alpaca_trade,
    binance_kline,
    binance_mini_ticker,
    binance_ticker_24hr,
    binance_trade,
    bybit_kline,
    bybit_ticker,
    bybit_trades,
    now_ms,
    wait_for,
)

W = TypeVar("W", bound=Worker)
MINUTE = 60_000
KEY = "AKQ7Y2N3EXAMPLE0KEY1"
SECRET = "9f2kQx7Lw4Zr8Tn5Vb3Mh6Jd1Pc0SeCrEtVaLuE"


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedBus]:
    bus = EmbeddedBus(tmp_path / "bus.db", session_timeout_ms=1500, maintenance_interval_s=0.2, poll_interval_s=0.02)
    bus.create_topics(CATALOG.values())
    try:
        yield bus
    finally:
        bus.close()


@contextmanager
def running(source: W) -> Iterator[W]:
    source.start()
    try:
        yield source
    finally:
        source.stop()


def read_ticks(
    bus: Bus, group: str, symbols: Iterable[str], expected: int, since_ms: int, timeout: float = 30.0
) -> list[MarketData]:
    """Read ``crypto.market_data`` back until ``expected`` ticks of ``symbols`` stamped from
    ``since_ms`` on came (then a moment more); a shared broker keeps earlier runs' ticks."""
    keys = {s.encode() for s in symbols}
    consumer = bus.consumer(group, [MARKET_DATA])
    got: list[MarketData] = []

    def poll() -> list[MarketData]:
        ticks = [decode(MARKET_DATA, r.value or b"") for r in consumer.poll(2000, 0.3) if r.key in keys]
        return [t for t in ticks if isinstance(t, MarketData) and t.timestamp >= since_ms]

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < expected:
            got += poll()
        got += poll()
    finally:
        consumer.close()
    assert len(got) == expected, f"{len(got)} ticks of {expected}: {got}"
    return sorted(got, key=lambda t: (t.symbol, t.timestamp))


def read_dead_letters(bus: Bus, stage: str, expected: int) -> list[DeadLetter]:
    consumer = bus.consumer(f"dlq-{stage}-{time.time_ns()}", [dlq_name(MARKET_DATA)])
    got: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(got) < expected:
            got += [decode(dlq_name(MARKET_DATA), r.value or b"") for r in consumer.poll(500, 0.3)]  # type: ignore[misc]  # a DLQ decodes to DeadLetter
    finally:
        consumer.close()
    return [d for d in got if d.stage == stage]


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9 * max(1.0, abs(a), abs(b))


# -- Binance REST: seed 002's producer ---------------------------------------------------------


def test_binance_poller_publishes_one_tick_per_symbol_per_poll(bus: Bus, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    a = binance_ticker_24hr(
        "QFAUSDT",
        last="101.25000000",
        open="100.00000000",
        high="102.50000000",
        low="99.10000000",
        volume="12345.67800000",
        pct="1.250",
    )
    b = binance_ticker_24hr(
        "QFBUSDT",
        last="0.51230000",
        open="0.55000000",
        high="0.56000000",
        low="0.50010000",
        volume="987654.00000000",
        pct="-6.855",
    )
    with (
        FakeBinanceRest(a, b) as fake,
        running(
            BinanceTickerPoller(bus.producer(), ["QFBUSDT", "QFAUSDT"], base_url=fake.base_url, interval_s=0.15)
        ) as poller,
    ):
        wait_for(lambda: len(fake.requests) >= 2, 5, "a second poll")  # nothing changed: nothing published
        a2 = binance_ticker_24hr(
            "QFAUSDT",
            last="101.75000000",
            open="100.00000000",
            high="102.50000000",
            low="99.10000000",
            volume="12350.00000000",
            pct="1.750",
            close_time=a["closeTime"] + 1500,
        )
        fake.set_ticker(a2)
        wait_for(lambda: poller.health.snapshot().produced >= 3, 5, "the changed ticker")
    assert [(r.path, r.params) for r in fake.requests[:1]] == [
        ("/api/v3/ticker/24hr", {"symbols": '["QFAUSDT","QFBUSDT"]'})
    ]
    assert poller.skipped_unchanged >= 2 and poller.rejection_counts() == {}
    ticks = read_ticks(bus, group_name("ticks"), ["QFAUSDT", "QFBUSDT"], 3, a["closeTime"])
    assert [
        (t.symbol, t.timestamp, t.price, t.open, t.high, t.low, t.volume, t.price_change_pct, t.tick_volume)
        for t in ticks
    ] == [
        ("QFAUSDT", a["closeTime"], 101.25, 100.0, 102.5, 99.1, 12345.678, 1.25, None),
        ("QFAUSDT", a2["closeTime"], 101.75, 100.0, 102.5, 99.1, 12350.0, 1.75, None),
        ("QFBUSDT", b["closeTime"], 0.5123, 0.55, 0.56, 0.5001, 987654.0, -6.855, None),
    ]


def test_binance_poller_honours_retry_after_on_429_and_backs_off_on_500(embedded: EmbeddedBus) -> None:
    with FakeBinanceRest(binance_ticker_24hr("QFAUSDT", last="10", open="10", high="10", low="10", volume="1")) as fake:
        fake.fail_next(1, 429, retry_after=0.5)
        fake.fail_next(1, 500)
        with running(
            BinanceTickerPoller(embedded.producer(), ["QFAUSDT"], base_url=fake.base_url, interval_s=30, backoff_s=0.1)
        ) as poller:
            wait_for(lambda: poller.health.snapshot().produced == 1, 5, "the tick after two failures")
            health = poller.health.snapshot()
        r = fake.requests
    assert len(r) == 3
    assert r[1].at - r[0].at >= 0.5  # Retry-After: 0.5, above the 0.1 s backoff
    assert 0.2 <= r[2].at - r[1].at < 0.5  # second failure in a row: 0.1 * 2
    assert health.errors == 2 and "HTTP 500" in (health.last_error or "")


def test_binance_poller_waits_for_the_next_poll_when_a_symbol_is_refused(embedded: EmbeddedBus) -> None:
    with (
        FakeBinanceRest() as fake,
        running(
            BinanceTickerPoller(embedded.producer(), ["QFAUSDT"], base_url=fake.base_url, interval_s=30, backoff_s=0.01)
        ) as poller,
    ):
        wait_for(lambda: poller.health.snapshot().errors == 1, 5, "the refusal")
        time.sleep(0.2)
        assert len(fake.requests) == 1  # no fast retries: the symbol will not become valid in 10 ms
    assert "Invalid symbol." in (poller.health.snapshot().last_error or "")


# -- Binance WebSocket ---------------------------------------------------------------------------


def test_binance_stream_publishes_a_tick_per_trade_with_mini_ticker_figures(
    bus: Bus, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    t0 = now_ms()
    with FakeBinanceWs() as fake, running(BinanceStream(bus.producer(), ["QFCUSDT", "QFDUSDT"], url=fake.url)) as src:
        conn = fake.wait_live()
        assert fake.streams(conn) == [
            "qfcusdt@kline_1m",
            "qfcusdt@trade",
            "qfcusdt@miniTicker",
            "qfdusdt@kline_1m",
            "qfdusdt@trade",
            "qfdusdt@miniTicker",
        ]
        fake.send_event(binance_trade("QFCUSDT", "20.50000000", "0.12500000", ts=t0, trade_id=1))  # held
        fake.send_event(
            binance_mini_ticker("QFCUSDT", close="20.40", open="19.00", high="21.00", low="18.50", volume="5000.5")
        )
        fake.send_event(binance_trade("QFCUSDT", "21.25000000", "2.00000000", ts=t0 + 5, trade_id=2))
        fake.send_event(
            binance_mini_ticker("QFDUSDT", close="3.0", open="3.3", high="3.5", low="2.9", volume="42"),
            binance_trade("QFDUSDT", "3.00000000", "10.00000000", ts=t0 + 2, trade_id=7),
        )
        wait_for(lambda: src.health.snapshot().produced == 3, 5, "three ticks")
    ticks = read_ticks(bus, group_name("ticks"), ["QFCUSDT", "QFDUSDT"], 3, t0)
    c1, c2, d = ticks
    assert (c1.timestamp, c1.price, c1.tick_volume, c1.open, c1.high, c1.low, c1.volume) == (
        t0,
        20.5,
        0.125,
        19.0,
        21.0,
        18.5,
        5000.5,
    )
    assert close(c1.price_change_pct, (20.5 / 19 - 1) * 100)
    assert (c2.price, c2.high, c2.tick_volume) == (21.25, 21.25, 2.0)  # the 24 h high includes this trade
    assert (d.symbol, d.timestamp, d.price, d.open, d.low, d.volume) == ("QFDUSDT", t0 + 2, 3.0, 3.3, 2.9, 42.0)
    assert close(d.price_change_pct, (3.0 / 3.3 - 1) * 100)


def test_binance_stream_reconnects_with_capped_backoff_and_resubscribes(embedded: EmbeddedBus) -> None:
    with FakeBinanceWs() as fake:
        fake.drop_next_connections(4)
        with running(
            BinanceStream(
                embedded.producer(),
                ["QFEUSDT"],
                url=fake.url,
                backoff_s=0.1,
                backoff_max_s=0.4,
                jitter=0.25,
                healthy_after_s=0.5,
            )
        ) as src:
            first = wait_for(lambda: len(fake.connections) >= 5 and fake.live, 5, "the fifth connection")
            opened = fake.opened()
            spacing = [b - a for a, b in itertools.pairwise(opened[:5])]
            for got, raw in zip(spacing, [0.1, 0.2, 0.4, 0.4]):  # doubling, capped, less up to 25 % jitter
                assert 0.75 * raw <= got <= raw + 0.15, spacing
            assert (src.attempts, src.reconnects) == (5, 4)
            time.sleep(0.6)  # stay up past healthy_after_s: the backoff starts over
            fake.drop()
            second = wait_for(lambda: len(fake.connections) == 6 and fake.live, 5, "the reconnection")
            assert second.opened_at - first.closed_at < 0.1 + 0.1  # backoff_s again, not 0.4
            fake.send_event(
                binance_mini_ticker("QFEUSDT", close="5", open="5", high="5", low="5", volume="1"),
                binance_trade("QFEUSDT", "5.00000000", "1.00000000"),
            )
            wait_for(lambda: src.health.snapshot().produced == 1, 5, "a tick after reconnecting")
    assert all(
        FakeBinanceWs.streams(c) == ["qfeusdt@kline_1m", "qfeusdt@trade", "qfeusdt@miniTicker"]
        for c in fake.connections
    )
    assert "reconnecting in" in (src.health.snapshot().last_error or "")


def test_kline_gaps_are_counted_and_reported_also_across_a_reconnect(embedded: EmbeddedBus) -> None:
    m0 = now_ms() // MINUTE * MINUTE - 10 * MINUTE
    with (
        FakeBinanceWs() as fake,
        running(BinanceStream(embedded.producer(), ["QFFUSDT"], url=fake.url, backoff_s=0.05)) as src,
    ):
        fake.send_event(
            binance_kline("QFFUSDT", m0, closed=True),
            binance_kline("QFFUSDT", m0 + MINUTE, closed=False),
            binance_kline("QFFUSDT", m0 + MINUTE, closed=True),
        )
        fake.send_event(binance_kline("QFFUSDT", m0 + 4 * MINUTE, closed=True))
        wait_for(lambda: src.gaps == 1, 5, "the first gap")
        assert src.health.snapshot().last_error == (
            f"QFFUSDT: kline gap, 2 minutes missing between the closed klines opened at {m0 + MINUTE} "
            f"and {m0 + 4 * MINUTE}"
        )
        fake.drop()
        fake.wait_live()
        fake.send_event(
            binance_kline("QFFUSDT", m0 + 4 * MINUTE, closed=True),  # a resend is no gap
            binance_kline("QFFUSDT", m0 + 6 * MINUTE, closed=True),
        )
        wait_for(lambda: src.gaps == 2, 5, "the gap across the reconnect")
        assert "QFFUSDT: kline gap, 1 minute missing" in (src.health.snapshot().last_error or "")


def test_binance_stream_dead_letters_bad_frames_and_keeps_publishing(embedded: EmbeddedBus) -> None:
    t0 = now_ms()
    with FakeBinanceWs() as fake, running(BinanceStream(embedded.producer(), ["QFGUSDT"], url=fake.url)) as src:
        fake.send_event(
            binance_mini_ticker("QFGUSDT", close="10", open="10", high="12", low="9", volume="100"),
            binance_trade("QFGUSDT", "10.50", "1", ts=t0),
        )
        fake.send("this is not json")
        fake.send({"stream": "qfgusdt@trade", "data": {"e": "trade", "s": "QFGUSDT", "T": t0 + 1, "q": "1"}})
        fake.send_event(
            binance_trade("QFGUSDT", "-3", "1", ts=t0 + 2),
            binance_mini_ticker("QFGUSDT", close="10", open="10", high="8", low="9", volume="100"),
            binance_trade("QZZUSDT", "1", "1", ts=t0 + 3),
            binance_trade("QFGUSDT", "10.75", "1", ts=t0 - 10 * MINUTE),
            binance_trade("QFGUSDT", "11.00", "2", ts=t0 + 4),
        )
        wait_for(
            lambda: src.health.snapshot().produced == 2 and src.health.snapshot().dead_lettered == 6,
            5,
            "two ticks and six dead letters",
        )
    letters = read_dead_letters(embedded, "binance-ws", 6)
    rules = {v["field"]: v["rule"] for d in letters for v in d.violations}
    assert rules.pop("timestamp").startswith("within the last 5 minutes of now")
    assert rules == {
        "frame": "valid JSON",
        "p": "field 'p' present",
        "price": "price > 0.0",
        "high": "high >= low (low=9.0)",
        "symbol": "one of the configured symbols (QFGUSDT)",
    }
    not_json = next(d for d in letters if d.violations[0]["field"] == "frame")
    assert (not_json.value, not_json.source_topic, not_json.source_offset) == ("this is not json", MARKET_DATA, -1)
    assert all(d.reason and d.stage == "binance-ws" for d in letters)
    ticks = read_ticks(embedded, "ticks", ["QFGUSDT"], 2, t0)
    assert [(t.price, t.high, t.low) for t in ticks] == [
        (10.5, 12.0, 9.0),
        (11.0, 12.0, 9.0),
    ]  # the bad ticker was not kept


# -- Bybit ---------------------------------------------------------------------------------------


def test_bybit_stream_maps_trades_with_ticker_figures(bus: Bus, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    symbols = ["QFHUSDT", "QFIUSDT", "QFJUSDT", "QFKUSDT"]
    t0, m0 = now_ms(), now_ms() // MINUTE * MINUTE - 5 * MINUTE
    with FakeBybitWs() as fake, running(BybitStream(bus.producer(), symbols, url=fake.url)) as src:
        conn = fake.wait_live()
        wait_for(lambda: len(fake.topics(conn)) == 12, 5, "12 topics")
        requests = conn.sent(lambda m: isinstance(m, dict) and m.get("op") == "subscribe")
        assert [len(r["args"]) for r in requests] == [10, 2]  # spot takes at most 10 args per request
        assert sorted(fake.topics(conn)) == sorted(
            f"{k}.{s}" for s in symbols for k in ("tickers", "publicTrade", "kline.1")
        )
        fake.send(
            bybit_ticker("QFHUSDT", last="30.10", high="31.00", low="29.00", prev="29.50", volume="777.5"),
            bybit_trades("QFHUSDT", [(t0, "30.20", "0.5"), (t0, "30.25", "0.25"), (t0 + 7, "30.30", "1")]),
            bybit_ticker("QFIUSDT", last="19.00", high="21", low="18.5", prev=None, volume="5", pcnt="-0.0500"),
            bybit_trades("QFIUSDT", [(t0 + 1, "19.50", "3")]),
            bybit_kline("QFJUSDT", m0, confirm=True),
            bybit_kline("QFJUSDT", m0 + MINUTE, confirm=False),
            bybit_kline("QFJUSDT", m0 + 3 * MINUTE, confirm=True),
        )
        wait_for(lambda: src.health.snapshot().produced == 3 and src.gaps == 1, 5, "three ticks and a gap")
    h1, h2, i = read_ticks(bus, group_name("ticks"), symbols, 3, t0)
    # two trades in the same millisecond are one tick: last price, summed size
    assert (h1.timestamp, h1.price, h1.tick_volume, h1.open, h1.high, h1.low, h1.volume) == (
        t0,
        30.25,
        0.75,
        29.5,
        31.0,
        29.0,
        777.5,
    )
    assert close(h1.price_change_pct, (30.25 / 29.5 - 1) * 100)
    assert (h2.timestamp, h2.price, h2.tick_volume) == (t0 + 7, 30.3, 1.0)
    # without prevPrice24h the open comes from price24hPcnt, a fraction: 19 / (1 - 0.05) = 20
    assert (i.open, i.price) == (20.0, 19.5) and close(i.price_change_pct, -2.5)
    assert "QFJUSDT: kline gap, 2 minutes missing" in (src.health.snapshot().last_error or "")


def test_bybit_pings_at_the_interval_and_a_silent_server_is_reconnected(embedded: EmbeddedBus) -> None:
    with (
        FakeBybitWs() as fake,
        running(
            BybitStream(
                embedded.producer(), ["QFHUSDT"], url=fake.url, ping_interval_s=0.2, recv_timeout_s=0.6, backoff_s=0.05
            )
        ) as src,
    ):
        first = fake.wait_live()
        pings = wait_for(lambda: len(fake.pings(first)) >= 4 and fake.pings(first), 5, "four pings")
        # pings follow the interval, not a flood: the fake stamps each on receipt, so a loaded machine
        # can bunch two a little; half the interval is the floor that still catches a ping per frame
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert min(gaps) >= 0.1 and statistics.median(gaps) >= 0.15, gaps
        assert first.sent(lambda m: m == {"op": "ping"}) and src.pongs >= 3
        fake.go_silent()  # no data, no pong: the connection is dead but nobody closed it
        silent_at = time.monotonic()
        second = wait_for(lambda: len(fake.connections) == 2 and fake.live, 5, "a new connection")
        assert second.opened_at - silent_at >= 0.3  # not before the 0.6 s receive timeout ran out
        wait_for(lambda: fake.topics(second) == fake.topics(first), 5, "the same subscriptions again")
        assert "no frame for 0.6 s" in (src.health.snapshot().last_error or "")
        fake.send(
            bybit_ticker("QFHUSDT", last="1.5", high="2", low="1", prev="1.2", volume="9"),
            bybit_trades("QFHUSDT", [(now_ms(), "1.6", "1")]),
        )
        wait_for(lambda: src.health.snapshot().produced == 1, 5, "a tick on the new connection")


# -- Alpaca --------------------------------------------------------------------------------------


def test_alpaca_stream_authenticates_subscribes_and_maps_trades(bus: Bus, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    t0 = now_ms()
    with (
        FakeAlpacaWs(KEY, SECRET) as fake,
        running(AlpacaStream(bus.producer(), ["QFMUSDT", "QFLUSDT"], key=KEY, secret=SECRET, url=fake.url)) as src,
    ):
        conn = fake.wait_live()
        wait_for(lambda: fake.subscriptions(conn).get("trades"), 5, "the subscription")
        assert conn.sent(lambda m: isinstance(m, dict) and m.get("action") == "auth") == [
            {"action": "auth", "key": KEY, "secret": SECRET}
        ]
        subs = fake.subscriptions(conn)
        assert subs["trades"] == subs["bars"] == subs["dailyBars"] == ["QFL/USDT", "QFM/USDT"]
        fake.send(
            [alpaca_trade("QFL/USDT", 104.25, 0.5, ts=t0)],  # before the first daily bar: held
            [alpaca_bar("QFL/USDT", t0 // 86_400_000 * 86_400_000, kind="d", o=100, h=110, l=95, c=104, v=1234.5)],
            [alpaca_trade("QFL/USDT", 105.5, 0.02, ts=t0 + 3), alpaca_trade("QFX/USDT", 1, 1, ts=t0 + 4)],
        )
        wait_for(lambda: src.health.snapshot().produced == 2, 5, "two ticks")
    assert src.rejection_counts() == {"one of the configured symbols (QFLUSDT, QFMUSDT)": 1}
    first, second = read_ticks(bus, group_name("ticks"), ["QFLUSDT", "QFMUSDT"], 2, t0)
    assert (
        first.symbol,
        first.timestamp,
        first.price,
        first.tick_volume,
        first.open,
        first.high,
        first.low,
        first.volume,
    ) == ("QFLUSDT", t0, 104.25, 0.5, 100.0, 110.0, 95.0, 1234.5)
    assert close(first.price_change_pct, 4.25) and (second.timestamp, second.price) == (t0 + 3, 105.5)


def test_alpaca_reauthenticates_and_resubscribes_after_a_drop(embedded: EmbeddedBus) -> None:
    m0 = now_ms() // MINUTE * MINUTE - 6 * MINUTE
    with (
        FakeAlpacaWs(KEY, SECRET) as fake,
        running(
            AlpacaStream(embedded.producer(), ["QFLUSDT"], key=KEY, secret=SECRET, url=fake.url, backoff_s=0.05)
        ) as src,
    ):
        first = fake.wait_live()
        wait_for(lambda: fake.subscriptions(first).get("bars"), 5, "the subscription")
        fake.send([alpaca_bar("QFL/USDT", m0)])
        fake.drop()
        second = fake.wait_live()
        wait_for(lambda: fake.subscriptions(second).get("bars") == ["QFL/USDT"], 5, "the subscription again")
        assert second.state["authenticated"]
        fake.send([alpaca_bar("QFL/USDT", m0 + 3 * MINUTE)])
        wait_for(lambda: src.gaps == 1, 5, "the gap across the reconnect")
        assert "QFLUSDT: kline gap, 2 minutes missing" in (src.health.snapshot().last_error or "")


def test_alpaca_auth_failure_stops_with_one_health_line_without_the_secret(
    embedded: EmbeddedBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Zq8WrongSecretValue0123456789abcdefXYZ"
    with FakeAlpacaWs(KEY, SECRET) as fake:
        src = AlpacaStream(embedded.producer(), ["QFLUSDT"], key=KEY, secret=wrong, url=fake.url, backoff_s=0.01)
        with running(src):
            wait_for(
                lambda: src.health.snapshot().started_at and not src.health.snapshot().running,
                5,
                "the source to give up",
            )
        assert len(fake.connections) == 1 and src.attempts == 1  # no retries with credentials that failed
    health = src.health.snapshot()
    line = health.last_error or ""
    assert health.errors == 1 and "\n" not in line
    assert line.startswith("alpaca-ws: alpaca rejected the credentials for key AKQ7…: auth failed (code 402)")
    fragments = {wrong[i : i + 8] for i in range(len(wrong) - 7)}
    client_logs = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any("rejected the credentials" in m for m in client_logs)
    assert not [m for m in [*client_logs, line, repr(src)] if any(f in m for f in fragments)]
