"""Live own fills from the Binance user data stream and Bybit's private execution topic, against
local servers that speak each exchange's REST and private WebSocket: each fill is published at once
with the id the REST sync gives it; after a dropped connection the stream reconnects and back-fills
the gap over REST, so every fill is in raw-trades exactly once; a rejected key stops it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.bus.base import Bus
from pipeline.journal.fills import fill_fingerprint
from pipeline.journal.payloads import parse_binance_execution, parse_binance_trade, parse_bybit_execution
from pipeline.messages import DeadLetter, RawTrade, decode
from pipeline.sources.exchange_api import BinanceClient, BybitClient
from pipeline.sources.user_stream import BinanceUserStream, BybitExecutionStream
from pipeline.topics import CATALOG, RAW_TRADES, dlq_name
from tests.fakes.exchanges import FakeBinance, FakeBybit, binance_trade, bybit_execution
from tests.fakes.market_servers import FakeBinanceUserWs, FakeBybitPrivateWs, execution_report, now_ms, wait_for

KEY = "user-stream-key-7c1e9a3b5d"
SECRET = "user-stream-secret-2f8d6b4a0c"


@pytest.fixture
def servers() -> Iterator[tuple[FakeBinance, FakeBinanceUserWs]]:
    with FakeBinance(KEY, SECRET) as rest, FakeBinanceUserWs() as ws:
        yield rest, ws


def stream(bus: Bus, rest: FakeBinance, ws: FakeBinanceUserWs, user: str, **kw: Any) -> BinanceUserStream:
    return BinanceUserStream(
        bus.producer(),
        BinanceClient(KEY, SECRET, base_url=rest.base_url, timeout=5),
        api_key=kw.pop("api_key", KEY),
        user_id=user,
        symbols=["BTCUSDT"],
        rest_url=rest.base_url,
        ws_url=ws.url,
        backoff_s=0.05,
        overlap_ms=5_000,
        **kw,
    )


class Reader:
    """Reads this user's messages of a topic from the start."""

    def __init__(self, bus: Bus, group: str, topic: str, user: str) -> None:
        self.consumer = bus.consumer(group, [topic])
        self.topic, self.user = topic, user
        self.got: list[Any] = []

    def until(self, n: int, timeout: float = 30.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            for record in self.consumer.poll(500, 0.2):
                if record.key == self.user.encode():
                    self.got.append(decode(self.topic, record.value or b""))
        return self.got

    def close(self) -> None:
        self.consumer.close()


def test_fills_are_published_at_once_and_a_gap_is_back_filled_over_rest(
    bus: Bus, servers: tuple[FakeBinance, FakeBinanceUserWs], group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    rest, ws = servers
    user = f"live-{uuid.uuid4().hex[:8]}"
    reader = Reader(bus, group_name("raw"), RAW_TRADES, user)
    source = stream(bus, rest, ws, user)
    source.start()
    try:
        conn = ws.wait_live()
        assert conn.path == f"/ws/{rest.listen_keys[0]}"
        t0 = now_ms()
        first = execution_report(501, side="BUY", price="68000.00", ts=t0)
        rest.add(binance_trade(501, t0, price="68000.00", qty="0.00100000", is_buyer=True))
        ws.send({"e": "outboundAccountPosition", "E": t0, "u": t0, "B": []})  # not a fill: ignored
        ws.send({**execution_report(500, ts=t0), "x": "NEW", "X": "NEW"})  # an order accepted: not a fill
        ws.send(first)
        (live,) = reader.until(1)
        assert isinstance(live, RawTrade) and live.format == "binance-stream" and live.payload == first
        # The same trade over REST has the same id: a fill seen both ways is one fill.
        rest_fill = parse_binance_trade(rest.trades[0])
        assert live.raw_id == fill_fingerprint(user, rest_fill, 0, venue="binance")
        assert parse_binance_execution(first).exchange_id == rest_fill.exchange_id

        ws.drop()  # the connection drops; two fills happen before the source is back
        for trade_id, side in ((502, False), (503, True)):
            rest.add(binance_trade(trade_id, now_ms(), price="68100.00", is_buyer=side))
        wait_for(lambda: source.reconnects >= 1 and source.connected, 10, "the reconnect")
        wait_for(lambda: source.backfilled == 2, 10, "the back-fill of the gap")
        ws.send(execution_report(504, side="SELL", price="68200.00"))
        raws = reader.until(4)
        assert [parse_raw_id(r) for r in raws] == ["501", "502", "503", "504"]
        assert len({r.raw_id for r in raws}) == 4  # 501 came back over REST too, and was not published again
        assert [r.format for r in raws] == ["binance-stream", "binance-api", "binance-api", "binance-stream"]
    finally:
        source.stop()
        reader.close()


def parse_raw_id(raw: RawTrade) -> str:
    payload = raw.payload
    assert isinstance(payload, dict)
    return str(payload.get("t", payload.get("id")))


def test_an_expired_listen_key_gets_a_new_one_and_a_bad_frame_is_dead_lettered(
    bus: Bus, servers: tuple[FakeBinance, FakeBinanceUserWs], group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    rest, ws = servers
    user = f"live-{uuid.uuid4().hex[:8]}"
    dead = Reader(bus, group_name("dlq"), dlq_name(RAW_TRADES), user)
    source = stream(bus, rest, ws, user)
    source.start()
    try:
        ws.wait_live()
        ws.send({**execution_report(600), "L": "not-a-price"})
        (letter,) = dead.until(1)
        assert isinstance(letter, DeadLetter) and "L" in letter.reason
        ws.send({"e": "listenKeyExpired", "E": now_ms(), "listenKey": rest.listen_keys[0]})
        wait_for(lambda: len(rest.listen_keys) == 2 and source.connected, 10, "a new listen key")
        assert ws.wait_live().path == f"/ws/{rest.listen_keys[1]}"
    finally:
        source.stop()
        dead.close()


def test_a_rejected_key_stops_the_source_without_showing_it(
    bus: Bus, servers: tuple[FakeBinance, FakeBinanceUserWs]
) -> None:
    rest, ws = servers
    source = stream(bus, rest, ws, "nobody", api_key="a-key-the-exchange-does-not-know")
    source.start()
    try:
        wait_for(lambda: not source._thread.is_alive() if source._thread else False, 10, "the source to stop")
        assert "rejected the API key" in (source.health.last_error or "")
        assert "a-key-the-exchange-does-not-know" not in (source.health.last_error or "")
    finally:
        source.stop()


# -- Bybit's private execution topic -----------------------------------------------------------


@pytest.fixture
def bybit_servers() -> Iterator[tuple[FakeBybit, FakeBybitPrivateWs]]:
    with FakeBybit(KEY, SECRET) as rest, FakeBybitPrivateWs(KEY, SECRET) as ws:
        yield rest, ws


def bybit_stream(bus: Bus, rest: FakeBybit, ws: FakeBybitPrivateWs, user: str, secret: str = SECRET) -> Any:
    return BybitExecutionStream(
        bus.producer(),
        BybitClient(KEY, SECRET, base_url=rest.base_url, timeout=5),
        api_key=KEY,
        api_secret=secret,
        user_id=user,
        symbols=["BTCUSDT"],
        ws_url=ws.url.removesuffix("/v5/private"),
        backoff_s=0.05,
        overlap_ms=5_000,
    )


def test_bybit_executions_are_published_at_once_and_a_gap_is_back_filled(
    bus: Bus, bybit_servers: tuple[FakeBybit, FakeBybitPrivateWs], group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    rest, ws = bybit_servers
    user = f"live-{uuid.uuid4().hex[:8]}"
    reader = Reader(bus, group_name("raw"), RAW_TRADES, user)
    source = bybit_stream(bus, rest, ws, user)
    source.start()
    try:
        first = bybit_execution("2100000000000000001", now_ms(), side="Buy")
        rest.add(first)
        funding = {**bybit_execution("2100000000000000000", now_ms()), "execType": "Funding"}
        ws.send_executions(funding, first)
        (live,) = reader.until(1)
        assert isinstance(live, RawTrade) and (live.format, live.source, live.payload) == ("bybit-api", "bybit", first)
        assert live.raw_id == fill_fingerprint(user, parse_bybit_execution(first), 0, venue="bybit")
        ws.drop()
        gap = [bybit_execution(f"210000000000000000{i}", now_ms(), side="Sell") for i in (2, 3)]
        rest.add(*gap)
        wait_for(lambda: source.backfilled == 2, 10, "the back-fill of the gap")
        raws = reader.until(3)
        assert [r.payload["execId"] for r in raws] == [first["execId"], *(g["execId"] for g in gap)]
        assert ws.connections[0].state["authed"] and "execution" in ws.connections[0].state["topics"]
    finally:
        source.stop()
        reader.close()


def test_bybit_rejects_a_wrong_secret_and_the_stream_stops(
    bus: Bus, bybit_servers: tuple[FakeBybit, FakeBybitPrivateWs]
) -> None:
    rest, ws = bybit_servers
    source = bybit_stream(bus, rest, ws, "nobody", secret="not-the-secret-at-all")
    source.start()
    try:
        wait_for(lambda: not source._thread.is_alive() if source._thread else False, 10, "the stream to stop")
        assert "rejected the API key" in (source.health.last_error or "")
        assert "not-the-secret-at-all" not in (source.health.last_error or "")
    finally:
        source.stop()
