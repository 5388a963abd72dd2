"""The bus contract, run alike on the embedded SQLite log and on a real Kafka broker.

Every behaviour the pipeline relies on is checked on both backends through the ``bus`` fixture
(``tests/conftest.py``). Group rebalances, retention and compaction take different times on the two
buses, so every wait is a poll loop with a deadline; no assertion depends on a fixed sleep.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import pytest

from pipeline.bus.base import GROUP_HAS_MEMBERS, GROUP_NOT_FOUND, Outgoing, Record, partition_for
from pipeline.errors import UnknownPartitionError, UnknownTopicError
from pipeline.topics import Cleanup, TopicSpec

pytestmark = pytest.mark.timeout(240)

POLL_S = 0.1  # one poll's wait inside the loops below
REBALANCE_S = 60.0  # deadline for a group to settle (Kafka needs a few seconds)
READ_S = 60.0  # deadline to read what was produced


# -- helpers -------------------------------------------------------------------------------------


def keys_by_partition(partitions: int, prefix: str = "key") -> dict[int, bytes]:
    """Return one key per partition, found by the same CRC32 rule both buses use."""
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < partitions:
        key = f"{prefix}-{i}".encode()
        found.setdefault(zlib.crc32(key) % partitions, key)
        i += 1
    return found


def create(
    bus,
    name: str,
    partitions: int = 1,
    retention_ms: int | None = None,
    cleanup: Cleanup = "delete",
    extra: dict[str, str] | None = None,
) -> str:
    created = bus.create_topics([TopicSpec(name, partitions, retention_ms, cleanup=cleanup, extra=extra or {})])
    assert created == {name: True}
    return name


def produce(bus, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]], producer=None) -> int:
    """Produce (key, value) pairs and flush; fail unless everything was delivered."""
    p = producer or bus.producer()
    n = 0
    for key, value in messages:
        p.produce(topic, value, key=key)
        n += 1
    assert p.flush() == 0, "flush reported undelivered messages"
    return n


def value_of(r: Record) -> bytes:
    """The value of a record the test produced with one (no tombstone)."""
    assert r.value is not None, f"no value at {r.topic}[{r.partition}]@{r.offset}"
    return r.value


def value_is(value: bytes) -> Callable[[list[Record]], bool]:
    """``until`` for ``read_fresh``: a record with this value was read."""
    return lambda rs: any(r.value == value for r in rs)


def key_is(key: bytes) -> Callable[[list[Record]], bool]:
    """``until`` for ``read_fresh``: a record with this key was read."""
    return lambda rs: any(r.key == key for r in rs)


def topic_state(bus, topic: str):
    states = [t for t in bus.describe_topics([topic]) if t.name == topic]
    assert len(states) == 1, f"describe_topics([{topic!r}]) gave {states}"
    return states[0]


def group_state(bus, group: str):
    states = [g for g in bus.describe_groups() if g.group_id == group]
    assert len(states) == 1, f"group {group!r} not in describe_groups()"
    return states[0]


class Reader:
    """One consumer and everything it has received; optionally commits after every poll."""

    def __init__(self, consumer, *, commit: bool = False) -> None:
        self.consumer = consumer
        self.commit = commit
        self.records: list[Record] = []
        self.assigned: set[tuple[str, int]] = set()

    def poll(self, timeout: float = POLL_S) -> list[Record]:
        batch = self.consumer.poll(500, timeout)
        if batch and self.commit:
            self.consumer.commit(batch)
        self.records.extend(batch)
        return batch

    def values(self) -> list[bytes]:
        return [value_of(r) for r in self.records]

    def partitions_read(self) -> set[int]:
        return {r.partition for r in self.records}


def poll_until(
    readers: Sequence[Reader], condition: Callable[[], bool], timeout: float, why: Callable[[], str]
) -> None:
    """Poll every reader in turn until ``condition()`` holds; fail with ``why()`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        for r in readers:
            r.poll()
        if condition():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout:.0f} s: {why()}")


def read_fresh(
    bus, group: str, topic: str, until: Callable[[list[Record]], bool], timeout: float = READ_S, *, must: bool = True
) -> list[Record]:
    """Read ``topic`` from the earliest offset with a new group until ``until(records)`` holds;
    at the deadline fail, or (``must=False``) return what was read."""
    reader = Reader(bus.consumer(group, [topic], auto_offset_reset="earliest"))
    try:
        deadline = time.monotonic() + timeout
        while not until(reader.records):
            if time.monotonic() > deadline:
                if must:
                    pytest.fail(
                        f"not reached within {timeout:.0f} s: {len(reader.records)} "
                        f"records read from {topic}, last {reader.records[-3:]}"
                    )
                break
            reader.poll()
        return reader.records
    finally:
        reader.consumer.close()


def read_count(bus, group: str, topic: str, count: int, timeout: float = READ_S) -> list[Record]:
    return read_fresh(bus, group, topic, lambda rs: len(rs) >= count, timeout)


def tpo(records: Iterable[Record]) -> list[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of records, sorted: what identifies a delivery."""
    return sorted((r.partition, r.offset, r.value) for r in records)


# -- the contract ----------------------------------------------------------------------------------


class TestBusContract:
    def test_create_topics_is_idempotent_and_described(self, bus, topic_name):
        events, orders, other = topic_name("events"), topic_name("orders"), topic_name("other")
        specs = [TopicSpec(events, 3, 60_000), TopicSpec(orders, 1, None, cleanup="compact")]

        assert bus.create_topics(specs) == {events: True, orders: True}
        assert bus.create_topics(specs) == {events: False, orders: False}
        assert bus.create_topics([TopicSpec(events, 3, 60_000), TopicSpec(other, 2, None)]) == {
            events: False,
            other: True,
        }

        states = {t.name: t for t in bus.describe_topics([events, orders])}
        assert set(states) == {events, orders}, "describe_topics(names) must give exactly those"
        ev, od = states[events], states[orders]
        assert [(p.partition, p.start_offset, p.end_offset) for p in ev.partitions] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
        assert [p.partition for p in od.partitions] == [0]
        assert ev.config["cleanup.policy"] == "delete"
        assert ev.config["retention.ms"] == "60000"
        assert od.config["cleanup.policy"] == "compact"
        assert ev.messages == 0 and od.messages == 0
        assert other in {t.name for t in bus.describe_topics()}, "describe_topics() lists all"

    def test_each_key_keeps_its_order_in_its_own_partition(self, bus, topic_name, group_name):
        partitions = 3
        topic = create(bus, topic_name(), partitions)
        keys = [b"alpha", b"bravo", b"charlie", b"delta", b"echo"]
        assert len({partition_for(k, partitions) for k in keys}) > 1, "keys must spread"
        per_key = 200
        produce(bus, topic, ((k, b"%s:%d" % (k, seq)) for seq in range(per_key) for k in keys))

        records = read_count(bus, group_name(), topic, per_key * len(keys))

        assert len(records) == per_key * len(keys), "duplicates delivered"
        seqs: dict[bytes, list[int]] = defaultdict(list)
        parts: dict[bytes, set[int]] = defaultdict(set)
        for r in records:
            key, seq = value_of(r).split(b":")
            assert key == r.key, f"value {r.value!r} came with key {r.key!r}"
            seqs[key].append(int(seq))
            parts[key].add(r.partition)
        for k in keys:
            assert seqs[k] == list(range(per_key)), f"key {k!r} out of order or incomplete"
            assert parts[k] == {zlib.crc32(k) % partitions}, f"key {k!r} in partitions {parts[k]}"
        offsets: dict[int, list[int]] = defaultdict(list)
        for r in records:
            offsets[r.partition].append(r.offset)
        for p, offs in offsets.items():
            assert offs == list(range(len(offs))), f"partition {p} offsets not contiguous from 0"
        state = topic_state(bus, topic)
        assert {p.partition: p.end_offset for p in state.partitions} == {
            p: len(offsets.get(p, [])) for p in range(partitions)
        }

    def test_group_members_split_partitions_and_take_over(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        everything = {(topic, p) for p in range(3)}
        keys = keys_by_partition(3)
        group = group_name()
        callbacks: dict[str, set[tuple[str, int]]] = {"a": set(), "b": set()}

        def tracker(name: str):
            return (lambda tps: callbacks[name].update(tps), lambda tps: callbacks[name].difference_update(tps))

        on_assign, on_revoke = tracker("a")
        a = Reader(bus.consumer(group, [topic], on_assign=on_assign, on_revoke=on_revoke), commit=True)
        poll_until(
            [a],
            lambda: set(a.consumer.assignment()) == everything,
            REBALANCE_S,
            lambda: f"lone member has {a.consumer.assignment()}",
        )

        on_assign, on_revoke = tracker("b")
        b = Reader(bus.consumer(group, [topic], on_assign=on_assign, on_revoke=on_revoke), commit=True)

        def split() -> bool:
            sa, sb = set(a.consumer.assignment()), set(b.consumer.assignment())
            return bool(sa) and bool(sb) and not sa & sb and sa | sb == everything

        poll_until([a, b], split, REBALANCE_S, lambda: f"a={a.consumer.assignment()} b={b.consumer.assignment()}")
        assign_a, assign_b = set(a.consumer.assignment()), set(b.consumer.assignment())
        assert callbacks["a"] == assign_a and callbacks["b"] == assign_b, (
            f"on_assign/on_revoke disagree with assignment(): {callbacks}"
        )
        assert not a.records and not b.records

        per_partition = 20
        produce(bus, topic, ((keys[p], b"first:%d:%d" % (p, i)) for i in range(per_partition) for p in range(3)))
        poll_until(
            [a, b],
            lambda: len(a.records) + len(b.records) >= 3 * per_partition,
            READ_S,
            lambda: f"a read {len(a.records)}, b read {len(b.records)}",
        )
        assert a.partitions_read() and b.partitions_read(), "both members must get messages"
        assert not a.partitions_read() & b.partitions_read(), "a partition was read by both"
        assert {(topic, p) for p in a.partitions_read()} <= assign_a
        assert {(topic, p) for p in b.partitions_read()} <= assign_b
        assert sorted(a.values() + b.values()) == sorted(
            b"first:%d:%d" % (p, i) for i in range(per_partition) for p in range(3)
        )

        b_partitions = {p for _, p in assign_b}
        b.consumer.close()
        poll_until(
            [a],
            lambda: set(a.consumer.assignment()) == everything,
            REBALANCE_S,
            lambda: f"survivor has {a.consumer.assignment()}",
        )
        assert callbacks["a"] == everything
        before = len(a.records)
        produce(
            bus, topic, ((keys[p], b"after:%d:%d" % (p, i)) for i in range(per_partition) for p in sorted(b_partitions))
        )
        expected = sorted(b"after:%d:%d" % (p, i) for i in range(per_partition) for p in sorted(b_partitions))
        poll_until(
            [a],
            lambda: len(a.records) - before >= len(expected),
            READ_S,
            lambda: f"survivor read {len(a.records) - before} of {len(expected)}",
        )
        a.poll(0.5)  # anything extra (a committed message delivered again) would show here
        taken_over = a.records[before:]
        assert sorted(value_of(r) for r in taken_over) == expected, (
            "survivor must get exactly the new messages of the partitions it took over"
        )
        assert {r.partition for r in taken_over} == b_partitions

    @pytest.mark.parametrize("latency", ["low", "batch"])
    def test_both_latency_profiles_deliver_everything_in_key_order(self, bus, topic_name, group_name, latency):
        """The "low" profile (no linger, Nagle off on Kafka) changes when messages move, never which:
        every message arrives once, each key's in order, and the clients accept their settings."""
        topic = create(bus, topic_name(), 3)
        keys = keys_by_partition(3)
        producer = bus.producer(latency)
        for i in range(60):
            producer.produce(topic, b"m%d" % i, key=keys[i % 3])
        assert producer.flush(30) == 0
        reader = Reader(bus.consumer(group_name(), [topic], latency=latency))
        poll_until([reader], lambda: len(reader.records) >= 60, READ_S, lambda: f"read {len(reader.records)}")
        reader.consumer.close()
        by_key: dict[bytes, list[int]] = {}
        for r in reader.records:
            by_key.setdefault(r.key or b"", []).append(int((r.value or b"")[1:]))
        assert {k: sorted(v) for k, v in by_key.items()} == by_key, "each key's messages in order"
        assert sorted(i for v in by_key.values() for i in v) == list(range(60))

    def test_uncommitted_messages_are_delivered_again(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        keys = keys_by_partition(3)
        produce(bus, topic, ((keys[i % 3], b"m%d" % i) for i in range(30)))
        group = group_name()

        a = Reader(bus.consumer(group, [topic]))
        poll_until([a], lambda: len(a.records) >= 30, READ_S, lambda: f"a read {len(a.records)}")
        a.consumer.close()  # "crashed" before commit

        b = Reader(bus.consumer(group, [topic]))
        poll_until([b], lambda: len(b.records) >= 30, READ_S, lambda: f"b read {len(b.records)}")
        assert tpo(b.records) == tpo(a.records), "the same messages at the same offsets come again"

    def test_commit_covers_exactly_the_given_records(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1)
        produce(bus, topic, ((None, b"m%d" % i) for i in range(20)))
        group = group_name()

        a = Reader(bus.consumer(group, [topic]))
        poll_until([a], lambda: len(a.records) >= 20, READ_S, lambda: f"a read {len(a.records)}")
        a.consumer.commit(a.records[:12])
        a.consumer.close()

        b = Reader(bus.consumer(group, [topic]))
        poll_until([b], lambda: len(b.records) >= 8, READ_S, lambda: f"b read {len(b.records)}")
        b.poll(0.5)
        assert [r.offset for r in b.records] == list(range(12, 20))
        assert b.values() == [b"m%d" % i for i in range(12, 20)]

    def test_asynchronous_commits_stay_in_order_and_close_waits_for_them(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1)
        produce(bus, topic, ((None, b"m%d" % i) for i in range(40)))
        group = group_name()

        a = Reader(bus.consumer(group, [topic]))
        poll_until([a], lambda: len(a.records) >= 40, READ_S, lambda: f"a read {len(a.records)}")
        for end in range(5, 30, 5):  # one batch after another, none waited for
            a.consumer.commit(a.records[end - 5 : end], asynchronous=True)
        a.consumer.close()

        b = Reader(bus.consumer(group, [topic]))
        poll_until([b], lambda: len(b.records) >= 15, READ_S, lambda: f"b read {len(b.records)}")
        b.poll(0.5)
        assert [r.offset for r in b.records] == list(range(25, 40)), "the last one sent counts, after close"

    def test_committed_messages_are_not_delivered_again(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        keys = keys_by_partition(3)
        produce(bus, topic, ((keys[i % 3], b"old%d" % i) for i in range(30)))
        group = group_name()

        a = Reader(bus.consumer(group, [topic]))
        poll_until([a], lambda: len(a.records) >= 30, READ_S, lambda: f"a read {len(a.records)}")
        a.consumer.commit(a.records)
        a.consumer.close()

        # New messages in every partition: old ones, if delivered again, would come before them.
        produce(bus, topic, ((keys[i % 3], b"new%d" % i) for i in range(9)))
        b = Reader(bus.consumer(group, [topic]))
        poll_until(
            [b], lambda: sum(v.startswith(b"new") for v in b.values()) >= 9, READ_S, lambda: f"b read {b.values()}"
        )
        b.poll(0.5)
        assert sorted(b.values()) == sorted(b"new%d" % i for i in range(9))

    def test_auto_offset_reset_latest_skips_and_earliest_reads(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        keys = keys_by_partition(3)
        old = [b"old%d" % i for i in range(30)]
        produce(bus, topic, ((keys[i % 3], v) for i, v in enumerate(old)))
        producer = bus.producer()

        latest = Reader(bus.consumer(group_name("latest"), [topic], auto_offset_reset="latest"))
        deadline = time.monotonic() + REBALANCE_S
        while not latest.consumer.assignment():
            latest.poll()
            assert time.monotonic() < deadline, "the latest consumer was never assigned partitions"
        assert latest.consumer.lag() == 0, "a latest consumer owes nothing it will never read"
        # Until its positions are set, a "latest" consumer also skips what is produced meanwhile:
        # keep producing markers until one arrives, then check nothing old came.
        markers = 0
        deadline = time.monotonic() + REBALANCE_S
        while not latest.records:
            if latest.consumer.assignment():
                produce(bus, topic, [(keys[markers % 3], b"marker%d" % markers)], producer)
                markers += 1
            latest.poll()
            assert time.monotonic() < deadline, "the latest consumer never got a message"
        after = [b"after%d" % p for p in range(3)]
        produce(bus, topic, ((keys[p], v) for p, v in enumerate(after)), producer)
        poll_until(
            [latest], lambda: set(after) <= set(latest.values()), READ_S, lambda: f"latest read {latest.values()}"
        )
        assert not [v for v in latest.values() if v.startswith(b"old")], (
            "auto_offset_reset=latest delivered messages produced before the group existed"
        )

        earliest = read_fresh(bus, group_name("earliest"), topic, lambda rs: set(after) <= {r.value for r in rs})
        values = [r.value for r in earliest]
        assert set(old) <= set(values)
        assert len(values) == len(old) + markers + len(after)

    def test_describe_shows_end_committed_offsets_and_lag(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        keys = keys_by_partition(3)
        counts = {0: 5, 1: 10, 2: 15}
        produce(bus, topic, ((keys[p], b"%d:%d" % (p, i)) for p, n in counts.items() for i in range(n)))
        state = topic_state(bus, topic)
        assert [(p.partition, p.start_offset, p.end_offset) for p in state.partitions] == [
            (0, 0, 5),
            (1, 0, 10),
            (2, 0, 15),
        ]
        assert state.messages == 30 and state.end_offset == 30

        group = group_name()
        reader = Reader(bus.consumer(group, [topic]))
        poll_until([reader], lambda: len(reader.records) >= 30, READ_S, lambda: f"read {len(reader.records)}")
        assert reader.consumer.lag() == 0, "everything assigned was consumed"
        by_part: dict[int, list[Record]] = defaultdict(list)
        for r in reader.records:
            by_part[r.partition].append(r)
        reader.consumer.commit(by_part[0])  # all of partition 0 -> 5
        reader.consumer.commit(by_part[1][:4])  # offsets 0..3 of partition 1 -> 4
        # partition 2: nothing committed

        g = group_state(bus, group)
        assert g.members == 1
        assert [(p.topic, p.partition, p.committed, p.start_offset, p.end_offset) for p in g.partitions] == [
            (topic, 0, 5, 0, 5),
            (topic, 1, 4, 0, 10),
        ]
        assert [p.lag for p in g.partitions] == [0, 6] and g.lag == 6

        reader.consumer.close()
        produce(bus, topic, [(keys[1], b"late1"), (keys[1], b"late2")])
        g = group_state(bus, group)
        assert g.members == 0, "a closed consumer is no longer a member"
        assert [(p.partition, p.committed, p.end_offset, p.lag) for p in g.partitions] == [(0, 5, 5, 0), (1, 4, 12, 8)]

    def test_delete_groups_deletes_empty_groups_and_refuses_groups_with_members(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1)
        produce(bus, topic, [(None, b"m%d" % i) for i in range(5)])
        left, live, never = group_name("left"), group_name("live"), group_name("never")
        gone = Reader(bus.consumer(left, [topic]), commit=True)
        member = Reader(bus.consumer(live, [topic]), commit=True)
        poll_until(
            [gone, member],
            lambda: len(gone.records) == len(member.records) == 5,
            READ_S,
            lambda: f"read {len(gone.records)} and {len(member.records)} of 5",
        )
        gone.consumer.close()
        assert (group_state(bus, left).members, group_state(bus, live).members) == (0, 1)

        assert bus.delete_groups([left, live, never]) == {left: None, live: GROUP_HAS_MEMBERS, never: GROUP_NOT_FOUND}
        groups = {g.group_id: g for g in bus.describe_groups()}
        assert left not in groups, "a deleted group is still described"
        assert groups[live].members == 1 and [(p.committed, p.lag) for p in groups[live].partitions] == [(5, 0)], (
            "a group refused for its members keeps them and its committed offsets"
        )
        assert bus.delete_groups([]) == {}

        # The deleted group's offsets went with it: joining it again starts from auto_offset_reset.
        assert [r.offset for r in read_count(bus, left, topic, 5)] == [0, 1, 2, 3, 4]
        member.poll()
        member.consumer.close()
        assert bus.delete_groups([live]) == {live: None}
        assert live not in {g.group_id for g in bus.describe_groups()}

    def test_retention_deletes_expired_messages(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1, retention_ms=1000, extra={"segment.ms": "100"})
        old = [b"A%d" % i for i in range(10)]
        producer = bus.producer()
        produce(bus, topic, ((None, v) for v in old), producer)
        produced_at = time.monotonic()
        # Not expired yet: nothing may go before the retention time (with a margin for Kafka,
        # which deletes a segment only once its newest message is older than retention.ms).
        while time.monotonic() - produced_at < 0.6:
            part = topic_state(bus, topic).partitions[0]
            assert (part.start_offset, part.end_offset) == (0, len(old)), "deleted too early"
            time.sleep(0.1)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - produced_at)))  # let batch A expire
        # Each round produces a fresh batch B (which also rolls Kafka's segment) and reads the
        # topic from the start with a new group. B lives only ~1 s itself, so each round checks its
        # own batch: A must be gone while all of the fresh B is there.
        deadline = time.monotonic() + 60
        produced = len(old)
        rounds = 0
        while True:
            batch = [b"B%d-%d" % (rounds, i) for i in range(5)]
            produced += produce(bus, topic, ((None, v) for v in batch), producer)
            records = read_fresh(
                bus,
                group_name(f"r{rounds}"),
                topic,
                value_is(batch[-1]),
                timeout=5,
                must=False,
            )
            values = [r.value for r in records]
            if not set(old) & set(values) and set(batch) <= set(values):
                break
            rounds += 1
            assert time.monotonic() < deadline, f"A never expired (or B with it): read {values}"
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets)), "offsets must increase"
        assert offsets[0] >= len(old)
        state = topic_state(bus, topic)
        assert state.partitions[0].start_offset >= len(old)
        assert state.partitions[0].end_offset == produced, "retention must not move the end"

    def test_compaction_keeps_the_last_value_per_key(self, bus, topic_name, group_name):
        topic = create(
            bus,
            topic_name(),
            1,
            cleanup="compact",
            extra={
                "segment.ms": "100",
                "min.cleanable.dirty.ratio": "0.01",
                "delete.retention.ms": "100",
                "min.compaction.lag.ms": "0",
            },
        )
        producer = bus.producer()
        produce(bus, topic, [(b"k1", b"v1"), (b"k2", b"v1"), (b"k1", b"v2"), (b"k1", b"v3")], producer)
        deadline = time.monotonic() + 90
        fillers = 0
        while True:
            time.sleep(0.3)  # pacing so the filler rolls the segment; not an assertion
            filler = b"filler-%d" % fillers
            produce(bus, topic, [(filler, b"x")], producer)
            fillers += 1
            records = read_fresh(bus, group_name(f"r{fillers}"), topic, key_is(filler), timeout=30)
            kept = [(r.offset, r.key, r.value) for r in records if r.key in (b"k1", b"k2")]
            if kept == [(1, b"k2", b"v1"), (3, b"k1", b"v3")]:
                break
            assert time.monotonic() < deadline, f"not compacted in 90 s: {kept}"
            # Before compaction every version is there; a half-way state must still be a
            # subsequence of the original log, and the latest value of each key is never lost.
            assert (3, b"k1", b"v3") in kept and (1, b"k2", b"v1") in kept, kept
        offsets = [r.offset for r in records]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        assert topic_state(bus, topic).partitions[0].end_offset == 4 + fillers

    def test_unknown_topic_is_an_error(self, bus, topic_name, group_name):
        known = create(bus, topic_name("known"), 1)
        unknown = topic_name("never-created")
        producer = bus.producer()
        with pytest.raises(UnknownTopicError):
            producer.produce(unknown, b"x")
        with pytest.raises(UnknownTopicError):
            bus.consumer(group_name(), [unknown])
        with pytest.raises(UnknownTopicError):
            bus.consumer(group_name(), [known, unknown])
        assert unknown not in {t.name for t in bus.describe_topics()}, "a failed produce must not create the topic"
        producer.produce(known, b"still fine")
        assert producer.flush() == 0

    def test_headers_none_key_and_none_value_round_trip(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1)
        headers = [("trace", b"abc"), ("bin", bytes(range(256))), ("trace", b"second"), ("empty", b"")]
        producer = bus.producer()
        before = int(time.time() * 1000)
        producer.produce(topic, b"with headers", key=None, headers=headers)
        producer.produce(topic, None, key=b"tombstone-key")
        producer.produce(topic, b"", key=b"", headers=[])
        assert producer.flush() == 0
        after = int(time.time() * 1000)

        first, second, third = read_count(bus, group_name(), topic, 3)
        assert (first.key, first.value, first.offset) == (None, b"with headers", 0)
        assert first.headers == tuple(headers)
        assert first.header("trace") == b"abc" and first.header("missing") is None
        assert (second.key, second.value, second.headers) == (b"tombstone-key", None, ())
        assert (third.key, third.value, third.headers) == (b"", b"", ())
        for r in (first, second, third):
            assert before - 5_000 <= r.timestamp <= after + 5_000, "timestamp in ms since epoch"

    def test_producer_is_thread_safe(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        producer = bus.producer()
        threads_n, per_thread = 4, 2000
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(per_thread):
                    producer.produce(topic, b"%d:%d" % (t, i), key=b"thread-%d" % t)
            except BaseException as exc:  # noqa: BLE001 - any failure in a thread is reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert producer.flush() == 0

        records = read_count(bus, group_name(), topic, threads_n * per_thread)
        seqs: dict[int, list[int]] = defaultdict(list)
        for r in records:
            t, i = map(int, value_of(r).split(b":"))
            seqs[t].append(i)
        for t in range(threads_n):
            assert seqs[t] == list(range(per_thread)), f"thread {t} lost or reordered messages"
        assert topic_state(bus, topic).messages == threads_n * per_thread

    def test_produce_many_is_produce_of_each_in_order(self, bus, topic_name, group_name):
        partitions = 3
        topic = create(bus, topic_name(), partitions)
        keys = [b"alpha", b"bravo", b"charlie", b"delta", b"echo"]
        producer = bus.producer("low")
        producer.produce(topic, b"alpha:0", key=b"alpha")
        many: list[Outgoing] = [(topic, b"%s:%d" % (k, seq), k, None) for seq in range(1, 100) for k in keys]
        many[7] = (topic, many[7][1], many[7][2], [("trace", b"seven")])
        producer.produce_many(many)
        producer.produce_many([])
        producer.produce(topic, b"alpha:100", key=b"alpha")
        assert producer.flush() == 0

        records = read_count(bus, group_name(), topic, 2 + len(many))
        assert len(records) == 2 + len(many), "duplicates delivered"
        seqs: dict[bytes, list[int]] = defaultdict(list)
        for r in records:
            key, seq = value_of(r).split(b":")
            assert key == r.key and r.partition == zlib.crc32(key) % partitions
            seqs[key].append(int(seq))
            assert r.headers == ((("trace", b"seven"),) if r.value == many[7][1] else ())
        assert seqs[b"alpha"] == list(range(101))
        for k in keys[1:]:
            assert seqs[k] == list(range(1, 100)), f"key {k!r} out of order or incomplete"

        compacted = create(bus, topic_name(), 1, cleanup="compact")
        producer.produce_many([(compacted, b"no key", None, None)])  # Kafka fails the record batch it is in
        assert producer.flush() == 1, "a keyless message on a compacted topic is not delivered"
        producer.produce_many([(compacted, b"keyed", b"k", None)])
        assert producer.flush() == 0
        assert [(r.key, r.value) for r in read_count(bus, group_name(), compacted, 1)] == [(b"k", b"keyed")]

    # -- edge cases where the embedded log once differed from Kafka ---------------------------

    def test_compacted_topic_refuses_a_message_without_key(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1, cleanup="compact")
        producer = bus.producer()
        producer.produce(topic, b"no key")
        assert producer.flush() == 1, "a keyless message on a compacted topic is not delivered"
        producer.produce(topic, b"keyed", key=b"k")
        assert producer.flush() == 0
        records = read_count(bus, group_name(), topic, 1)
        assert [(r.key, r.value) for r in records] == [(b"k", b"keyed")]

    def test_an_empty_key_is_partitioned_like_no_key(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 3)
        produce(bus, topic, ((b"", b"%d" % i) for i in range(60)))
        records = read_count(bus, group_name(), topic, 60)
        assert all(r.key == b"" for r in records)
        assert len({r.partition for r in records}) > 1, "60 messages with key b'' in one partition"


# -- operating the bus: reading outside any group, offsets by time, resetting an empty group -----


def committed_offsets(bus) -> dict[str, list[tuple[str, int, int | None]]]:
    """Every group's committed offsets, to compare before and after a read."""
    return {g.group_id: [(p.topic, p.partition, p.committed) for p in g.partitions] for g in bus.describe_groups()}


class TestOperatingTheBus:
    def test_read_takes_a_range_of_one_partition_and_moves_no_group(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 2)
        keys = keys_by_partition(2)
        produce(bus, topic, [(keys[0], b"p0-%d" % i) for i in range(20)] + [(keys[1], b"p1-%d" % i) for i in range(5)])
        stage = Reader(bus.consumer(group_name("stage"), [topic]))
        poll_until([stage], lambda: len(stage.records) == 25, READ_S, lambda: f"read {len(stage.records)} of 25")
        stage.consumer.commit([r for r in stage.records if r.partition == 0][:7])
        before = committed_offsets(bus)

        page = bus.read(topic, 0, 5, 10)
        assert [(r.partition, r.offset, r.value) for r in page] == [(0, i, b"p0-%d" % i) for i in range(5, 15)]
        assert [r.offset for r in bus.read(topic, 0, 15, 100)] == [15, 16, 17, 18, 19], "fewer at the end"
        assert bus.read(topic, 0, 20, 10) == [] and bus.read(topic, 0, 500, 10) == [], "none at or past the end"
        assert [r.offset for r in bus.read(topic, 0, -3, 3)] == [0, 1, 2], "below the start reads from the start"
        assert [r.value for r in bus.read(topic, 1, 0, 100)] == [b"p1-%d" % i for i in range(5)]
        assert page[0].key == keys[0] and page[0].timestamp > 0

        after = committed_offsets(bus)
        assert after == before, "reading created a group or moved a committed offset"
        assert [(r.partition, r.offset) for r in stage.poll(0.5)] == [], "the stage's own position is unchanged"

        with pytest.raises(UnknownPartitionError, match="partitions 0-1; there is no partition 2"):
            bus.read(topic, 2, 0, 10)
        with pytest.raises(UnknownTopicError):
            bus.read(topic_name("never-created"), 0, 0, 10)

    def test_offsets_for_time_finds_the_first_record_at_or_after_a_time(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 1)
        produce(bus, topic, [(None, b"early-%d" % i) for i in range(10)])
        first = bus.read(topic, 0, 0, 10)
        later_than_all = max(r.timestamp for r in first) + 1
        while int(time.time() * 1000) <= later_than_all:  # the next records get a later timestamp
            time.sleep(0.005)
        produce(bus, topic, [(None, b"late-%d" % i) for i in range(10)])
        records = bus.read(topic, 0, 0, 100)
        assert len(records) == 20

        def expected(at: int) -> int:
            return min((r.offset for r in records if r.timestamp >= at), default=20)

        assert bus.offsets_for_time(topic, later_than_all) == {0: expected(later_than_all)} == {0: 10}
        assert bus.offsets_for_time(topic, records[3].timestamp) == {0: expected(records[3].timestamp)}
        assert bus.offsets_for_time(topic, 0) == {0: 0}, "a time before every record: the start"
        assert bus.offsets_for_time(topic, records[-1].timestamp + 60_000) == {0: 20}, "after every record: the end"

    def test_reset_offsets_moves_an_empty_group_and_refuses_one_with_members(self, bus, topic_name, group_name):
        topic = create(bus, topic_name(), 2)
        keys = keys_by_partition(2)
        produce(bus, topic, [(keys[p], b"%d:%d" % (p, i)) for p in (0, 1) for i in range(10)])
        group = group_name()
        first = Reader(bus.consumer(group, [topic]), commit=True)
        poll_until([first], lambda: len(first.records) == 20, READ_S, lambda: f"read {len(first.records)} of 20")
        first.consumer.close()
        assert [(p.partition, p.committed) for p in group_state(bus, group).partitions] == [(0, 10), (1, 10)]

        assert bus.reset_offsets(group, {(topic, 0): 3, (topic, 1): 10}) is None
        assert [(p.partition, p.committed, p.lag) for p in group_state(bus, group).partitions] == [
            (0, 3, 7),
            (1, 10, 0),
        ]

        again = Reader(bus.consumer(group, [topic]), commit=True)
        poll_until([again], lambda: len(again.records) == 7, READ_S, lambda: f"read {len(again.records)} of 7")
        assert [(r.partition, r.offset) for r in again.records] == [(0, i) for i in range(3, 10)]
        assert bus.reset_offsets(group, {(topic, 0): 0}) == GROUP_HAS_MEMBERS
        assert [(p.partition, p.committed) for p in group_state(bus, group).partitions] == [(0, 10), (1, 10)], (
            "a refused reset changed nothing"
        )
        again.consumer.close()

        fresh = group_name("fresh")
        assert bus.reset_offsets(fresh, {(topic, 1): 4}) is None, "a group with no offsets yet gets these"
        assert [(p.partition, p.committed) for p in group_state(bus, fresh).partitions] == [(1, 4)]
        with pytest.raises(UnknownPartitionError):
            bus.reset_offsets(fresh, {(topic, 5): 0})
