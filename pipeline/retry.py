"""Non-blocking retries (seed 003): a message that fails with a transient error is tried again later
from a delay topic, while the messages behind it on its partition go on.

Retry n (0, 1, 2) goes to ``<topic>_retry_<2^n>s`` (``pipeline.topics.retry_name``) with these
headers, the message's own headers kept before them:

* ``retry_count``: n + 1, the retries so far (ASCII digits);
* ``last_error``: the error of the last try (at most ``MAX_ERROR_CHARS`` characters);
* ``retry_stage``: the stage (consumer group) that tries it again; every stage reading ``<topic>``
  reads its delay topics too and passes over the others' records;
* ``retry_due_ms``: when it is due, in ms since the epoch of the failing stage's clock;
* ``retry_source``: ``topic:partition:offset`` of the message on its source topic, so its dead
  letter and its redrive name where it came from.

After ``MAX_RETRIES`` (3) retries the message goes to the dead-letter topic with ``retry_count`` 3.
Delay topics hold one delay each, so their records are due in the order they were written: a
stage holds a record that is not due yet (``HeldRetries``) and everything after it on that delay
partition, but never a partition of its input topics. Nothing is committed past a held record, so
a crash loses none. Cost: a dictionary lookup per record read from a delay topic; nothing for the
others.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from pipeline.bus.base import Record
from pipeline.topics import RETRY_DELAYS_S, retry_source

RETRY_COUNT = "retry_count"
LAST_ERROR = "last_error"
RETRY_STAGE = "retry_stage"
RETRY_DUE = "retry_due_ms"
RETRY_SOURCE = "retry_source"
RETRY_HEADERS = frozenset({RETRY_COUNT, LAST_ERROR, RETRY_STAGE, RETRY_DUE, RETRY_SOURCE})
MAX_RETRIES = len(RETRY_DELAYS_S)
MAX_ERROR_CHARS = 500
# How long past its due time a stage waits for a retry it sent, its inputs paused, before it gives
# up (another member of its group owns that delay partition, or the record is lost with a broker).
AWAIT_MAX_MS = 2000


@dataclass(frozen=True)
class RetryInfo:
    """What a delay topic's record says about its retry."""

    count: int
    stage: str
    due_ms: int
    source_topic: str
    source_partition: int
    source_offset: int
    last_error: str


def retry_info(record: Record) -> RetryInfo | None:
    """Read a delay topic's record's retry headers; None for any other record (or broken headers)."""
    source = retry_source(record.topic)
    if source is None:
        return None
    try:
        topic, partition, offset = (record.header(RETRY_SOURCE) or b"").decode().rsplit(":", 2)
        return RetryInfo(
            count=int(record.header(RETRY_COUNT) or b""),
            stage=(record.header(RETRY_STAGE) or b"").decode(),
            due_ms=int(record.header(RETRY_DUE) or b""),
            source_topic=topic,
            source_partition=int(partition),
            source_offset=int(offset),
            last_error=(record.header(LAST_ERROR) or b"").decode("utf-8", "replace"),
        )
    except ValueError:
        return None


def origin(record: Record, info: RetryInfo) -> Record:
    """``record`` as on its source topic (the source's topic, partition and offset), its headers
    kept: ``retry_count`` says how often it was tried again."""
    return replace(record, topic=info.source_topic, partition=info.source_partition, offset=info.source_offset)


def retry_headers(record: Record, *, count: int, error: str, stage: str, due_ms: int) -> list[tuple[str, bytes]]:
    """The headers of retry ``count`` (1-based) of ``record`` (as on its source topic)."""
    own = [(k, v) for k, v in record.headers if k not in RETRY_HEADERS]
    return [
        *own,
        (RETRY_COUNT, str(count).encode()),
        (LAST_ERROR, error[:MAX_ERROR_CHARS].encode("utf-8", "replace")),
        (RETRY_STAGE, stage.encode()),
        (RETRY_DUE, str(due_ms).encode()),
        (RETRY_SOURCE, f"{record.topic}:{record.partition}:{record.offset}".encode()),
    ]


def retry_count(record: Record) -> int:
    """The retries ``record`` has had, from its ``retry_count`` header (0 without one)."""
    raw = record.header(RETRY_COUNT)
    return int(raw) if raw is not None and raw.isdigit() else 0


class HeldRetries:
    """Records of delay topics a stage has read and not yet released, per delay partition, in order.

    ``add`` queues records; ``release(now_ms)`` returns, per partition, the leading records that are
    ready: the stage's own once due, the other stages' at once (they are only committed past). A
    record waits only behind records of its own delay partition, which were due before it.
    Used from the stage's thread only."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._queues: dict[tuple[str, int], deque[tuple[Record, int | None]]] = {}

    def add(self, records: Iterable[Record]) -> None:
        for r in records:
            info = retry_info(r)
            due = info.due_ms if info is not None and info.stage == self.stage else None
            self._queues.setdefault((r.topic, r.partition), deque()).append((r, due))

    def release(self, now_ms: int) -> list[Record]:
        out: list[Record] = []
        for tp in list(self._queues):
            queue = self._queues[tp]
            while queue and (queue[0][1] is None or queue[0][1] <= now_ms):
                out.append(queue.popleft()[0])
            if not queue:
                del self._queues[tp]
        return out

    def next_due_ms(self) -> int | None:
        """When the first held record is due, or None when nothing is held."""
        heads = [q[0][1] for q in self._queues.values() if q]
        return min((d if d is not None else 0 for d in heads), default=None)

    def drop(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Forget the records of partitions this stage no longer owns (their new owner reads them)."""
        for tp in partitions:
            self._queues.pop(tp, None)

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())


@runtime_checkable
class PausesInputs(Protocol):
    """A consumer that can stop fetching some topics' assigned partitions for a while (Kafka's)."""

    def pause(self, topics: Sequence[str]) -> None: ...

    def resume(self, topics: Sequence[str]) -> None: ...


class AwaitedRetries:
    """When the retries a stage sent fall due, until it has read them back from the delay topics.

    Why: on Kafka a consumer has one local queue for all its partitions (librdkafka's), and it
    prefetches; a retry record fetched while the queue holds a backlog of the inputs waits behind
    all of it (a stage 5,000 messages behind read its 1 s retry 6 s late). So from the time one of
    its retries is due until it has read it back, a stage pauses its input partitions: pausing drops
    what was prefetched of them (librdkafka fetches them again from the consumed position on
    resume, so nothing is lost or read twice) and the retry comes next. It waits at most
    ``AWAIT_MAX_MS`` past the due time. Cost: a pass over the distinct due times of the last few
    seconds per poll. Used from the stage's thread only."""

    def __init__(self) -> None:
        self._due: Counter[int] = Counter()  # due time (ms) -> retries sent for it, not read back
        self.paused = False

    def sent(self, due_ms: int) -> None:
        self._due[due_ms] += 1

    def steer(self, consumer: object, inputs: Sequence[str], now_ms: int) -> None:
        """Pause ``consumer``'s inputs while a retry is due and not read back, resume them after
        (nothing for a consumer that cannot pause: the embedded bus reads its partitions in turn,
        without a shared prefetched queue)."""
        if not isinstance(consumer, PausesInputs):
            return
        waiting = self.waiting(now_ms)
        if waiting != self.paused:
            (consumer.pause if waiting else consumer.resume)(inputs)
            self.paused = waiting

    def read(self, records: Iterable[Record], stage: str) -> None:
        """Forget the retries of ``stage`` among ``records`` (read back from a delay topic)."""
        for r in records:
            info = retry_info(r)
            if info is not None and info.stage == stage and self._due[info.due_ms] > 0:
                self._due[info.due_ms] -= 1
                if not self._due[info.due_ms]:
                    del self._due[info.due_ms]

    def waiting(self, now_ms: int) -> bool:
        """True while a retry is due and not read back (dropping those waited for too long)."""
        for d in [d for d in self._due if d + AWAIT_MAX_MS <= now_ms]:
            del self._due[d]
        return any(d <= now_ms for d in self._due)

    def next_due_ms(self, now_ms: int) -> int | None:
        """When the first retry not yet due falls due, or None."""
        return min((d for d in self._due if d > now_ms), default=None)

    def clear(self) -> None:
        """Forget everything (a new consumer: nothing is paused, what it reads comes from the commit)."""
        self._due.clear()
        self.paused = False
