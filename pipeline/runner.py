"""Runs stages and sources as threads: polling, batching, commits, retries, dead letters, health.

A stage is a small class whose ``process`` (or, for sinks, ``process_batch``) turns input
messages into output messages. The runner owns everything around it:

* it decodes and validates each record; a record that breaks a rule goes to ``<topic>_dlq``
  with the reason, the source topic/partition/offset and the retry count, and the batch goes on;
* ``TransientError`` is retried with exponential backoff; anything else is isolated to the one
  message that raised it, which is dead-lettered;
* outputs are flushed before the input offsets are committed (at-least-once; sinks upsert by id);
* on an unexpected failure it closes the consumer and starts again from the last commit.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import orjson

from pipeline.bus.base import Bus, Consumer, Latency, OffsetReset, Producer, Record
from pipeline.errors import BadMessageError, TransientError, Violation
from pipeline.messages import DeadLetter, Message, check_fresh, decode, encode, model_for
from pipeline.topics import dlq_name

log = logging.getLogger(__name__)

FEED_HEADER = "feed"
REPLAY = b"replay"
REPLAY_HEADERS = [(FEED_HEADER, REPLAY)]

# What a stage returns: a message, or a message with the headers to publish it with.
Output = Message | tuple[Message, list[tuple[str, bytes]]]


@dataclass
class Health:
    """What a worker reports; ``snapshot()`` returns a copy safe to read from any thread."""

    name: str
    kind: str
    running: bool = False
    processed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    errors: int = 0
    last_error: str | None = None
    lag: int = 0
    started_at: float | None = None
    last_activity_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> Health:
        with self.lock:
            return replace(self, lock=threading.Lock())

    def error(self, message: str) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = message


class Stage:
    """Base of a consumer stage. Subclasses set ``name`` and ``inputs`` and override a method.

    ``process`` and ``process_batch`` run on the stage's own thread, one batch at a time.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    offset_reset: ClassVar[OffsetReset] = "earliest"
    # The model of every input; None means each input topic's own model from the catalog.
    input_model: ClassVar[type[Message] | None] = None
    # A failed batch is processed again one message at a time to dead-letter only the one that
    # fails. A stage with state across messages cannot take a batch twice: it sets this False, and
    # a failure restarts it from the last commit instead (it then rebuilds its state).
    isolates_failures: ClassVar[bool] = True
    # "low" for the stages on the path from a tick to its order: on Kafka their clients never wait
    # to gather a batch (pipeline.bus.base.Latency); "batch" for stages that move thousands a second.
    latency: ClassVar[Latency] = "batch"

    @property
    def group_id(self) -> str:
        return self.name

    def prepare(self, message: Message) -> Any:
        """Check one message further before batching (pure); raise ``BadMessageError`` to
        dead-letter it alone. What this returns is what ``process_batch`` receives."""
        return message

    def prepare_record(self, message: Message, record: Record) -> Any:
        """Like ``prepare``, for stages that need the record too (its headers, its offset)."""
        return self.prepare(message)

    def bind(self, runner: StageRunner) -> None:
        """Called by the runner that runs this stage, before anything else."""
        self._runner = runner

    def reject(self, record: Record, exc: Exception) -> None:
        """Dead-letter ``record`` from inside ``process_batch``: for stateful stages, whose batch the
        runner must not split and process again to isolate a bad message."""
        self._runner.dead_letter(record, exc, retries=0)

    def close(self) -> None:
        """Called once when the runner stops; release what the stage started."""

    def status(self) -> dict[str, Any]:
        """What a page shows of this stage beyond its counters (JSON-able; called from another thread,
        so return copies)."""
        return {}

    def process(self, message: Any) -> Sequence[Output]:
        """Return the messages that ``message`` produces (pure; may raise ``BadMessageError``).
        ``message`` is what ``prepare`` returned (the decoded message by default)."""
        return []

    def process_batch(self, messages: list[Any]) -> Sequence[Output]:
        """Return the outputs of a batch; sinks override this to write in one transaction."""
        out: list[Output] = []
        for m in messages:
            out.extend(self.process(m))
        return out


class Worker:
    """A thread with a stop event and health. Subclasses implement ``_run``."""

    kind = "worker"

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = Health(name=name, kind=self.kind)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self.health.lock:  # running from now on, so a status published right away says so
            self.health.running = True
            self.health.started_at = time.time()
        self._thread = threading.Thread(target=self._guarded, name=f"{self.kind}:{self.name}", daemon=True)
        self._thread.start()

    def status(self) -> dict[str, Any]:
        """What a page shows of this worker beyond its health (JSON-able; called from another thread)."""
        return {}

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _guarded(self) -> None:
        with self.health.lock:
            self.health.running = True
            self.health.started_at = self.health.started_at or time.time()
        try:
            self._run()
        except Exception as exc:  # a crashed worker shows in health instead of vanishing
            log.exception("%s %s stopped", self.kind, self.name)
            self.health.error(f"{type(exc).__name__}: {exc}")
        finally:
            with self.health.lock:
                self.health.running = False

    def _run(self) -> None:
        raise NotImplementedError


class StageRunner(Worker):
    """Runs one stage as a member of its consumer group on its own thread."""

    kind = "stage"

    def __init__(
        self,
        stage: Stage,
        bus: Bus,
        *,
        max_batch: int = 2000,
        poll_timeout: float = 0.5,
        max_retries: int = 4,
        backoff_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        fill_wait_s: float = 0.0,
    ) -> None:
        super().__init__(stage.name)
        self.stage = stage
        self.bus = bus
        self.max_batch = max_batch
        self.poll_timeout = poll_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.clock = clock
        # With fill_wait_s > 0 a batch is handled once it has max_batch records or its first record
        # waited fill_wait_s (seed 004's BATCH_SIZE plus a maximum wait); 0 handles what one poll gives.
        self.fill_wait_s = fill_wait_s
        self._models = {t: stage.input_model or model_for(t) for t in stage.inputs}
        self._producer: Producer = bus.producer(stage.latency)
        stage.bind(self)

    def status(self) -> dict[str, Any]:
        return self.stage.status()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                consumer = self.bus.consumer(
                    self.stage.group_id,
                    self.stage.inputs,
                    auto_offset_reset=self.stage.offset_reset,
                    latency=self.stage.latency,
                )
                try:
                    self._consume(consumer)
                except Exception as exc:
                    log.exception("stage %s failed; restarting from the last commit", self.name)
                    self.health.error(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(self.backoff_s * 10)
                finally:
                    consumer.close()
        finally:
            self.stage.close()

    def _consume(self, consumer: Consumer) -> None:
        last_lag = 0.0
        first = True
        while not self._stop.is_set():
            records = consumer.poll(self.max_batch, self.poll_timeout)
            if records and self.fill_wait_s > 0:
                records = self._fill(consumer, list(records))
            if records:
                self.handle(records)
                if self._producer.flush(30.0):
                    raise TransientError("outputs not delivered; not committing")
                consumer.commit(records)
                with self.health.lock:
                    self.health.processed += len(records)
                    self.health.last_activity_at = time.time()
            if time.monotonic() - last_lag > 2.0 or (first and records):
                first = first and not records
                last_lag = time.monotonic()
                # Everything polled is processed: commit the positions of quiet partitions too, so
                # a restart of a group that starts at the topics' end resumes from here.
                consumer.commit()
                lag = consumer.lag()
                with self.health.lock:
                    self.health.lag = lag

    def _fill(self, consumer: Consumer, records: list[Record]) -> list[Record]:
        """Poll more until the batch is full or its first record waited ``fill_wait_s``."""
        deadline = time.monotonic() + self.fill_wait_s
        while len(records) < self.max_batch and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            records.extend(consumer.poll(self.max_batch - len(records), left))
        return records

    def handle(self, records: Sequence[Record]) -> None:
        """Validate, process and publish one batch; dead-letter what cannot be processed."""
        now_ms = int(self.clock() * 1000)
        good: list[tuple[Record, Any]] = []
        for r in records:
            try:
                msg = decode(r.topic, r.value or b"", self._models[r.topic])
                if r.header(FEED_HEADER) != REPLAY:
                    check_fresh(msg, now_ms)
                good.append((r, self.stage.prepare_record(msg, r)))
            except BadMessageError as exc:
                self.dead_letter(r, exc, retries=0)
        if good:
            self._publish(self._process(good))

    def _process(self, items: list[tuple[Record, Any]]) -> list[Output]:
        try:
            return self._with_retries([m for _, m in items])
        except Exception as exc:
            if not self.stage.isolates_failures:
                raise
            if len(items) == 1:
                retries = self.max_retries if isinstance(exc, TransientError) else 0
                self.dead_letter(items[0][0], exc, retries=retries)
                return []
        out: list[Output] = []
        for item in items:  # isolate the message that fails; the rest go on
            out.extend(self._process([item]))
        return out

    def _with_retries(self, messages: list[Any]) -> list[Output]:
        for attempt in range(self.max_retries + 1):
            try:
                return list(self.stage.process_batch(messages))
            except TransientError as exc:
                if attempt == self.max_retries:
                    raise
                self.health.error(f"retry {attempt + 1}: {exc}")
                self._stop.wait(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _publish(self, messages: Sequence[Output]) -> None:
        for m in messages:
            if isinstance(m, tuple):  # (message, headers): e.g. outputs of replayed input stay replays
                m, headers = m
                self._producer.produce(m.topic, encode(m), key=m.key(), headers=headers)
            else:
                self._producer.produce(m.topic, encode(m), key=m.key())
        with self.health.lock:
            self.health.produced += len(messages)

    def dead_letter(self, record: Record, exc: Exception, retries: int) -> None:
        """Send ``record`` to its dead-letter topic with the reason and where it came from."""
        if not isinstance(exc, BadMessageError):
            log.warning(
                "stage %s dead-letters %s[%d]@%d: %s: %s\n%s",
                self.name,
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
                exc,
                traceback.format_exc(limit=3),
            )
        reason = publish_dead_letter(
            self._producer,
            exc,
            topic=record.topic,
            value=record.value or b"",
            stage=self.name,
            key=record.key,
            partition=record.partition,
            offset=record.offset,
            retries=retries,
        )
        with self.health.lock:
            self.health.dead_lettered += 1
            self.health.last_error = f"{record.topic}[{record.partition}]@{record.offset}: {reason}"


def publish_dead_letter(
    producer: Producer,
    exc: Exception | str,
    *,
    topic: str,
    value: bytes | str,
    stage: str,
    key: bytes | None = None,
    partition: int = -1,
    offset: int = -1,
    retries: int = 0,
) -> str:
    """Produce a ``DeadLetter`` for ``value`` (bytes of ``topic``, or a raw frame a source could not
    turn into a message: then partition and offset are -1) on ``<topic>_dlq``; return the reason."""
    if isinstance(exc, str):
        exc = BadMessageError(exc)
    if isinstance(exc, BadMessageError):
        violations = exc.violations
        reason = str(exc)
    else:
        violations = [Violation("", None, f"{type(exc).__name__}: {exc}")]
        reason = f"{type(exc).__name__}: {exc}"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    letter = DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_key=key.decode("utf-8", "replace") if key is not None else None,
        value=text,
        reason=reason,
        violations=[{"field": v.field, "value": _jsonable(v.value), "rule": v.rule} for v in violations],
        stage=stage,
        retry_count=retries,
        failed_at=int(time.time() * 1000),
    )
    producer.produce(dlq_name(topic), encode(letter), key=key)
    return reason


def _jsonable(value: object) -> object:
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        return repr(value)
