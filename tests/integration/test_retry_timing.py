"""A retried message is tried again within one batch of its delay, on both buses, even when its
stage has a backlog of its inputs: on Kafka the consumer's one prefetched queue used to hold the
retry behind the whole backlog (5,000 messages behind: 6 s late for a 1 s delay), so the stage now
pauses its inputs from the retry's due time until it has read the retry back
(``pipeline.retry.AwaitedRetries``); on both buses a held retry that is due is handled before the
next poll of the inputs. Time is the runner's injected clock, moved by the stage itself while it
processes a batch: the test counts batches, never seconds."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import pytest

from pipeline.bus.base import Bus
from pipeline.errors import TransientError
from pipeline.messages import MarketData, Message
from pipeline.runner import Stage, StageRunner
from pipeline.topics import RETRY_DELAYS_S
from tests.integration.test_retries import START, Clock, topic_with_delays
from tests.integration.test_runner import tick, wait_for

pytestmark = pytest.mark.timeout(240)

BACKLOG = 3000
FAILING = 5.0


class Backlogged(Stage):
    """Fails ``FAILING`` once; three full batches after that, moves the clock past the retry's delay
    while it processes a batch (the retry falls due in the middle of a batch, as it would live)."""

    input_model: ClassVar[type[Message] | None] = MarketData

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.failed = False
        self.batches: list[list[float]] = []  # the prices of each batch processed, in order
        self.full_after_failure = 0
        self.due_during: int | None = None  # the batch during which the retry fell due

    def process_batch(self, messages: list[MarketData]) -> list[Message]:
        prices = [m.price for m in messages]
        if not self.failed and FAILING in prices:
            if len(messages) == 1:
                self.failed = True
            raise TransientError("busy")
        self.batches.append(prices)
        if self.failed and len(messages) > 1:
            self.full_after_failure += 1
            if self.full_after_failure == 3:
                self.clock.advance(RETRY_DELAYS_S[0] + 0.001)
                self.due_during = len(self.batches) - 1
        return []


def test_a_retry_is_tried_again_in_the_batch_after_it_falls_due_despite_a_backlog(bus: Bus) -> None:
    topic = topic_with_delays(bus, partitions=1)
    clock = Clock()
    stage = type("Backlog", (Backlogged,), {"name": f"test-retry-timing-{topic[-8:]}", "inputs": (topic,)})(clock)
    producer = bus.producer()
    for i in range(BACKLOG):  # produced at once: on Kafka a few large batches, prefetched whole
        producer.produce(topic, tick(price=float(i + 1), ts=int(START * 1000) + i), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner = StageRunner(stage, bus, poll_timeout=0.1, max_batch=100, clock=clock)
    runner.start()
    try:
        wait_for(lambda: sum(len(b) for b in stage.batches) >= BACKLOG, timeout=120)
    finally:
        runner.stop()
    assert stage.due_during is not None
    retried_in = next(i for i, b in enumerate(stage.batches) if FAILING in b)
    assert retried_in == stage.due_during + 1, (
        f"due during batch {stage.due_during}, tried again in batch {retried_in} of {len(stage.batches)}"
    )
    assert stage.batches[retried_in] == [FAILING], "a due retry goes first, not behind a batch of inputs"
    assert stage.due_during + 1 < len(stage.batches) - 10, "the backlog was still there when it fell due"
    counts = Counter(p for b in stage.batches for p in b)
    assert set(counts) == {float(i + 1) for i in range(BACKLOG)} and set(counts.values()) == {1}, (
        "pausing the inputs lost or repeated none"
    )
