"""The runner under faults, on both buses: any exception while decoding or preparing one message
dead-letters that message with the exception named, the rest flows, and a restart after a later
failure never dead-letters the same message twice."""

from __future__ import annotations

import threading
import uuid
from typing import Any, ClassVar

import orjson

from pipeline.bus.base import Bus, read_to_end
from pipeline.messages import MarketData, Message
from pipeline.runner import Stage, StageRunner
from pipeline.topics import dlq_name
from tests.integration.test_runner import tick, topics, wait_for


class Fragile(Stage):
    """Prepare raises a plain ValueError for price 13; the first batch holding price 5 fails once,
    and the stage keeps state, so the runner restarts it from the last commit."""

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    input_model: ClassVar[type[Message] | None] = MarketData
    isolates_failures: ClassVar[bool] = False

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.failed = threading.Event()

    def prepare(self, message: Message) -> Any:
        assert isinstance(message, MarketData)
        if message.price == 13.0:
            raise ValueError("thirteen is unlucky")
        return message

    def process_batch(self, messages: list[Any]) -> list[Message]:
        if any(m.price == 5.0 for m in messages) and not self.failed.is_set():
            self.failed.set()
            raise RuntimeError("the store went away for a moment")
        self.seen.extend(m.price for m in messages)
        return []


def fragile(topic: str) -> Fragile:
    cls = type("FragileStage", (Fragile,), {"name": f"fragile-{uuid.uuid4().hex[:6]}", "inputs": (topic,)})
    return cls()


def test_an_exception_in_prepare_is_dead_lettered_once_even_across_a_restart(bus: Bus) -> None:
    topic = topics(bus)
    stage = fragile(topic)
    producer = bus.producer()
    # one key, so one partition and one order: good, bad, good, bad, good
    for price in (1.0, 13.0, 2.0, 13.0, 5.0):
        producer.produce(topic, tick("BTCUSDT", price=price), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner = StageRunner(stage, bus, poll_timeout=0.2, backoff_s=0.01)
    runner.start()
    try:
        wait_for(lambda: 5.0 in stage.seen)
        wait_for(lambda: runner.health.snapshot().dead_lettered >= 2)
        assert stage.failed.is_set()  # the restart did happen after both dead letters
        # everything the runner dead-lettered was flushed before 5.0 was processed
        letters = [
            orjson.loads(r.value or b"") for r in read_to_end(bus, dlq_name(topic), f"dlq-{uuid.uuid4().hex[:6]}")
        ]
    finally:
        runner.stop()
    assert len(letters) == 2
    assert sorted(d["source_offset"] for d in letters) == [1, 3]
    assert all(d["reason"] == "ValueError: thirteen is unlucky" for d in letters)
    assert all(d["violations"][0]["rule"] == "ValueError: thirteen is unlucky" for d in letters)
    assert sorted(set(stage.seen)) == [1.0, 2.0, 5.0]
