"""Non-blocking retries (seed 003) on both buses, timed by an injected clock: a transient failure goes
to ``<topic>_retry_1s`` with ``retry_count`` and the last error in its headers, is tried again only
once the clock has moved 2^n seconds, and after three retries is dead-lettered with its source
coordinates; the messages behind it on its partition go on while it waits (the clock never moves
for them). No assertion depends on how fast the machine is: the clock only moves when a test says."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from pipeline.bus.base import Bus, Record, TopicState
from pipeline.bus.embedded import EmbeddedBus
from pipeline.errors import TransientError
from pipeline.messages import MarketData, Message
from pipeline.runner import Stage, StageRunner
from pipeline.topics import TopicSpec, dlq_name, retry_name, retry_names
from tests.integration.test_runner import tick, wait_for

pytestmark = pytest.mark.timeout(240)

START = 1_800_000_000.0  # the injected clock's time at start (seconds)


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def topic_with_delays(bus: Bus, partitions: int = 2) -> str:
    name = f"test.retry.{uuid.uuid4().hex[:8]}"
    specs = [TopicSpec(name, partitions, 3_600_000), TopicSpec(dlq_name(name), 1, 3_600_000)]
    specs += [TopicSpec(n, 1, 3_600_000) for n in retry_names(name)]
    bus.create_topics(specs)
    return name


class Flaky(Stage):
    """Counts the tries of each price alone; its first ``failures[price]`` fail with a TransientError
    (a batch holding a price still to fail fails whole, and the runner then tries its messages alone)."""

    input_model: ClassVar[type[Message] | None] = MarketData

    def __init__(self, failures: dict[float, int]) -> None:
        self.failures = dict(failures)
        self.tries: Counter[float] = Counter()
        self.seen: list[float] = []

    def process_batch(self, messages: list[MarketData]) -> list[Message]:
        if len(messages) > 1 and any(self.failures.get(m.price, 0) > 0 for m in messages):
            raise TransientError("a batch with a failing message")
        for m in messages:
            self.tries[m.price] += 1
            if self.failures.get(m.price, 0) > 0:
                self.failures[m.price] -= 1
                raise TransientError(f"database busy at {m.price}")
        self.seen.extend(m.price for m in messages)
        return []


def flaky(topic: str, failures: dict[float, int]) -> Flaky:
    cls = type(
        f"Flaky{uuid.uuid4().hex[:6]}", (Flaky,), {"name": f"test-retry-{uuid.uuid4().hex[:6]}", "inputs": (topic,)}
    )
    return cls(failures)


def read_all(bus: Bus, topic: str, at_least: int) -> list[Record]:
    """The records of a one-partition topic, read outside any group, once there are ``at_least``."""
    wait_for(lambda: len(bus.read(topic, 0, 0, 1000)) >= at_least)
    return bus.read(topic, 0, 0, 1000)


def headers(r: Record) -> dict[str, str]:
    return {k: v.decode() for k, v in r.headers}


def test_a_transient_failure_waits_on_delay_topics_while_the_partition_goes_on(bus: Bus) -> None:
    topic = topic_with_delays(bus)
    clock = Clock()
    stage = flaky(topic, {7.0: 2, 13.0: 99})  # 7 passes on its third try; 13 never does
    runner = StageRunner(stage, bus, poll_timeout=0.1, clock=clock)
    producer = bus.producer()
    for price in (1.0, 7.0, 2.0, 13.0, 3.0):  # one key: one partition, in this order
        producer.produce(topic, tick(price=price, ts=int(START * 1000)), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        # The clock has not moved, so no retry is due: the messages behind 7 and 13 went on anyway.
        wait_for(lambda: sorted(stage.seen) == [1.0, 2.0, 3.0] and runner.waiting_retries == 2)
        assert stage.tries[7.0] == 1 and stage.tries[13.0] == 1
        first = read_all(bus, retry_name(topic, 0), 2)
        assert [orjson.loads(r.value or b"")["price"] for r in first] == [7.0, 13.0]
        h = headers(first[0])
        assert h["retry_count"] == "1" and h["last_error"] == "TransientError: database busy at 7.0"
        assert h["retry_stage"] == stage.name and int(h["retry_due_ms"]) == int(START * 1000) + 1000
        source_topic, partition, offset = h["retry_source"].rsplit(":", 2)
        assert source_topic == topic and first[0].key == b"BTCUSDT"

        clock.advance(0.999)
        time.sleep(0.5)  # several polls: still not due
        assert stage.tries[7.0] == 1, "tried again before its 1 s"

        clock.advance(0.001)  # retry 1 is due: 7 fails again (its second failure), 13 too
        wait_for(lambda: stage.tries[7.0] == 2 and stage.tries[13.0] == 2 and runner.waiting_retries == 2)
        second = read_all(bus, retry_name(topic, 1), 2)
        assert [headers(r)["retry_count"] for r in second] == ["2", "2"]
        assert int(headers(second[0])["retry_due_ms"]) == int((START + 1.0) * 1000) + 2000

        clock.advance(2.0)  # retry 2 is due: 7 passes; 13 fails a third time and goes to the 4 s topic
        wait_for(lambda: 7.0 in stage.seen and stage.tries[13.0] == 3)
        [third] = read_all(bus, retry_name(topic, 2), 1)
        assert headers(third)["retry_count"] == "3" and orjson.loads(third.value or b"")["price"] == 13.0
    finally:
        runner.stop()

    # A restart while 13 waits: its record is read again from the delay topic, not lost.
    again = StageRunner(stage, bus, poll_timeout=0.1, clock=clock)
    again.start()
    try:
        wait_for(lambda: again.waiting_retries == 1)
        clock.advance(4.0)  # its third retry fails: after three retries, the dead-letter topic
        wait_for(lambda: again.health.snapshot().dead_lettered == 1)
        [letter] = [orjson.loads(r.value or b"") for r in read_all(bus, dlq_name(topic), 1)]
        assert letter["retry_count"] == 3 and letter["stage"] == stage.name
        assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
            topic,
            int(partition),
            int(offset) + 2,  # 13 was two messages after 7 on the same partition
        )
        assert letter["reason"] == "TransientError: database busy at 13.0"
        assert orjson.loads(letter["value"])["price"] == 13.0
    finally:
        again.stop()
    assert stage.tries == Counter({1.0: 1, 2.0: 1, 3.0: 1, 7.0: 3, 13.0: 4})
    assert sorted(stage.seen) == [1.0, 2.0, 3.0, 7.0]
    assert runner.health.snapshot().retried == 5 and again.health.snapshot().retried == 0  # 7 twice, 13 three times


def test_a_stage_passes_over_the_retries_of_another_stage_on_the_same_topic(bus: Bus) -> None:
    topic = topic_with_delays(bus, partitions=1)
    clock = Clock()
    failing, other = flaky(topic, {5.0: 1}), flaky(topic, {})
    runners = [StageRunner(s, bus, poll_timeout=0.1, clock=clock) for s in (failing, other)]
    producer = bus.producer()
    for price in (4.0, 5.0, 6.0):
        producer.produce(topic, tick(price=price, ts=int(START * 1000)), key=b"BTCUSDT")
    assert producer.flush() == 0
    for r in runners:
        r.start()
    try:
        wait_for(lambda: sorted(other.seen) == [4.0, 5.0, 6.0] and failing.tries[5.0] == 1)
        clock.advance(1.0)
        wait_for(lambda: sorted(failing.seen) == [4.0, 5.0, 6.0])
        wait_for(lambda: all(r.waiting_retries == 0 for r in runners))
        time.sleep(0.3)
    finally:
        for r in runners:
            r.stop()
    assert other.tries == Counter({4.0: 1, 5.0: 1, 6.0: 1}), "the other stage processed a retry not its own"
    assert failing.tries[5.0] == 2


def test_a_stage_without_delay_topics_retries_in_place(bus: Bus) -> None:
    name = f"test.retry.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(name, 1, 3_600_000), TopicSpec(dlq_name(name), 1, 3_600_000)])
    stage = flaky(name, {8.0: 1})
    runner = StageRunner(stage, bus, poll_timeout=0.1, backoff_s=0.01)
    producer = bus.producer()
    producer.produce(name, tick(price=8.0), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        wait_for(lambda: stage.seen == [8.0])
    finally:
        runner.stop()
    assert stage.tries[8.0] == 2 and runner.health.snapshot().retried == 0


def test_a_stage_whose_topics_cannot_be_described_yet_waits_and_starts(tmp_path: Path) -> None:
    """Kafka answers NOT_LEADER_FOR_PARTITION for a topic just made: the stage tries again, never stops."""
    bus = EmbeddedBus(tmp_path / "bus.db")
    topic = topic_with_delays(bus)
    calls = {"n": 0}
    describe = bus.describe_topics

    def young(names: Iterable[str] | None = None) -> list[TopicState]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise KafkaLikeError("Broker: Not leader for partition")
        return describe(names)

    bus.describe_topics = young  # type: ignore[method-assign]
    stage = flaky(topic, {})
    runner = StageRunner(stage, bus, poll_timeout=0.1, backoff_s=0.01)
    producer = bus.producer()
    producer.produce(topic, tick(price=5.0), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        wait_for(lambda: stage.seen == [5.0])
    finally:
        runner.stop()
        bus.close()
    health = runner.health.snapshot()
    assert calls["n"] == 3 and health.errors == 2 and "Not leader" in (health.last_error or "")


class KafkaLikeError(Exception):
    """What confluent-kafka raises for a topic whose leader is not elected yet."""
