"""Round trips to the embedded log's writer that a stage's batch does not need are not made.

``flush`` waits for the writer only when its producer produced since its last flush returned: a
sink, which produces nothing, then commits its offsets after a single round trip. The test watches
what is handed to the writer (its queue), never the clock."""

from __future__ import annotations

import pytest

from pipeline.bus.embedded import EmbeddedBus
from pipeline.bus.embedded_log import FLUSH
from pipeline.topics import TopicSpec

pytestmark = pytest.mark.timeout(60)

TOPIC = "trips"


def watch_flushes(bus: EmbeddedBus) -> list[int]:
    """Record every flush handed to the bus's writer; return the list they are appended to."""
    seen: list[int] = []
    submit = bus._writer.submit

    def counting(op: tuple) -> None:
        if op[0] == FLUSH:
            seen.append(1)
        submit(op)

    bus._writer.submit = counting  # type: ignore[method-assign]
    return seen


def test_a_flush_waits_for_the_writer_only_after_its_own_producer_produced(tmp_path):
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600)
    try:
        bus.create_topics([TopicSpec(TOPIC, 1, 86_400_000)])
        flushes = watch_flushes(bus)
        writer, sink = bus.producer(), bus.producer()
        for i in range(3):
            writer.produce(TOPIC, b"%d" % i)
        assert writer.flush(10) == 0
        assert len(flushes) == 1
        assert [r.value for r in bus.read(TOPIC, 0, 0, 10)] == [b"0", b"1", b"2"]  # durable once flushed

        assert writer.flush(10) == 0  # nothing since: no round trip
        assert sink.flush(10) == 0  # a producer that never produced: none either
        assert len(flushes) == 1

        writer.produce(TOPIC, b"3")
        assert sink.flush(10) == 0  # another producer's message is not this one's to wait for
        assert len(flushes) == 1
        assert writer.flush(10) == 0
        assert len(flushes) == 2
        assert [r.value for r in bus.read(TOPIC, 0, 0, 10)] == [b"0", b"1", b"2", b"3"]
    finally:
        bus.close()


def test_a_refused_message_still_makes_the_next_flush_report_it(tmp_path):
    """A keyless message on a compacted topic is refused at produce: the next flush of that producer
    goes to the writer and reports it, as before."""
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600)
    try:
        bus.create_topics([TopicSpec("compacted", 1, None, cleanup="compact")])
        producer = bus.producer()
        assert producer.flush(10) == 0
        producer.produce("compacted", b"no key")
        assert producer.flush(10) == 1
        assert producer.flush(10) == 0
    finally:
        bus.close()


@pytest.mark.parametrize("scope", ["topic", "all"])
def test_an_idle_consumer_is_woken_by_appends_to_its_topics_and_membership_not_by_offsets(tmp_path, scope):
    """With ``wake_scope="topic"`` the count an idle consumer waits on (``commits(topics)``) moves for
    a commit that appended to one of its topics or changed a group's membership, never for an
    append to another topic, a flush or an offset commit; with ``all`` (the older way) it moves for
    every commit. The counts are what the wait compares, so no clock is needed; the wait itself
    returns at once once its count moved."""
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600, wake_scope=scope)
    try:
        bus.create_topics([TopicSpec(TOPIC, 1, 86_400_000), TopicSpec("other", 1, 86_400_000)])
        consumer = bus.consumer("g", [TOPIC], auto_offset_reset="earliest")
        producer = bus.producer()
        bus._call(lambda _conn: None)  # the consumer's queued heartbeat is written

        seen = bus.commits([TOPIC])
        producer.produce("other", b"x")
        assert producer.flush(10) == 0
        other_moved = bus.commits([TOPIC]) != seen
        assert other_moved is (scope == "all")

        producer.produce(TOPIC, b"v")
        assert producer.flush(10) == 0
        records = consumer.poll(10, 5.0)
        assert [r.value for r in records] == [b"v"]
        seen = bus.commits([TOPIC])
        consumer.commit(records)
        assert (bus.commits([TOPIC]) != seen) is (scope == "all"), "an offset commit wakes nobody"

        seen = bus.commits([TOPIC])
        producer.produce(TOPIC, b"w")
        assert producer.flush(10) == 0
        assert bus.commits([TOPIC]) != seen
        assert consumer._wait(seen, 0, 60.0) is True

        seen = bus.commits([TOPIC])
        second = bus.consumer("g", [TOPIC], auto_offset_reset="earliest")  # joins: a rebalance to notice
        assert bus.commits([TOPIC]) != seen
        second.close()
        consumer.close()
    finally:
        bus.close()
