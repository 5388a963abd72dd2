"""The bus contract: what every backend (embedded SQLite log, Apache Kafka) must do alike."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from pipeline.topics import TopicSpec

OffsetReset = Literal["earliest", "latest"]
# How a client trades latency for batching. "low": a message leaves and is handed over as soon as it
# can (the path from a tick to its signal and order); "batch": clients may wait a few milliseconds
# to gather more (journal and store stages at thousands of messages a second). The embedded bus
# never waits to batch, so only Kafka's clients differ (pipeline.bus.kafka, docs/delivery.md).
Latency = Literal["low", "batch"]
# One message to send: (topic, value, key, headers), the arguments of ``Producer.produce``.
Outgoing = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]
PartitionsCallback = Callable[[list[tuple[str, int]]], None]

# Why ``Bus.delete_groups`` left a group alone (the same words on both buses).
GROUP_HAS_MEMBERS = "it has members (a group is deleted only when no consumer is in it)"
GROUP_NOT_FOUND = "no such consumer group"


@dataclass(slots=True)
class Record:
    """One message as read from the bus. Read-only by contract: nothing changes a record it was
    given (``dataclasses.replace`` makes another). Not ``frozen``, because a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` (0.77 against 0.18 µs here), and the
    embedded consumer makes one per message: frozen, it read about 15 % fewer messages a second
    (``bench.bus``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        """Return the first header called ``name``, or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True)
class PartitionState:
    partition: int
    start_offset: int
    end_offset: int

    @property
    def messages(self) -> int:
        return self.end_offset - self.start_offset


@dataclass(frozen=True)
class TopicState:
    """A topic as the bus sees it."""

    name: str
    partitions: list[PartitionState]
    config: dict[str, str] = field(default_factory=dict)

    @property
    def end_offset(self) -> int:
        return sum(p.end_offset for p in self.partitions)

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)


@dataclass(frozen=True)
class GroupPartition:
    topic: str
    partition: int
    committed: int | None
    start_offset: int
    end_offset: int

    @property
    def lag(self) -> int:
        """Messages not yet committed; from the log start when nothing is committed yet."""
        position = self.start_offset if self.committed is None else max(self.committed, self.start_offset)
        return max(self.end_offset - position, 0)


@dataclass(frozen=True)
class GroupState:
    """A consumer group: its members and, per partition, the committed offset and lag."""

    group_id: str
    members: int
    partitions: list[GroupPartition]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def partition_for(key: bytes, partitions: int) -> int:
    """Return the partition of ``key``: CRC32 modulo the count, as librdkafka's default does."""
    return zlib.crc32(key) % partitions


class Delivery(Protocol):
    """A producer's handle on the messages it produced since its previous handle (``delivery_of``).

    Never blocks. The caller keeps handles in the order it took them: a handle says nothing of the
    messages of an earlier one."""

    def done(self) -> bool:
        """True once every one of those messages is durable on the bus or refused."""
        ...

    def undelivered(self) -> int:
        """How many of them were refused (0 is good); final once ``done``. A refusal is also
        counted by the producer's next ``flush``. Kafka's broker may refuse a bad message's whole
        request, its neighbours too."""
        ...


class Producer(Protocol):
    """Publishes messages. Thread-safe; ``flush`` makes everything produced so far durable.

    Kafka's producer also has ``delivery() -> Delivery`` (``delivery_of``): a handle, taken
    without waiting, on what was produced since the previous handle, so a caller can go on working
    and commit its input offsets once that is durable. It is done when librdkafka has reported
    every one of those messages acknowledged by the broker (``acks=all``; asking ``done`` serves
    the reports waiting). The embedded bus's producer has none, and its callers flush: a flush
    there is a round trip to the writer thread of the same process (1-2 ms), and committing on
    delivery ran the ml stage flat out about 17 % slower (``bench.signals --backend embedded
    --offsets both``: 6,594 and 6,917 against 7,980 and 8,337 ticks/s). A wrapper without it
    makes its caller flush too."""

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        """``produce`` each of ``messages``, in order. On the embedded bus they reach the writer in one
        hand-over: one commit takes them all and a reader wakes once, where a ``produce`` each lets
        the writer commit the first few while the rest are still being produced (a burst's 150
        signals went out in two or three commits, each waking every reader)."""
        ...

    def flush(self, timeout: float = 30.0) -> int:
        """Block until delivered; return how many messages are still undelivered (0 is good)."""
        ...

    def close(self) -> None: ...


def delivery_of(producer: object) -> Delivery | None:
    """``producer.delivery()`` when the producer has it, else None (flush instead)."""
    get = getattr(producer, "delivery", None)
    return cast(Delivery | None, get()) if callable(get) else None


class Consumer(Protocol):
    """Reads a consumer group's share of some topics. Used from one thread only."""

    group_id: str

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Record]:
        """Return up to ``max_messages`` records, waiting at most ``timeout`` seconds for the first."""
        ...

    def commit(self, records: Iterable[Record] | None = None, *, asynchronous: bool = False) -> None:
        """Commit past ``records`` (default: everything polled). Call only once they are durable.

        ``asynchronous``: send the commit and return without waiting for it; commits stay in order,
        and one that failed raises from the next ``commit`` of this consumer (``CommitFailedError``
        when the member had left the group). ``close`` and a revoke wait for what was sent."""
        ...

    def commit_after(self, producer: Producer, records: Iterable[Record], *, asynchronous: bool = False) -> None:
        """Commit past ``records`` once every message ``producer`` produced before this call is
        durable; raise ``OutputsNotDelivered`` (committing nothing) when one was not delivered.

        The same as ``producer.flush()`` and, when it reported nothing undelivered, ``commit``: on
        Kafka it is that. On the embedded bus the offsets go to the writer right behind the
        outputs and are written in the same transaction as the last of them (or a later one, and
        only if all of them were written), so a batch waits for one writer round trip instead of
        two; with ``asynchronous`` it waits for none, and a failure raises from the next commit."""
        ...

    def assignment(self) -> list[tuple[str, int]]: ...

    def lag(self) -> int:
        """Return how many messages of the assigned partitions are not yet consumed."""
        ...

    def close(self) -> None:
        """Leave the group without committing anything not committed yet."""
        ...


class Bus(Protocol):
    """A log of topics with partitions, consumer groups and committed offsets."""

    name: str

    def create_topics(self, specs: Iterable[TopicSpec]) -> dict[str, bool]:
        """Create missing topics; return name -> True if created now. Idempotent."""
        ...

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicState]: ...

    def describe_groups(self) -> list[GroupState]:
        """Return the consumer groups by id. ``members`` counts the consumers in a group now: one
        that closed, or that has been silent for the session timeout, is no longer in it."""
        ...

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, str | None]:
        """Delete consumer groups that have no members, with their committed offsets (a consumer
        that joins one later starts from its ``auto_offset_reset``). Return, per group, None when
        deleted, else why not: ``GROUP_HAS_MEMBERS`` (never deleted) or ``GROUP_NOT_FOUND``."""
        ...

    def read(self, topic: str, partition: int, offset: int, max_messages: int = 100) -> list[Record]:
        """Return up to ``max_messages`` records of one partition from ``offset`` on, in offset order,
        without joining any consumer group and without committing anything (no group sees a
        difference). An offset below the log start reads from the start; fewer records come back at
        the end, none at or past it. Raise ``UnknownTopicError`` or ``UnknownPartitionError``."""
        ...

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        """Per partition, the earliest offset whose record's timestamp is at or after ``timestamp_ms``,
        or the partition's end offset when no record is that recent."""
        ...

    def reset_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> str | None:
        """Set the committed offsets of ``group_id`` to ``offsets`` ((topic, partition) -> offset,
        backwards or forwards), only while the group has no members, as Kafka's
        ``kafka-consumer-groups --reset-offsets`` does. Return None when set, else
        ``GROUP_HAS_MEMBERS`` (nothing changed). A group with no offsets yet gets these."""
        ...

    def producer(self, latency: Latency = "batch") -> Producer: ...

    def consumer(
        self,
        group_id: str,
        topics: Sequence[str],
        *,
        auto_offset_reset: OffsetReset = "earliest",
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        latency: Latency = "batch",
    ) -> Consumer: ...

    def close(self) -> None: ...


def read_to_end(bus: Bus, topic: str, group_id: str, *, timeout: float = 60.0) -> list[Record]:
    """Read ``topic`` from its start to the end it had when called, without committing anything
    (so ``group_id`` starts from the beginning every time). Used to rebuild state from a
    compacted topic; raises ``TimeoutError`` if the end is not reached in ``timeout`` seconds."""
    import time

    (state,) = bus.describe_topics([topic])
    wanted = {p.partition: p.end_offset for p in state.partitions if p.end_offset > p.start_offset}
    records: list[Record] = []
    if not wanted:
        return records
    consumer = bus.consumer(group_id, [topic], auto_offset_reset="earliest")
    deadline = time.monotonic() + timeout
    try:
        while wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: still {len(wanted)} partition(s) short of their end after {timeout:g} s")
            for r in consumer.poll(5000, 0.2):
                if r.partition in wanted and r.offset < wanted[r.partition]:
                    records.append(r)
                if r.partition in wanted and r.offset >= wanted[r.partition] - 1:
                    del wanted[r.partition]
    finally:
        consumer.close()
    return records
