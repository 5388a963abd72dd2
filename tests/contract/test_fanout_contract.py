"""One contract, two fan-outs: the in-process one and Redis pub/sub on a real ``redis-server``.

Each behaviour runs on both (``fanout`` is parametrised); Redis-only behaviours (several processes
sharing the channel, Redis going away and coming back) are in the class at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from pipeline.fanout import InProcessFanout, Subscription, TradeFanout, create_fanout
from pipeline.fanout.redis import RedisFanout
from tests.fakes.market_servers import wait_for
from tests.fakes.redis_server import RedisServer


def trade(symbol: str, i: int) -> dict:
    return {"symbol": symbol, "price": 100.0 + i, "size": 1.0, "trade_id": i, "timestamp": 1_700_000_000_000 + i}


def collect(sub: Subscription, n: int, timeout: float = 5.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += sub.get(0.05)
    return got


@pytest.fixture(params=["in-process", "redis"])
def fanout(request: pytest.FixtureRequest) -> Iterator[TradeFanout]:
    if request.param == "in-process":
        f: TradeFanout = create_fanout(None, "unused")
        assert isinstance(f, InProcessFanout)
    else:
        server = request.getfixturevalue("redis_server")
        f = create_fanout(server.url, f"test:{uuid.uuid4().hex}")
        assert isinstance(f, RedisFanout) and f.wait_listening()
    try:
        yield f
    finally:
        f.close()


def test_a_subscriber_gets_its_symbols_in_order_and_nothing_else(fanout: TradeFanout) -> None:
    aapl = fanout.subscribe(["AAPL"])
    both = fanout.subscribe(["AAPL", "MSFT"])
    for i in range(50):
        fanout.publish(trade("AAPL" if i % 2 else "MSFT", i))
    assert [t["trade_id"] for t in collect(aapl, 25)] == list(range(1, 50, 2))
    assert [t["trade_id"] for t in collect(both, 50)] == list(range(50))
    assert aapl.get(0.2) == []  # nothing more came
    stats = fanout.stats()
    assert (stats.published, stats.delivered, stats.dropped, stats.subscribers) == (50, 75, 0, 2)


def test_latest_holds_the_last_trade_of_every_symbol(fanout: TradeFanout) -> None:
    sub = fanout.subscribe(["AAPL", "MSFT"])
    for i in range(10):
        fanout.publish(trade("AAPL" if i < 7 else "MSFT", i))
    collect(sub, 10)
    latest = fanout.latest()
    assert latest["AAPL"]["trade_id"] == 6 and latest["MSFT"]["trade_id"] == 9


def test_a_slow_subscriber_drops_and_counts_without_slowing_publish_or_others(fanout: TradeFanout) -> None:
    slow = fanout.subscribe(["AAPL"], maxsize=10)  # never drained while publishing
    fast = fanout.subscribe(["AAPL"])
    started = time.perf_counter()
    for i in range(1000):
        fanout.publish(trade("AAPL", i))
    assert time.perf_counter() - started < 2.0  # publish never waits for a subscriber
    assert len(collect(fast, 1000)) == 1000
    wait_for(lambda: slow.delivered + slow.dropped == 1000, 5, "the slow subscriber to see every trade")
    assert (slow.delivered, slow.dropped) == (10, 990)
    assert [t["trade_id"] for t in slow.drain()] == list(range(10))  # the first ten were kept
    assert fanout.stats().dropped == 990


def test_unsubscribe_releases_the_subscriber(fanout: TradeFanout) -> None:
    sub = fanout.subscribe(["AAPL"])
    fanout.publish(trade("AAPL", 1))
    assert len(collect(sub, 1)) == 1
    fanout.unsubscribe(sub)
    fanout.unsubscribe(sub)  # idempotent
    fanout.publish(trade("AAPL", 2))
    wait_for(lambda: fanout.latest()["AAPL"]["trade_id"] == 2, 5, "trade 2 to reach this process")
    other = fanout.subscribe(["AAPL"])
    fanout.publish(trade("AAPL", 3))
    assert [t["trade_id"] for t in collect(other, 1)] == [3]
    assert sub.drain() == [] and sub.closed and fanout.stats().subscribers == 1


def test_subscriptions_change_per_symbol(fanout: TradeFanout) -> None:
    sub = fanout.subscribe([])
    fanout.publish(trade("AAPL", 1))
    wait_for(lambda: "AAPL" in fanout.latest(), 5, "trade 1 to reach this process")
    assert sub.add(["AAPL", "MSFT"]) == {"AAPL", "MSFT"}
    assert sub.remove(["AAPL"]) == {"MSFT"}
    fanout.publish(trade("AAPL", 2))
    fanout.publish(trade("MSFT", 3))
    assert [t["trade_id"] for t in collect(sub, 1)] == [3]


class TestRedisOnly:
    def test_two_processes_share_the_channel(self, redis_server: RedisServer) -> None:
        channel = f"test:{uuid.uuid4().hex}"
        producer_side, server_side = RedisFanout(redis_server.url, channel), RedisFanout(redis_server.url, channel)
        try:
            assert producer_side.wait_listening() and server_side.wait_listening()
            sub = server_side.subscribe(["AAPL"])
            for i in range(100):
                producer_side.publish(trade("AAPL", i))
            assert [t["trade_id"] for t in collect(sub, 100)] == list(range(100))
            assert server_side.latest()["AAPL"]["trade_id"] == 99 and server_side.ping()
            assert "127.0.0.1" in server_side.describe() and channel in server_side.describe()
        finally:
            producer_side.close()
            server_side.close()

    def test_redis_down_drops_and_counts_then_recovers(self) -> None:
        with RedisServer() as server:
            fanout = RedisFanout(server.url, "test:down", send_queue=100)
            try:
                assert fanout.wait_listening()
                sub = fanout.subscribe(["AAPL"])
                server.stop()
                wait_for(lambda: not fanout.connected, 10, "the fan-out to notice Redis is gone")
                started = time.perf_counter()
                for i in range(500):
                    fanout.publish(trade("AAPL", i))
                assert time.perf_counter() - started < 1.0  # publish never waits on Redis
                wait_for(lambda: fanout.stats().dropped >= 500, 10, "every trade to be counted as dropped")
                assert not fanout.ping() and "redis" in (fanout.stats().last_error or "")
                assert sub.drain() == []
                server.start()
                wait_for(lambda: fanout.connected and fanout.ping(), 15, "the fan-out to reconnect")
                fanout.publish(trade("AAPL", 1000))
                assert [t["trade_id"] for t in collect(sub, 1, timeout=10)] == [1000]
            finally:
                fanout.close()

    def test_the_url_password_is_never_shown(self, redis_server: RedisServer) -> None:
        fanout = RedisFanout(f"redis://:hunter2secret@127.0.0.1:{redis_server.port}/0", "test:pw")
        try:
            fanout.publish(trade("AAPL", 1))
            assert "hunter2secret" not in fanout.describe() + str(fanout.stats())
        finally:
            fanout.close()
