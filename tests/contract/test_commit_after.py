"""``Consumer.commit_after``: offsets committed once a producer's outputs are durable, never past one
that was not delivered, on both buses; on the embedded bus in the outputs' own writer transaction.

The embedded tests hold the bus's writer with a call that waits on an event, queue outputs and an
asynchronous ``commit_after`` behind it, and count the transactions the writer commits when it is
let go (SQLite's trace callback on the writer's connection): a flush before the commit would wait
for the held writer instead."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.bus.base import Consumer, Record
from pipeline.bus.embedded import EmbeddedBus
from pipeline.errors import OutputsNotDelivered
from pipeline.topics import TopicSpec

pytestmark = pytest.mark.timeout(120)


def committed(bus, group: str, topic: str) -> dict[int, int | None]:
    (state,) = [g for g in bus.describe_groups() if g.group_id == group]
    return {p.partition: p.committed for p in state.partitions if p.topic == topic}


def consume(bus, group: str, topic: str, n: int) -> tuple[Consumer, list[Record]]:
    consumer = bus.consumer(group, [topic], auto_offset_reset="earliest")
    records: list[Record] = []
    deadline = time.monotonic() + 60
    while len(records) < n and time.monotonic() < deadline:
        records.extend(consumer.poll(100, 0.5))
    assert len(records) == n
    return consumer, records


def test_outputs_are_durable_and_the_inputs_committed_past(bus, topic_name, group_name) -> None:
    source, sink = topic_name("in"), topic_name("out")
    bus.create_topics([TopicSpec(source, 1, None), TopicSpec(sink, 1, None)])
    producer = bus.producer()
    for i in range(3):
        producer.produce(source, b"in-%d" % i, key=b"k")
    assert producer.flush(10) == 0
    group = group_name("stage")
    consumer, records = consume(bus, group, source, 3)
    outputs = bus.producer("low")
    outputs.produce_many([(sink, b"out-%d" % i, b"k", None) for i in range(3)])
    consumer.commit_after(outputs, records[:2])
    assert committed(bus, group, source) == {0: 2}
    reader, got = consume(bus, group_name("reader"), sink, 3)
    assert [r.value for r in got] == [b"out-0", b"out-1", b"out-2"]
    outputs.produce(sink, b"out-3", key=b"k")
    consumer.commit_after(outputs, records, asynchronous=True)
    consumer.close()  # waits for what was sent
    assert committed(bus, group, source) == {0: 3}
    for client in (reader, producer, outputs):
        client.close()


def test_an_output_refused_commits_nothing(bus, topic_name, group_name) -> None:
    source, compacted = topic_name("in"), topic_name("compacted")
    bus.create_topics([TopicSpec(source, 1, None), TopicSpec(compacted, 1, None, cleanup="compact")])
    producer = bus.producer()
    producer.produce(source, b"in", key=b"k")
    assert producer.flush(10) == 0
    group = group_name("stage")
    consumer, records = consume(bus, group, source, 1)
    outputs = bus.producer("low")
    outputs.produce(compacted, b"no key")  # refused: a compacted topic takes keyed messages only
    with pytest.raises(OutputsNotDelivered) as info:
        consumer.commit_after(outputs, records)
    assert info.value.undelivered == 1
    assert committed(bus, group, source).get(0) is None
    consumer.close()


@pytest.fixture
def held(tmp_path):
    """An embedded bus whose writer can be held: ``hold()`` queues a call that waits until
    ``release()``; ``commits`` lists the statements the writer runs from then on (traced on its
    connection)."""
    bus = EmbeddedBus(tmp_path / "bus.db", maintenance_interval_s=3600)
    bus.create_topics([TopicSpec("in", 1, None), TopicSpec("out", 1, None)])
    producer = bus.producer()
    producer.produce("in", b"in", key=b"k")  # the input every test of it consumes
    assert producer.flush(10) == 0
    gate = threading.Event()
    commits: list[str] = []

    class Held:
        def __init__(self) -> None:
            self.bus, self.commits = bus, commits

        def hold(self) -> None:
            gate.clear()
            bus._call_nowait(lambda conn: gate.wait(30))
            bus._writer.conn.set_trace_callback(commits.append)

        def release(self) -> None:
            gate.set()

    yield Held()
    gate.set()
    bus.close()


def test_embedded_outputs_and_their_offsets_are_one_transaction(held) -> None:
    bus = held.bus
    consumer, records = consume(bus, "stage", "in", 1)
    outputs = bus.producer("low")
    held.hold()
    outputs.produce_many([("out", b"a", b"k", None), ("out", b"b", b"k", None)])
    consumer.commit_after(outputs, records, asynchronous=True)  # a flush first would wait for the held writer
    held.release()
    consumer.close()  # waits for the commit sent
    assert committed(bus, "stage", "in") == {0: 1}
    transactions: list[list[str]] = [[]]
    for statement in held.commits:
        transactions[-1].append(statement)
        if statement == "COMMIT":
            transactions.append([])
    (written,) = [t for t in transactions if any(s.startswith("INSERT INTO messages") for s in t)]
    assert any(s.startswith("INSERT INTO offsets") for s in written), "outputs and offsets in one transaction"
    assert bus.describe_topics(["out"])[0].partitions[0].end_offset == 2
    assert outputs.flush(1) == 0  # nothing left for a flush to wait for


def test_embedded_offsets_are_not_written_when_the_writer_failed_to_write_an_output(held) -> None:
    bus = held.bus
    consumer, records = consume(bus, "stage", "in", 1)
    outputs = bus.producer("low")
    held.hold()
    outputs.produce("out", b"a", key=b"k")
    check = outputs.behind(bus)
    assert check is not None and outputs.behind(object()) is None  # another bus's: none
    bus.append_failures += 1  # as the writer counts an append it gave up on while closing
    with pytest.raises(OutputsNotDelivered):
        check(bus._writer.conn)
    bus.append_failures -= 1
    consumer.commit_after(outputs, records, asynchronous=True)
    bus.append_failures += 1  # failed after the commit was queued, before the writer ran it
    held.release()
    bus._call(lambda conn: None)  # queued behind the commit: it has run once this returns
    with pytest.raises(OutputsNotDelivered):
        consumer.commit([])  # the next commit raises the failure of the one sent
    assert committed(bus, "stage", "in").get(0) is None
    consumer.close()
