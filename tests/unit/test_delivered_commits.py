"""Offsets committed on delivery (``pipeline.delivered_commits``): in batch order, never past a batch
whose outputs are not all delivered, and a drain commits what is safe after a flush."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pipeline.bus.base import Outgoing, Record
from pipeline.delivered_commits import DeliveredCommits
from pipeline.errors import TransientError


class Handle:
    """A ``Delivery`` whose reports arrive when the test says (or when the producer flushes)."""

    def __init__(self, failed: int = 0) -> None:
        self.reported = False
        self.failed = failed

    def done(self) -> bool:
        return self.reported

    def undelivered(self) -> int:
        return self.failed


class Producer:
    """Flushing reports every handle it made (what a real flush makes true)."""

    def __init__(self, handles: list[Handle]) -> None:
        self.handles = handles
        self.flushes = 0

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        raise AssertionError("not used")

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        raise AssertionError("not used")

    def flush(self, timeout: float = 30.0) -> int:
        self.flushes += 1
        for h in self.handles:
            h.reported = True
        return 0

    def close(self) -> None:
        pass


def rec(partition: int, offset: int, topic: str = "t") -> Record:
    return Record(topic, partition, offset, None, b"", 0)


class Committed:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, int, int]]] = []

    def __call__(self, records: Sequence[Record]) -> None:
        self.calls.append(sorted((r.topic, r.partition, r.offset) for r in records))


def test_batches_are_committed_in_order_once_their_outputs_are_delivered() -> None:
    pending, commit = DeliveredCommits(), Committed()
    first, second = Handle(), Handle()
    pending.add(first, [rec(0, 0), rec(0, 1), rec(1, 5)])
    pending.add(second, [rec(0, 2)])
    second.reported = True  # the later batch's acks came first
    pending.settle(commit)
    assert commit.calls == [] and len(pending) == 2  # never the later one before the earlier one
    first.reported = True
    pending.settle(commit)
    # one commit per batch, in order, past each partition's highest offset only
    assert commit.calls == [[("t", 0, 1), ("t", 1, 5)], [("t", 0, 2)]]
    assert len(pending) == 0


def test_an_undelivered_output_stops_commits_past_its_batch_until_cleared() -> None:
    pending, commit = DeliveredCommits(), Committed()
    ok, bad, after = Handle(), Handle(failed=1), Handle()
    pending.add(ok, [rec(0, 0)])
    pending.add(bad, [rec(0, 1)])
    pending.add(after, [rec(0, 2)])
    for h in (ok, bad, after):
        h.reported = True
    with pytest.raises(TransientError, match="outputs not delivered"):
        pending.settle(commit)
    assert commit.calls == [[("t", 0, 0)]]  # the batch before the failed one, nothing after
    assert len(pending) == 0
    pending.add(Handle(), [rec(0, 3)])
    with pytest.raises(TransientError):  # still failed: the runner must start again from the commit
        pending.settle(commit)
    pending.clear()
    done = Handle()
    done.reported = True
    pending.add(done, [rec(0, 0)])
    pending.settle(commit)
    assert commit.calls[-1] == [("t", 0, 0)]


def test_a_drain_flushes_then_commits_everything_delivered() -> None:
    pending, commit = DeliveredCommits(), Committed()
    handles = [Handle(), Handle()]
    producer = Producer(handles)
    pending.drain(producer, commit)
    assert producer.flushes == 0  # nothing waits: no flush
    pending.add(handles[0], [rec(0, 0)])
    pending.add(handles[1], [rec(1, 0)])
    pending.drain(producer, commit)
    assert producer.flushes == 1
    assert commit.calls == [[("t", 0, 0)], [("t", 1, 0)]] and len(pending) == 0


def test_a_drain_never_commits_what_the_flush_left_unacknowledged() -> None:
    pending, commit = DeliveredCommits(), Committed()
    stuck = Handle()
    producer = Producer([])  # its flush timed out: the handle is still not done
    pending.add(stuck, [rec(0, 0)])
    with pytest.raises(TransientError, match="not acknowledged"):
        pending.drain(producer, commit, timeout=0.1)
    assert commit.calls == [] and len(pending) == 0
