"""The embedded log's producer: it only enqueues appends for the bus's writer thread.

A produce picks the partition (CRC32 of the key, as librdkafka; round robin without one) and
queues one append; ``produce_many`` queues a batch's appends in one hand-over, so the writer
commits them together. ``flush`` waits for the writer's commit of everything queued before it;
``behind`` lets a consumer queue its offset commit right behind the outputs instead
(``EmbeddedConsumer.commit_after``). Nothing here touches the file: the writer does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence, Sized
from typing import Any, Protocol

from pipeline.bus.base import Outgoing, partition_for
from pipeline.bus.embedded_log import APPEND, FLUSH, encode_headers, now_ms
from pipeline.errors import OutputsNotDelivered

log = logging.getLogger(__name__)


class _Queue(Protocol):
    """The bus's writer thread, as a producer uses it."""

    @property
    def ops(self) -> Sized: ...

    def submit(self, op: tuple[Any, ...]) -> None: ...

    def submit_many(self, ops: list[tuple[Any, ...]]) -> None: ...

    def is_alive(self) -> bool: ...


class _Log(Protocol):
    """What a producer needs of ``pipeline.bus.embedded.EmbeddedBus`` (which imports this module)."""

    undelivered: int
    append_failures: int
    _topic_cleanup: dict[str, str]

    @property
    def _writer(self) -> _Queue: ...

    def _partitions(self, topic: str) -> int: ...


class EmbeddedProducer:
    """Publishes to the embedded log. Thread-safe: every call only enqueues for the writer.

    ``flush`` waits for the writer only when this producer has produced since its last flush: a
    stage that produced nothing in a batch (a sink) then commits its offsets without a writer round
    trip for nothing (everything it produced before is durable already). A flush is therefore no
    barrier for other writes queued before it (``EmbeddedBus._call`` is)."""

    def __init__(self, bus: _Log) -> None:
        self._bus = bus
        self._round_robin = 0
        # Set after each produce has been handed to the writer (or refused), cleared by a flush
        # before it queues its own marker: a produce it does not cover sets it again after.
        self._unflushed = False

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        op = self._append(topic, value, key, headers, now_ms())
        if op is not None:
            self._bus._writer.submit(op)
        self._unflushed = True  # after the submit: a flush that clears it first is queued behind it

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        ts = now_ms()
        ops = [op for op in (self._append(*m, ts) for m in messages) if op is not None]
        self._bus._writer.submit_many(ops)
        self._unflushed = True

    def _append(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]] | None, ts: int
    ) -> tuple[Any, ...] | None:
        """The writer's op appending one message, or None (counted undelivered) when it is refused."""
        partitions = self._bus._partitions(topic)
        if key is None and self._bus._topic_cleanup[topic] == "compact":
            # Kafka refuses a keyless message on a compacted topic and flush() reports it: same here.
            log.error("embedded delivery failed: %r is compacted and the message has no key", topic)
            self._bus.undelivered += 1
            return None
        if key:  # as librdkafka's default partitioner: an empty key is partitioned like no key
            part = partition_for(key, partitions)
        else:
            self._round_robin += 1
            part = self._round_robin % partitions
        return (APPEND, topic, part, key, value, ts, encode_headers(headers))

    def flush(self, timeout: float = 30.0) -> int:
        if not self._bus._writer.is_alive():  # the bus is closed: nothing more will be written
            return len(self._bus._writer.ops)
        if not self._unflushed:  # nothing produced since the last flush began
            return 0
        self._unflushed = False
        done = threading.Event()
        self._bus._writer.submit((FLUSH, done))
        if not done.wait(timeout):
            self._unflushed = True  # not known to be written: the next flush waits again
            return len(self._bus._writer.ops)
        undelivered, self._bus.undelivered = self._bus.undelivered, 0
        return undelivered

    def behind(self, log: object) -> Callable[[sqlite3.Connection], None] | None:
        """For an offset commit queued to the writer behind everything produced so far, instead of
        a flush before it (``EmbeddedConsumer.commit_after``); None when ``log`` is not this
        producer's bus. Raise ``OutputsNotDelivered`` now if a message was refused, else return a
        check for the commit to run first, in the writer, which raises ``OutputsNotDelivered`` if
        the writer failed to write one (only when the bus is closing: it retries a locked file
        until then). The writer applies its queue in order, so a commit queued right after this
        is in the transaction of the last message produced or a later one. Like ``flush``, the
        count of refused messages is the bus's (``undelivered``)."""
        if log is not self._bus:
            return None
        refused, self._bus.undelivered = self._bus.undelivered, 0
        if refused:
            raise OutputsNotDelivered(refused)
        bus, failures = self._bus, self._bus.append_failures
        self._unflushed = False  # the commit is queued behind them: what a flush waits for

        def check(conn: sqlite3.Connection) -> None:
            if bus.append_failures != failures:
                raise OutputsNotDelivered(bus.append_failures - failures)

        return check

    def close(self) -> None:
        self.flush()
