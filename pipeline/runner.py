"""Runs stages and sources as threads: polling, batching, commits, retries, dead letters, health.

A stage is a small class whose ``process`` (or, for sinks, ``process_batch``) turns input
messages into output messages. The runner owns everything around it:

* it decodes, validates and prepares each record; a record that raises anything there (a broken
  rule, or any other exception, named in the letter) goes to ``<topic>_dlq`` with the reason, the
  source topic/partition/offset and the retry count, and the batch goes on. The good records
  before it are processed and flushed and its offset is committed at once, so a restart never
  dead-letters it a second time (one extra flush and commit per bad record, none for good ones);
* ``TransientError`` is retried without blocking the partition where the bus has the input's
  delay topics (``pipeline.retry``, seed 003: after 1, 2 and 4 s from ``<topic>_retry_1s``, ``_2s``,
  ``_4s``, then the dead-letter topic), else in place with exponential backoff; anything else is
  isolated to the one message that raised it, which is dead-lettered. A stage that cannot take its
  messages out of order (``isolates_failures = False``) always retries in place;
* outputs are durable before the input offsets are committed (at-least-once; sinks upsert by id;
  ``Consumer.commit_after``), or, for a stage that sets ``commit_on_delivery``, the offsets are
  committed once the outputs are acknowledged, in batch order, while the next batch is already
  polled (``pipeline.delivered_commits``);
* on an unexpected failure it closes the consumer and starts again from the last commit.

About 570 lines: the stage base, the worker base and the runner's one loop (poll, retries, dead
letters, commits) belong together; the retry bookkeeping is apart in ``pipeline.retry`` and the
queue of commits waiting for their outputs' delivery in ``pipeline.delivered_commits``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from pipeline.bus.base import Bus, Consumer, Latency, OffsetReset, Outgoing, Producer, Record, delivery_of
from pipeline.bus.client_metrics import Figures, counted_consumer, counted_producer, figures_of, merge
from pipeline.dead_letters import publish_dead_letter
from pipeline.delivered_commits import DeliveredCommits
from pipeline.errors import BadMessageError, CommitFailedError, ConfigError, TransientError
from pipeline.messages import Message, check_fresh, decode, encode, model_for
from pipeline.retry import MAX_RETRIES, AwaitedRetries, HeldRetries, origin, retry_count, retry_headers, retry_info
from pipeline.topics import RETRY_DELAYS_S, retry_name, retry_names
from pipeline.worker_health import Health

log = logging.getLogger(__name__)

# How long a poll may wait while a batch's outputs are on their way: their offsets are committed
# at the next look (a few milliseconds after the acknowledgements, never minutes later).
SETTLE_WAIT_S = 0.005
# While a batch fills (``fill_wait_s``), how long after a poll that found records the next one
# waits: a full batch is seen within this, and a busy input costs a poll per look, not per record.
FILL_LOOK_S = 0.005

FEED_HEADER = "feed"
REPLAY = b"replay"
REPLAY_HEADERS = [(FEED_HEADER, REPLAY)]

# What a stage returns: a message, or a message with the headers to publish it with.
Output = Message | tuple[Message, list[tuple[str, bytes]]]
HandOver = Literal["batch", "each"]


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
    # Send each batch's offset commit without waiting for it (after its outputs are durable, as
    # always): on Kafka a commit is a round trip to the group coordinator (about 2-6 ms here) that
    # the next batch otherwise waits for. A failed commit raises from the next one; after a crash
    # the batches whose commits were in flight come again, so only a stage whose outputs may be
    # published twice sets it (ml: a signal repeated after a crash makes, at most, an order of the
    # id the first one made, decision_order_id, and the exchange takes an order id once).
    commit_async: ClassVar[bool] = False
    # Poll and process the next batch without flushing: a batch's input offsets are committed once
    # the bus has acknowledged all its outputs, in batch order (pipeline.delivered_commits), and
    # everything is flushed and committed before partitions are given up and when the runner stops.
    # On Kafka a flush is a broker round trip (a few ms) that the next poll otherwise waits for: a
    # burst of ticks arrives in two or three polls. After a crash the batches not yet committed come
    # again, as with commit_async. Only where the producer gives delivery handles (Kafka's); on the
    # embedded bus the offsets go behind the outputs instead (Consumer.commit_after).
    commit_on_delivery: ClassVar[bool] = False

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

    def client_metrics(self) -> Figures:
        """Its bus clients' metrics (``pipeline.bus.client_metrics``; called from another thread)."""
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
    # How a batch's outputs reach the producer: "batch", together (``Producer.produce_many``: on the
    # embedded bus one commit and one wake-up); "each", one ``produce`` each, as before
    # (``bench.signals --hand-over both`` compares them).
    hand_over: ClassVar[HandOver] = "batch"

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
        fill_when_busy: bool = False,
        retry_topics: bool | None = None,
    ) -> None:
        """``retry_topics``: retry transient failures from the inputs' delay topics (True), in place
        (False), or from the delay topics when the bus has them (None). ``clock`` gives the time that
        freshness and retry delays are measured with."""
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
        # fill_when_busy: gather only while the input is busy (the last batch was handled less than
        # fill_wait_s ago); a record after a quiet spell is handled at once, never waiting for company.
        self.fill_when_busy = fill_when_busy
        self._handled_at = -math.inf  # perf_counter at the end of the last batch handled
        self._models = {t: stage.input_model or model_for(t) for t in stage.inputs}
        self._producer: Producer = counted_producer(bus.producer(stage.latency))
        self.retry_topics = retry_topics
        self._delay_topics: frozenset[str] | None = None  # decided on the stage's thread at start
        self._held = HeldRetries(stage.name)
        self._awaited = AwaitedRetries()  # its retries not read back yet: inputs paused once they are due
        self._consumer: Consumer | None = None  # the consumer of the batch being handled
        self._member: Consumer | None = None  # the consumer of this run, for its client metrics
        self._delivered = DeliveredCommits()  # batches whose offsets wait for their outputs' delivery
        # How long the periodic commit of every position waits for a moment with no batch on its
        # way before it flushes to make one (a stage under constant load never pauses).
        self.positions_overdue_s = 2.0
        stage.bind(self)

    @property
    def waiting_retries(self) -> int:
        """Records of delay topics read and held until they are due (a page shows it)."""
        return len(self._held)

    def _decide_retries(self) -> frozenset[str]:
        """The delay topics this stage reads: those of its inputs, when it retries from them."""
        if self._delay_topics is None:
            wanted = [n for t in self.stage.inputs for n in retry_names(t)]
            use = self.retry_topics is not False and self.stage.isolates_failures and bool(wanted)
            if use and self.retry_topics is None:
                use = {t.name for t in self.bus.describe_topics(wanted)} >= set(wanted)
            elif use and {t.name for t in self.bus.describe_topics(wanted)} < set(wanted):
                raise ConfigError(f"stage {self.name}: the delay topics of its inputs are missing (init-topics)")
            self._delay_topics = frozenset(wanted if use else ())
            for t in self.stage.inputs:
                for n in retry_names(t) if use else ():
                    self._models[n] = self._models[t]
        return self._delay_topics

    def status(self) -> dict[str, Any]:
        return self.stage.status()

    def client_metrics(self) -> Figures:
        figures = merge([figures_of(self._producer), figures_of(self._member)])
        if figures and figures.get("lag") is None:  # a bus without client statistics: the runner's own
            figures["lag"] = self.health.snapshot().lag
        return figures

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    delays = sorted(self._decide_retries())
                except ConfigError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a young topic without a leader yet, a busy broker
                    self.health.error(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(self.backoff_s * 10)
                    continue
                self._held = HeldRetries(self.stage.name)  # a new member reads from the last commit
                self._awaited.clear()
                self._delivered.clear()
                consumer = counted_consumer(
                    self.bus.consumer(
                        self.stage.group_id,
                        [*self.stage.inputs, *delays],
                        auto_offset_reset=self.stage.offset_reset,
                        on_revoke=self._revoked,
                        latency=self.stage.latency,
                    )
                )
                self._member = consumer
                try:
                    self._consume(consumer)
                except Exception as exc:
                    log.exception("stage %s failed; restarting from the last commit", self.name)
                    self.health.error(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(self.backoff_s * 10)
                finally:
                    self._drain(consumer)
                    consumer.close()
        finally:
            self.stage.close()

    def _revoked(self, parts: list[tuple[str, int]]) -> None:
        """Partitions go to another member: drop their held retries, and commit every batch whose
        outputs are delivered before they go (called inside a poll, on this thread)."""
        self._held.drop(parts)
        if len(self._delivered) and self._member is not None:
            self._drain(self._member)

    def _drain(self, consumer: Consumer) -> None:
        """Flush and commit what is safe of the batches waiting for their outputs' delivery; a
        failure is kept for the next commit point to raise (never raised into a bus callback)."""
        try:
            self._delivered.drain(self._producer, lambda records: self._store(consumer, records))
        except Exception as exc:  # noqa: BLE001 - the next settle raises it (or a new member starts over)
            self.health.error(f"{type(exc).__name__}: {exc}")

    def _consume(self, consumer: Consumer) -> None:
        last_lag = 0.0
        first = True
        positions_due: float | None = None  # since when every position is due for a commit
        while not self._stop.is_set():
            self._settle(consumer)
            now_ms = int(self.clock() * 1000)
            self._awaited.steer(consumer, self.stage.inputs, now_ms)
            held = self._held.next_due_ms()
            # a held retry that is due goes first, in a batch of its own, not behind a poll of the inputs
            records = [] if held is not None and held <= now_ms else consumer.poll(self.max_batch, self._poll_wait())
            polled_at = time.perf_counter()
            if records and self.fill_wait_s > 0 and self._fills(polled_at):
                records = self._fill(consumer, list(records))
            records, passed = self._due(records)
            if records or passed:
                self._consumer = consumer
                self.handle(records)
                self._commit(consumer, [*records, *passed])
                with self.health.lock:
                    self.health.processed += len(records)
                    self.health.last_activity_at = time.time()
                    self.health.batch_done(time.perf_counter() - polled_at)
                self._handled_at = time.perf_counter()
            if time.monotonic() - last_lag > 2.0 or (first and records):
                first = first and not records
                last_lag = time.monotonic()
                # Everything polled is processed: commit the positions of quiet partitions too, so
                # a restart of a group that starts at the topics' end resumes from here (not while
                # a delay topic's record is held: its position is past it; nor while a batch's
                # outputs are on their way: its offsets go first, a moment later, or after a flush
                # when the stage never pauses).
                if not len(self._held):
                    positions_due = positions_due or last_lag
                try:
                    lag = consumer.lag()
                except Exception as exc:  # noqa: BLE001 - the lag is a figure for pages, never a reason to stop
                    self.health.error(f"lag unknown: {type(exc).__name__}: {exc}")
                else:
                    with self.health.lock:
                        self.health.lag = lag
            if positions_due is not None and (
                not len(self._delivered) or time.monotonic() - positions_due > self.positions_overdue_s
            ):
                positions_due = None
                self._drain(consumer)
                self._settle(consumer)
                self._commit(consumer, None)

    def _settle(self, consumer: Consumer) -> None:
        """Commit past the batches whose outputs are delivered; raise ``TransientError`` at one with
        an undelivered output (its failures are then taken from the producer: reported once)."""
        try:
            self._delivered.settle(lambda records: self._store(consumer, records))
        except TransientError:
            self._producer.flush(30.0)
            raise

    def _commit(self, consumer: Consumer, records: Sequence[Record] | None) -> None:
        """Make every output durable, then commit past ``records`` (None: every position): one call,
        ``Consumer.commit_after`` (on the embedded bus the offsets ride in the outputs' own writer
        transaction, so a batch waits for one writer round trip, not two).

        A commit refused because the group rebalanced (a broker restart expires every member) is
        not a failure for a stage that can take a message twice: what it processed comes again to
        whoever owns the partition now, and the consumer is already rejoining. Closing it and
        starting again would rebalance the group once more and, with every member doing the same,
        keep it rebalancing. A stage with state across messages still starts again (it must
        rebuild that state from the last commit)."""
        if records is not None and self.stage.commit_on_delivery:
            delivery = delivery_of(self._producer)
            if delivery is not None:
                self._delivered.add(delivery, records)
                return
        self._store(consumer, records, after_outputs=True)

    def _store(self, consumer: Consumer, records: Sequence[Record] | None, *, after_outputs: bool = False) -> None:
        """Commit past ``records`` (None: every position) under the policy ``_commit`` states: with
        ``after_outputs`` once this runner's outputs are durable (``Consumer.commit_after``, which
        raises ``OutputsNotDelivered`` when one was not delivered), else theirs are already."""
        try:
            if records is None:
                consumer.commit(None)
            elif after_outputs:
                consumer.commit_after(self._producer, records, asynchronous=self.stage.commit_async)
            else:
                consumer.commit(records, asynchronous=self.stage.commit_async)
        except CommitFailedError as exc:
            if not self.stage.isolates_failures:
                raise
            self.health.error(f"{type(exc).__name__}: {exc}")

    def _poll_wait(self) -> float:
        """How long a poll may wait: the poll timeout, or less when a held retry (or one this stage sent)
        falls due sooner."""
        now_ms = int(self.clock() * 1000)
        dues = [d for d in (self._held.next_due_ms(), self._awaited.next_due_ms(now_ms)) if d is not None]
        if len(self._delivered):
            return min(SETTLE_WAIT_S, self.poll_timeout)  # a held retry due sooner comes at the next look
        if not dues:
            return self.poll_timeout
        due = min(dues)
        return min(self.poll_timeout, max(due / 1000 - self.clock(), 0.0))

    def _due(self, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """Split a poll into the records to handle now (the inputs' and this stage's retries that
        are due) and the other stages' retries, only committed past; hold the retries not due."""
        delays = self._delay_topics or frozenset()
        if not delays:
            return list(records), []
        now: list[Record] = [r for r in records if r.topic not in delays]
        self._held.add(r for r in records if r.topic in delays)
        self._awaited.read((r for r in records if r.topic in delays), self.name)
        passed: list[Record] = []
        for r in self._held.release(int(self.clock() * 1000)):
            info = retry_info(r)
            (now if info is not None and info.stage == self.name else passed).append(r)
        return now, passed

    def _fills(self, polled_at: float) -> bool:
        """Whether a poll's records wait for more: always with a fill wait, or only while the input
        is busy (``fill_when_busy``)."""
        return not self.fill_when_busy or polled_at - self._handled_at < self.fill_wait_s

    def _fill(self, consumer: Consumer, records: list[Record]) -> list[Record]:
        """Poll more until the batch is full or its first record waited ``fill_wait_s``. After a
        poll that found something, the next look comes ``FILL_LOOK_S`` later, not at the next
        record's wake-up: a stream of one record a millisecond is gathered in a few polls instead
        of one poll per record (each a read of the log and a turn at the interpreter's lock)."""
        deadline = time.monotonic() + self.fill_wait_s
        while len(records) < self.max_batch and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = consumer.poll(self.max_batch - len(records), left)
            records.extend(more)
            if more:
                self._stop.wait(min(FILL_LOOK_S, max(deadline - time.monotonic(), 0.0)))
        return records

    def handle(self, records: Sequence[Record]) -> None:
        """Validate, process and publish one batch; dead-letter what cannot be decoded or prepared.

        Any exception while decoding or preparing a record dead-letters that record alone, with the
        exception named. When the batch came from this runner's consumer, the records up to a
        dead-lettered one are processed first and then committed through it (outputs flushed
        first), so a restart after a later failure in the batch does not dead-letter it again."""
        now_ms = int(self.clock() * 1000)
        good: list[tuple[Record, Any]] = []
        for i, polled in enumerate(records):
            info = retry_info(polled) if self._delay_topics and polled.topic in self._delay_topics else None
            r = origin(polled, info) if info is not None else polled  # from here on, as on its source topic
            try:
                msg = decode(r.topic, r.value or b"", self._models[r.topic])
                if r.header(FEED_HEADER) != REPLAY:
                    check_fresh(msg, now_ms)
                good.append((r, self.stage.prepare_record(msg, r)))
            except Exception as exc:  # noqa: BLE001 - one message must never stop the stage: it is dead-lettered
                if good:
                    self._publish(self._process(good))
                    good = []
                self.dead_letter(r, exc, retries=0)
                if self._consumer is not None:
                    self._commit(self._consumer, records[: i + 1])
        if good:
            self._publish(self._process(good))

    def _process(self, items: list[tuple[Record, Any]]) -> list[Output]:
        try:
            return self._with_retries([m for _, m in items])
        except Exception as exc:
            if not self.stage.isolates_failures:
                raise
            if len(items) == 1:
                if isinstance(exc, TransientError) and self._delay_topics:
                    self.retry(items[0][0], exc)
                    return []
                retries = self.max_retries if isinstance(exc, TransientError) else 0
                self.dead_letter(items[0][0], exc, retries=retries)
                return []
        out: list[Output] = []
        for item in items:  # isolate the message that fails; the rest go on
            out.extend(self._process([item]))
        return out

    def _with_retries(self, messages: list[Any]) -> list[Output]:
        # With delay topics a failure is retried from them, never here: nothing waits on the partition.
        tries = 0 if self._delay_topics else self.max_retries
        for attempt in range(tries + 1):
            try:
                return list(self.stage.process_batch(messages))
            except TransientError as exc:
                if attempt == tries:
                    raise
                self.health.error(f"retry {attempt + 1}: {exc}")
                self._stop.wait(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _publish(self, messages: Sequence[Output]) -> None:
        """Encode a batch's outputs, then hand them to the producer together (``produce_many``)."""
        out: list[Outgoing] = []
        for m in messages:
            if isinstance(m, tuple):  # (message, headers): e.g. outputs of replayed input stay replays
                m, headers = m
                out.append((m.topic, encode(m), m.key(), headers))
            else:
                out.append((m.topic, encode(m), m.key(), None))
        if self.hand_over == "batch":
            self._producer.produce_many(out)
        else:
            for topic, value, key, hs in out:
                self._producer.produce(topic, value, key, hs)
        with self.health.lock:
            self.health.produced += len(messages)

    def retry(self, record: Record, exc: Exception) -> None:
        """Send ``record`` (as on its source topic) to its next delay topic, or to its dead-letter
        topic after ``MAX_RETRIES`` retries."""
        count = retry_count(record)
        if count >= MAX_RETRIES:
            self.dead_letter(record, exc, retries=count)
            return
        error = f"{type(exc).__name__}: {exc}"
        due_ms = int(self.clock() * 1000) + RETRY_DELAYS_S[count] * 1000
        headers = retry_headers(record, count=count + 1, error=error, stage=self.name, due_ms=due_ms)
        self._producer.produce(retry_name(record.topic, count), record.value, key=record.key, headers=headers)
        self._awaited.sent(due_ms)
        with self.health.lock:
            self.health.retried += 1
            self.health.last_error = f"{record.topic}[{record.partition}]@{record.offset}: retry {count + 1}: {error}"

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
