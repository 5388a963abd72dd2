"""An embedded consumer's poll reads only what may have changed.

A stage polls its inputs and their delay topics (12-24 partitions, nearly all empty) a thousand
times a second at the journal's rate: a poll reads the partitions' ends once and then only the
partitions with messages past its position, and looks at its group's generation only after a
commit that may have changed membership (or ``poll_interval_s`` after its last look). The tests
count the statements the consumer's own connection runs (SQLite's trace callback), never the clock;
a rebalance is still seen by the next poll after a member joins."""

from __future__ import annotations

import pytest

from pipeline.bus.embedded import EmbeddedBus
from pipeline.topics import TopicSpec

pytestmark = pytest.mark.timeout(60)

TOPICS = [f"cost-{n}" for n in range(4)]


def traced(consumer: object) -> list[str]:
    """Record every statement the consumer's own connection runs; return the list."""
    statements: list[str] = []
    consumer._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    return statements


def reads_of_messages(statements: list[str]) -> list[str]:
    return [s for s in statements if "FROM messages" in s]


def test_a_poll_reads_messages_only_from_partitions_with_something_new(tmp_path):
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600, poll_interval_s=3600)
    try:
        bus.create_topics([TopicSpec(t, 3, 86_400_000) for t in TOPICS])
        producer = bus.producer()
        consumer = bus.consumer("g", TOPICS)
        assert consumer.poll(100, 0) == []
        statements = traced(consumer)

        assert consumer.poll(100, 0) == []
        assert reads_of_messages(statements) == []  # twelve empty partitions: not one read of them

        for i in range(5):
            producer.produce("cost-2", b"%d" % i, key=b"k")
        producer.produce("cost-0", b"other", key=b"k")
        assert producer.flush(10) == 0
        statements.clear()
        got = consumer.poll(100, 0)
        assert sorted(r.value or b"" for r in got) == [b"0", b"1", b"2", b"3", b"4", b"other"]
        assert len(reads_of_messages(statements)) == 2  # the two partitions with messages
        assert [r.value for r in got if r.topic == "cost-2"] == [b"0", b"1", b"2", b"3", b"4"]  # in order

        statements.clear()
        assert consumer.poll(100, 0) == []  # positions moved past them: nothing read twice
        assert reads_of_messages(statements) == []
        consumer.close()
    finally:
        bus.close()


def joined(bus: EmbeddedBus, before: int) -> None:
    """Wait until the writer has counted a membership commit after ``before`` (it counts right
    after it resolves the joining call, so the count may move a moment after the join returns)."""
    for _ in range(10_000):
        if bus.membership_commits() != before:
            return
        bus._wait_for_data(0.01, bus.commits())
    raise AssertionError("the join was never counted")


def test_a_poll_looks_at_the_generation_only_after_a_membership_change(tmp_path):
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600, poll_interval_s=3600)
    try:
        bus.create_topics([TopicSpec("cost-g", 2, 86_400_000)])
        producer = bus.producer()
        first = bus.consumer("g", ["cost-g"])
        first.poll(10, 0)
        assert first.assignment() == [("cost-g", 0), ("cost-g", 1)]
        statements = traced(first)
        for i in range(3):
            producer.produce("cost-g", b"%d" % i, key=b"%d" % i)
            producer.flush(10)
            first.poll(10, 0)
        first.commit(None)  # an offset commit changes no membership
        first.poll(10, 0)
        assert not [s for s in statements if "FROM groups" in s]

        before = bus.membership_commits()
        second = bus.consumer("g", ["cost-g"])  # a join: the next poll of the first looks and rebalances
        joined(bus, before)
        first.poll(10, 0)
        assert [s for s in statements if "FROM groups" in s]
        second.poll(10, 0)
        assert first.assignment() == [("cost-g", 0)]
        assert second.assignment() == [("cost-g", 1)]

        before = bus.membership_commits()
        second.close()  # a leave: the first takes both partitions back at its next poll
        joined(bus, before)
        first.poll(10, 0)
        assert first.assignment() == [("cost-g", 0), ("cost-g", 1)]
        first.close()
    finally:
        bus.close()


def test_a_shared_file_still_looks_at_the_generation_every_poll(tmp_path):
    """Another process's join may wake nobody here (a lost datagram, a bus that polls): a consumer of
    a shared file looks every poll, as before."""
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600, shared=True, wake="poll")
    try:
        bus.create_topics([TopicSpec("cost-s", 1, 86_400_000)])
        consumer = bus.consumer("g", ["cost-s"])
        consumer.poll(10, 0)
        statements = traced(consumer)
        consumer.poll(10, 0)
        consumer.poll(10, 0)
        assert len([s for s in statements if "FROM groups" in s]) == 2
        consumer.close()
    finally:
        bus.close()
