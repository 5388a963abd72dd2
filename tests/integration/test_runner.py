"""The stage runner on both buses: dead letters, freshness, isolation, retries, commits."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import ClassVar

import orjson

from pipeline.bus.base import Bus, Record
from pipeline.errors import TransientError
from pipeline.messages import MarketData, Message, encode
from pipeline.runner import Stage, StageRunner
from pipeline.topics import TopicSpec, dlq_name


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def tick(symbol: str = "BTCUSDT", ts: int | None = None, price: float = 100.0) -> bytes:
    return encode(MarketData(symbol=symbol, timestamp=ts or int(time.time() * 1000), price=price, open=price,
                             high=price * 1.1, low=price * 0.9, volume=10.0, price_change_pct=0.0))


def make_stage(topic: str, fail_on: Callable[[MarketData], Exception | None] = lambda m: None) -> Stage:
    class Sink(Stage):
        name: ClassVar[str] = f"test-sink-{uuid.uuid4().hex[:6]}"
        inputs: ClassVar[tuple[str, ...]] = (topic,)
        input_model: ClassVar[type[Message] | None] = MarketData

        def __init__(self) -> None:
            self.seen: list[MarketData] = []
            self.calls = 0

        def process_batch(self, messages: list[Message]) -> list[Message]:
            self.calls += 1
            for msg in messages:
                exc = fail_on(msg)  # type: ignore[arg-type]
                if exc is not None:
                    raise exc
            self.seen.extend(messages)  # type: ignore[arg-type]
            return []

    return Sink()


def topics(bus: Bus) -> str:
    name = f"test.runner.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(name, 2, 3_600_000), TopicSpec(dlq_name(name), 1, 3_600_000)])
    return name


def dead_letters(bus: Bus, topic: str, n: int) -> list[dict]:
    consumer = bus.consumer(f"dlq-reader-{uuid.uuid4().hex[:6]}", [dlq_name(topic)])
    out: list[Record] = []
    deadline = time.monotonic() + 60
    while len(out) < n and time.monotonic() < deadline:
        out.extend(consumer.poll(100, 0.5))
    consumer.close()
    return [orjson.loads(r.value) for r in out]


def test_bad_and_stale_messages_are_dead_lettered_and_the_stage_goes_on(bus: Bus) -> None:
    topic = topics(bus)
    stage = make_stage(topic)
    runner = StageRunner(stage, bus, poll_timeout=0.2)
    producer = bus.producer()
    old = int(time.time() * 1000) - 10 * 60_000
    producer.produce(topic, tick("BTCUSDT", price=1.0), key=b"BTCUSDT")
    producer.produce(topic, b"{not json", key=b"BTCUSDT")
    producer.produce(topic, json.dumps({"symbol": "BTCUSDT", "timestamp": 1, "price": -5, "open": 1, "high": 2,
                                        "low": 1, "volume": 1, "price_change_pct": 0}).encode(), key=b"BTCUSDT")
    producer.produce(topic, tick("ETHUSDT", ts=old, price=2.0), key=b"ETHUSDT")
    producer.produce(topic, tick("ETHUSDT", ts=old, price=3.0), key=b"ETHUSDT", headers=[("feed", b"replay")])
    producer.produce(topic, tick("SOLUSDT", price=4.0), key=b"SOLUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed == 6)
        assert sorted(m.price for m in stage.seen) == [1.0, 3.0, 4.0]
        letters = dead_letters(bus, topic, 3)
        reasons = sorted(d["reason"] for d in letters)
        assert any("valid JSON" in r for r in reasons)
        assert any("price=-5" in r and "price > 0" in r for r in reasons)
        assert any("within the last 5 minutes" in r for r in reasons)
        for d in letters:
            assert d["source_topic"] == topic and d["stage"] == stage.name and d["retry_count"] == 0
            assert d["source_offset"] >= 0 and d["source_partition"] in (0, 1)
        stale = next(d for d in letters if "5 minutes" in d["reason"])
        assert stale["violations"][0]["field"] == "timestamp" and stale["source_key"] == "ETHUSDT"
        health = runner.health.snapshot()
        assert health.dead_lettered == 3 and health.running
    finally:
        runner.stop()
    # committed: a new runner of the same stage sees nothing again
    again = StageRunner(stage, bus, poll_timeout=0.2)
    seen_before = len(stage.seen)
    again.start()
    try:
        producer.produce(topic, tick("BTCUSDT", price=5.0), key=b"BTCUSDT")
        producer.flush()
        wait_for(lambda: len(stage.seen) > seen_before)
        time.sleep(0.5)
        assert [m.price for m in stage.seen[seen_before:]] == [5.0]
    finally:
        again.stop()


def test_a_crashing_message_is_isolated_and_transient_errors_are_retried(bus: Bus) -> None:
    topic = topics(bus)
    flaky = {"left": 2}

    def fail_on(m: MarketData) -> Exception | None:
        if m.price == 13.0:
            return ValueError("unlucky price")
        if m.price == 7.0 and flaky["left"]:
            flaky["left"] -= 1
            return TransientError("database busy")
        return None

    stage = make_stage(topic, fail_on)
    runner = StageRunner(stage, bus, poll_timeout=0.2, backoff_s=0.01)
    producer = bus.producer()
    for price in (1.0, 13.0, 7.0, 2.0):
        producer.produce(topic, tick(price=price), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed == 4)
        assert sorted(m.price for m in stage.seen) == [1.0, 2.0, 7.0]
        [letter] = dead_letters(bus, topic, 1)
        assert "ValueError: unlucky price" in letter["reason"]
        assert json.loads(letter["value"])["price"] == 13.0
        assert flaky["left"] == 0
        assert runner.health.snapshot().errors >= 2  # the two retries show in health
    finally:
        runner.stop()
