"""When a stage pauses its inputs for a retry it sent (``pipeline.retry.AwaitedRetries``): from the
retry's due time until it reads the retry back, at most ``AWAIT_MAX_MS`` past it, and never for a
consumer that cannot pause (the embedded bus). The real pause on a Kafka broker is in
tests/integration/test_retry_timing.py."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.bus.base import Record
from pipeline.retry import AWAIT_MAX_MS, AwaitedRetries, retry_headers
from pipeline.topics import retry_name


class Pausing:
    """Records what the steering asked of a consumer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def pause(self, topics: Sequence[str]) -> None:
        self.calls.append(("pause", tuple(topics)))

    def resume(self, topics: Sequence[str]) -> None:
        self.calls.append(("resume", tuple(topics)))


def retried(stage: str, due_ms: int) -> Record:
    source = Record("ticks", 0, 3, b"k", b"{}", 0, ())
    headers = retry_headers(source, count=1, error="busy", stage=stage, due_ms=due_ms)
    return Record(retry_name("ticks", 0), 0, 0, b"k", b"{}", 0, tuple(headers))


def test_inputs_pause_from_the_due_time_until_the_retry_is_read_back() -> None:
    awaited, consumer = AwaitedRetries(), Pausing()
    awaited.sent(1000)
    awaited.steer(consumer, ("ticks",), 999)
    assert consumer.calls == [] and awaited.next_due_ms(999) == 1000
    awaited.steer(consumer, ("ticks",), 1000)
    awaited.steer(consumer, ("ticks",), 1001)
    assert consumer.calls == [("pause", ("ticks",))], "paused once, when due"
    awaited.read([retried("other-stage", 1000)], "store")  # another stage's retry: still waiting
    awaited.steer(consumer, ("ticks",), 1002)
    assert awaited.paused
    awaited.read([retried("store", 1000)], "store")
    awaited.steer(consumer, ("ticks",), 1003)
    assert consumer.calls[-1] == ("resume", ("ticks",)) and not awaited.paused


def test_a_retry_never_read_back_pauses_the_inputs_at_most_await_max_ms() -> None:
    awaited, consumer = AwaitedRetries(), Pausing()
    awaited.sent(1000)
    awaited.sent(1000)  # two retries due at the same time: both must be read back
    awaited.steer(consumer, ("ticks",), 1000)
    awaited.read([retried("store", 1000)], "store")
    awaited.steer(consumer, ("ticks",), 1000 + AWAIT_MAX_MS - 1)
    assert consumer.calls == [("pause", ("ticks",))]
    awaited.steer(consumer, ("ticks",), 1000 + AWAIT_MAX_MS)  # another member reads it, or it is lost
    assert consumer.calls == [("pause", ("ticks",)), ("resume", ("ticks",))]


def test_a_consumer_that_cannot_pause_is_left_alone() -> None:
    awaited = AwaitedRetries()
    awaited.sent(1000)
    awaited.steer(object(), ("ticks",), 5000)
    assert not awaited.paused
