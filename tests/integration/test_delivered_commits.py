"""A stage that commits on delivery (``Stage.commit_on_delivery``). On Kafka it keeps polling while
its outputs are unacknowledged and commits their inputs only once they are; closing and giving up
partitions commit what is safe first. On both buses a refused output stops commits past its batch.
The embedded bus's producer gives no delivery handle, so there the runner flushes as before.

The runner's producer is wrapped so the test decides when the bus's delivery reports count: a
handle is done only once the gate is open and the real bus says so (a flush opens the gate, as a
real flush makes every report arrive)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence

import pytest

from pipeline.bus.base import Bus, Delivery, Outgoing, Producer, Record, delivery_of
from pipeline.runner import StageRunner
from pipeline.topics import TopicSpec, dlq_name
from tests.integration.test_runner import _copy_symbol, copier, tick, wait_for

# The tests that hold delivery reports back run on Kafka, the bus whose producer gives handles.
ON_KAFKA = pytest.mark.parametrize("bus", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True)


class Gated:
    """The runner's producer, its delivery reports held back until ``gate`` is set."""

    def __init__(self, inner: Producer, *, flush_opens: bool) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.flush_opens = flush_opens
        self.flushes = 0

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.inner.produce(topic, value, key, headers)

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        self.inner.produce_many(messages)

    def flush(self, timeout: float = 30.0) -> int:
        self.flushes += 1
        if self.flush_opens:
            self.gate.set()
        return self.inner.flush(timeout)

    def close(self) -> None:
        self.inner.close()

    def delivery(self) -> Delivery | None:
        got = delivery_of(self.inner)
        if got is None:  # the embedded bus: the runner flushes
            return None
        real, gate = got, self.gate

        class Held:
            def done(self) -> bool:
                return gate.is_set() and real.done()

            def undelivered(self) -> int:
                return real.undelivered()

        return Held()


def setup(bus: Bus, topic_name: Callable[..., str], n: int, *, compact: bool = False) -> tuple[str, str]:
    source, target = topic_name("in"), topic_name("out")
    bus.create_topics(
        [
            TopicSpec(source, 2, 3_600_000),
            TopicSpec(dlq_name(source), 1, 3_600_000),
            TopicSpec(target, 1, 3_600_000, cleanup="compact" if compact else "delete"),
        ]
    )
    producer = bus.producer()
    for i in range(n):
        producer.produce(source, tick("BTCUSDT", price=1.0 + i), key=f"k{i % 7}".encode())
    assert producer.flush() == 0
    return source, target


def committed(bus: Bus, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (0 where none)."""
    out = {p.partition: 0 for t in bus.describe_topics([topic]) for p in t.partitions}
    for g in bus.describe_groups():
        if g.group_id == group:
            for p in g.partitions:
                if p.topic == topic and p.committed is not None:
                    out[p.partition] = p.committed
    return out


def ends(bus: Bus, topic: str) -> dict[int, int]:
    return {p.partition: p.end_offset for t in bus.describe_topics([topic]) for p in t.partitions}


def start(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str], n: int, *, flush_opens: bool
) -> tuple[str, str, str, StageRunner, Gated]:
    """``n`` ticks on a new source topic and a copier that commits on delivery running on them, in
    batches of 10, its delivery reports gated: the source, the target, the group, the runner, the gate."""
    source, target = setup(bus, topic_name, n)
    group = group_name("copier")
    stage, _ = copier(source, target, group)
    runner = StageRunner(stage, bus, poll_timeout=0.2, max_batch=10, backoff_s=0.01)
    gated = Gated(runner._producer, flush_opens=flush_opens)
    runner._producer = gated
    runner.positions_overdue_s = 3600.0  # only what each test makes happen commits
    runner.start()
    return source, target, group, runner, gated


def outputs(bus: Bus, target: str, n: int) -> set[bytes]:
    reader = bus.consumer(f"reader-{uuid.uuid4().hex[:6]}", [target], auto_offset_reset="earliest")
    got: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got.update(r.key for r in reader.poll(500, 0.3) if r.key is not None)
    reader.close()
    return got


@ON_KAFKA
def test_it_keeps_polling_and_commits_only_once_the_outputs_are_acknowledged(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    n = 60
    source, target, group, runner, gated = start(bus, topic_name, group_name, n, flush_opens=False)
    try:
        wait_for(lambda: runner.health.snapshot().processed == n)  # batches of 10, one after another, no acks counted
        time.sleep(0.3)  # a few more loops of the runner: still nothing may be committed
        assert committed(bus, group, source) == {0: 0, 1: 0}
        assert gated.flushes == 0  # it never waited for the outputs by flushing
        gated.gate.set()  # the reports count from now on
        wait_for(lambda: committed(bus, group, source) == ends(bus, source))
    finally:
        runner.stop()
    assert outputs(bus, target, n) == {_copy_symbol(1.0 + i).encode() for i in range(n)}


def test_a_refused_output_stops_commits_past_its_batch_and_the_batch_comes_again(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    n = 80
    source, target = setup(bus, topic_name, n, compact=True)
    stage, tries = copier(source, target, group_name("copier"), refuse_once=40.0)
    runner = StageRunner(stage, bus, poll_timeout=0.2, max_batch=25, backoff_s=0.01)
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed >= n and len(tries) == 2)
    finally:
        runner.stop()
    assert len(tries) == 2  # the batch with the refused output was not committed: it came again
    assert "outputs not delivered" in (runner.health.snapshot().last_error or "")
    assert outputs(bus, target, n) == {_copy_symbol(1.0 + i).encode() for i in range(n)}  # nothing lost


@ON_KAFKA
def test_stopping_commits_what_was_delivered_before_leaving(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    n = 50
    source, _, group, runner, gated = start(bus, topic_name, group_name, n, flush_opens=True)
    wait_for(lambda: runner.health.snapshot().processed == n)
    assert committed(bus, group, source) == {0: 0, 1: 0}
    runner.stop()
    assert gated.flushes >= 1
    assert committed(bus, group, source) == ends(bus, source)  # flushed, then committed, then left


@ON_KAFKA
def test_giving_up_partitions_commits_what_was_delivered_first(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    n = 50
    source, _, group, runner, gated = start(bus, topic_name, group_name, n, flush_opens=True)
    joiner = None
    try:
        wait_for(lambda: runner.health.snapshot().processed == n)
        assert committed(bus, group, source) == {0: 0, 1: 0}
        joiner = bus.consumer(group, [source], auto_offset_reset="earliest")  # a second member: a rebalance
        again: list[Record] = []
        deadline = time.monotonic() + 60
        while not joiner.assignment() and time.monotonic() < deadline:
            again.extend(joiner.poll(100, 0.2))
        assert joiner.assignment()
        again.extend(joiner.poll(100, 1.0))
        assert committed(bus, group, source) == ends(bus, source)  # committed before the partitions moved
        assert again == []  # so the new owner gets none of them again
        assert gated.flushes >= 1
    finally:
        if joiner is not None:
            joiner.close()
        runner.stop()


@pytest.mark.parametrize("bus", ["embedded"], indirect=True)
def test_on_the_embedded_bus_it_flushes_each_batch_as_before(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    n = 40
    source, _, group, runner, gated = start(bus, topic_name, group_name, n, flush_opens=False)
    try:
        wait_for(lambda: committed(bus, group, source) == ends(bus, source))  # no gate to open
        assert gated.flushes >= n // 10  # a flush for each batch of 10 before its commit
    finally:
        runner.stop()
