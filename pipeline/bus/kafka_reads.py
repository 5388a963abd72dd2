"""Kafka outside any consumer group: reading a range of one partition, offsets by time, and
resetting a group's committed offsets while it is empty.

``KafkaReader`` holds one consumer that only ever ``assign``s partitions: it never joins a group
and never commits, and its group id is never created on the broker, so reading moves no group.
A read costs the watermark request and one fetch from the offset (a few milliseconds on loopback).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from pipeline.bus.base import GROUP_HAS_MEMBERS, Record
from pipeline.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

READ_DEADLINE_S = 30.0
# What the group coordinator answers to offsets from outside a group that has members.
_REFUSED = (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION)


class KafkaReader:
    """The bus's one reader. Thread-safe: threads take turns on it."""

    def __init__(self, client_config: Mapping[str, Any]) -> None:
        self._config = dict(client_config)
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self._config,
                    "group.id": f"desk-reader-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": False,
                    "queued.min.messages": 1000,
                    "fetch.wait.max.ms": 50,
                    # A fetch from the middle of a compressed batch delivers fewer than asked while the
                    # queue holds the whole batch; librdkafka's default then waits 1 s for the next fetch.
                    "fetch.queue.backoff.ms": 5,
                },
                logger=log,
            )
        return self._consumer

    def read(self, topic: str, partition: int, offset: int, max_messages: int) -> list[Record]:
        """Up to ``max_messages`` records from ``offset`` on (from the log start if it is lower)."""
        if max_messages <= 0:
            return []
        with self._lock:
            reader = self._client()
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10.0)
            start = max(offset, low)
            if start >= high:
                return []
            reader.assign([TopicPartition(topic, partition, start)])
            try:  # consume(n) waits for n messages: never ask for more than the range holds
                return self._fetch(reader, topic, partition, start, high, min(max_messages, high - start))
            finally:
                reader.unassign()

    @staticmethod
    def _fetch(reader: Consumer, topic: str, partition: int, start: int, high: int, wanted: int) -> list[Record]:
        records: list[Record] = []
        deadline = time.monotonic() + READ_DEADLINE_S
        while len(records) < wanted and (not records or records[-1].offset < high - 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransientError(f"{topic}[{partition}]: Kafka sent nothing from offset {start} within 30 s")
            batch = reader.consume(wanted - len(records), min(left, 1.0))
            if not batch and records:  # the rest of the range holds no record (compacted away)
                break
            for m in batch:
                err = m.error()
                if err is not None:
                    if err.fatal():
                        raise ConfigError(f"kafka reader: {err.str()}")
                    continue
                records.append(
                    Record(
                        topic,
                        partition,
                        cast(int, m.offset()),
                        m.key(),
                        m.value(),
                        m.timestamp()[1],
                        tuple(cast(Any, m.headers() or ())),
                    )
                )
        return records[:wanted]

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def offsets_at(admin: AdminClient, parts: Sequence[TopicPartition], timestamp_ms: int) -> dict[int, int]:
    """Per partition, the earliest offset at or after ``timestamp_ms`` (-1 where none is)."""
    if not parts:
        return {}
    found = admin.list_offsets({tp: OffsetSpec.for_timestamp(timestamp_ms) for tp in parts}, request_timeout=10)
    return {tp.partition: found[tp].result().offset for tp in parts}


def reset_group_offsets(admin: AdminClient, group_id: str, offsets: Mapping[tuple[str, int], int]) -> str | None:
    """Set ``group_id``'s committed offsets unless it has members (then ``GROUP_HAS_MEMBERS``)."""
    try:
        described = admin.describe_consumer_groups([group_id], request_timeout=10)[group_id].result()
        if described.members:
            return GROUP_HAS_MEMBERS
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise TransientError(f"cannot describe consumer group {group_id!r}: {exc.args[0].str()}") from None
    request = ConsumerGroupTopicPartitions(group_id, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())])
    # A consumer that joined since the look above: the coordinator refuses, and the answer is the same.
    try:
        result = admin.alter_consumer_group_offsets([request], request_timeout=10)[group_id].result()
    except KafkaException as exc:
        if exc.args[0].code() in _REFUSED:
            return GROUP_HAS_MEMBERS
        raise TransientError(f"cannot reset the offsets of {group_id!r}: {exc.args[0].str()}") from None
    for tp in result.topic_partitions:
        if tp.error is not None:
            if tp.error.code() in _REFUSED:
                return GROUP_HAS_MEMBERS
            raise TransientError(f"cannot reset {group_id!r} on {tp.topic}[{tp.partition}]: {tp.error.str()}")
    return None
