"""The bus on Apache Kafka through confluent-kafka (librdkafka).

Producers are idempotent with ``acks=all``; ``delivery()`` hands out a handle on what was produced
since the last one, done once librdkafka has reported each of those messages (its ``on_delivery``
callback counts them down; asking the handle serves the reports waiting). Consumers commit only
offsets the caller stored by saying the batch is durable: at once (``commit``), or,
asynchronously, by librdkafka's background commit within ``AUTO_COMMIT_MS``, whose failure raises
from the next ``commit``. Whatever was stored but not yet committed is committed when partitions
are revoked and when the consumer closes.

About 580 lines: the producer, the consumer and the bus with its admin calls are one backend of
the ``Bus`` contract and share its client settings; reads outside any group are already apart
(``pipeline.bus.kafka_reads``), and so are the delivery reports per handle (``pipeline.bus.kafka_delivery``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from pipeline.bus.base import (
    GROUP_HAS_MEMBERS,
    GROUP_NOT_FOUND,
    GroupPartition,
    GroupState,
    Latency,
    OffsetReset,
    Outgoing,
    PartitionsCallback,
    PartitionState,
    Record,
    TopicState,
)
from pipeline.bus.base import Producer as BusProducer
from pipeline.bus.client_metrics import STATS_INTERVAL_MS, Figures, from_librdkafka
from pipeline.bus.kafka_delivery import Share as _Share
from pipeline.bus.kafka_reads import KafkaReader, offsets_at, reset_group_offsets
from pipeline.errors import (
    CommitFailedError,
    ConfigError,
    OutputsNotDelivered,
    TransientError,
    UnknownPartitionError,
    UnknownTopicError,
)
from pipeline.topics import TopicSpec

log = logging.getLogger(__name__)

# Per latency profile (pipeline.bus.base.Latency), chosen with bench.hop (docs/benchmarks.md):
# * the producer's linger: "batch" waits up to 5 ms to fill a request; "low" sends at once (the
#   runner flushes or waits for the delivery reports after every batch anyway, so this matters for
#   sources that never flush);
# * the consumer's linger: after the first message of a poll, "batch" waits up to 5 ms for more
#   (one commit and one flush per batch), "low" takes only what has already arrived;
# * Nagle's algorithm off for "low": small requests are not held back waiting for an ACK.
# fetch.wait.max.ms is left at 100 for both: with fetch.min.bytes=1 the broker answers a fetch as
# soon as one message is there, so it only bounds how long an idle fetch is parked.
PRODUCER_LINGER_MS: dict[Latency, int] = {"low": 0, "batch": 5}
# How often a consumer's background commit sends the offsets an asynchronous commit stored. One
# OffsetCommit request per batch instead was measured worse than waiting for each: at 500 batches a
# second the coordinator (about 6 ms a commit on this machine under load) fell behind, and the
# fetches queued behind the commits on the same connection (tick -> signal p99 3.4 s).
AUTO_COMMIT_MS = 100
CONSUMER_LINGER_S: dict[Latency, float] = {"low": 0.0, "batch": 0.005}
LATENCY_CLIENT_CONFIG: dict[Latency, dict[str, Any]] = {
    "low": {"socket.nagle.disable": True},
    "batch": {},
}

_SHOWN_CONFIG = ("cleanup.policy", "retention.ms", "compression.type")


class KafkaProducer:
    """Publishes to Kafka. Thread-safe (librdkafka's producer is); ``delivery`` is for one thread."""

    def __init__(self, bus: KafkaBus, latency: Latency = "batch") -> None:
        self._bus = bus
        self._failed = 0
        self._delivery_errors = 0  # every failed delivery so far, for the client metrics
        self._failed_lock = threading.Lock()
        self._figures: Figures = {}
        self._producer = Producer(
            {
                **bus.client_config,
                **LATENCY_CLIENT_CONFIG[latency],
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": PRODUCER_LINGER_MS[latency],
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "compression.type": "lz4",
                "message.timeout.ms": 60_000,
                **bus.stats_config(self._on_stats),
            },
            logger=log,
        )
        self._since_poll = 0
        self._share = _Share(self)

    def delivery(self) -> _Share:
        """A handle on the messages produced since the previous one (``pipeline.bus.base.Delivery``):
        done once librdkafka has reported each of them (asking serves its waiting reports)."""
        share, self._share = self._share, _Share(self)
        return share

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            with self._failed_lock:  # reports may be served on another thread (client_metrics)
                self._failed += 1
                self._delivery_errors += 1
            log.error("kafka delivery failed: %s", err)

    def _on_stats(self, raw: str) -> None:
        self._figures = from_librdkafka(raw, "producer", send_errors=self._delivery_errors)

    def client_metrics(self) -> Figures:
        """The last statistics librdkafka reported (``pipeline.bus.client_metrics``); any thread.
        Serves the producer's pending callbacks first: its statistics come only with a poll, and a
        producer that has nothing more to send is not flushed again."""
        self._producer.poll(0)
        return self._figures

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self._bus._require_topic(topic)
        share = self._share
        with self._failed_lock:
            share.outstanding += 1  # before librdkafka can report it
        try:
            while True:
                try:
                    # librdkafka takes any sequence of (name, bytes) pairs; its stubs say list, so no copy is made
                    self._producer.produce(topic, value, key, headers=cast(Any, headers), on_delivery=share)
                    break
                except BufferError:  # local queue full: let librdkafka send, then retry
                    self._producer.poll(0.05)
        except BaseException:
            with self._failed_lock:
                share.outstanding -= 1  # never queued: nothing will report it
            raise
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._producer.poll(0)

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        for topic, value, key, headers in messages:  # librdkafka batches them for the broker itself
            self.produce(topic, value, key, headers)

    def flush(self, timeout: float = 30.0) -> int:
        remaining = self._producer.flush(timeout)
        with self._failed_lock:
            failed, self._failed = self._failed, 0
        return remaining + failed

    def close(self) -> None:
        self.flush()


class KafkaConsumer:
    """A member of a Kafka consumer group. Use from one thread only."""

    def __init__(
        self,
        bus: KafkaBus,
        group_id: str,
        topics: Sequence[str],
        auto_offset_reset: OffsetReset,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
        latency: Latency = "batch",
    ) -> None:
        for topic in topics:
            bus._require_topic(topic)
        self.group_id = group_id
        self._linger_s = CONSUMER_LINGER_S[latency]
        self._reset = auto_offset_reset
        self._on_assign_cb = on_assign
        self._on_revoke_cb = on_revoke
        self._assigned: set[tuple[str, int]] = set()
        self._figures: Figures = {}
        self._commit_failed: KafkaError | None = None
        self._consumer = Consumer(
            {
                **bus.client_config,
                **LATENCY_CLIENT_CONFIG[latency],
                "group.id": group_id,
                # Offsets are stored only by commit(), once the caller says the batch is durable;
                # librdkafka commits what is stored every AUTO_COMMIT_MS in the background (an
                # asynchronous commit is a store) and on close, and commit() does at once.
                "enable.auto.commit": True,
                "auto.commit.interval.ms": AUTO_COMMIT_MS,
                "enable.auto.offset.store": False,
                "auto.offset.reset": auto_offset_reset,
                "session.timeout.ms": bus.session_timeout_ms,
                "heartbeat.interval.ms": max(bus.session_timeout_ms // 3, 100),
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 100,
                "on_commit": self._on_commit,
                **bus.stats_config(self._on_stats),
            },
            logger=log,
        )
        self._consumer.subscribe(list(topics), on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost)

    def _on_stats(self, raw: str) -> None:
        self._figures = from_librdkafka(raw, "consumer")

    def client_metrics(self) -> Figures:
        """The last statistics librdkafka reported (``pipeline.bus.client_metrics``); any thread."""
        return self._figures

    def _assign(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in parts]
        self._assigned.update(tps)
        if self._on_assign_cb:
            self._on_assign_cb(tps)

    def _revoke(self, c: Consumer, parts: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in parts]
        if self._on_revoke_cb:
            self._on_revoke_cb(tps)
        try:  # offsets stored as durable but whose commit failed: commit them before leaving
            c.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit on revoke failed for %s: %s", self.group_id, exc)
        self._assigned.difference_update(tps)

    def _lost(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in parts]
        if self._on_revoke_cb:
            self._on_revoke_cb(tps)
        self._assigned.difference_update(tps)

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Record]:
        records: list[Record] = []
        # consume(n, t) waits until it has n messages or t passes; the contract is to wait only for
        # the first, so a quiet topic does not hold back a message for the whole timeout. After the
        # first, a short linger gathers a batch (commits and flushes are per batch, not per message).
        messages = self._consumer.consume(1, timeout)
        if messages and max_messages > 1:
            messages += self._consumer.consume(max_messages - 1, min(timeout, self._linger_s))
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise ConfigError(f"kafka consumer {self.group_id}: {err.str()}")
                log.warning("kafka consumer %s: %s", self.group_id, err.str())
                continue
            # A message without an error has its topic, partition and offset; headers are (str, bytes).
            records.append(
                Record(
                    cast(str, m.topic()),
                    cast(int, m.partition()),
                    cast(int, m.offset()),
                    m.key(),
                    m.value(),
                    m.timestamp()[1],
                    tuple(cast(Any, m.headers() or ())),
                )
            )
        return records

    def commit_after(self, producer: BusProducer, records: Iterable[Record], *, asynchronous: bool = False) -> None:
        undelivered = producer.flush(30.0)
        if undelivered:
            raise OutputsNotDelivered(undelivered)
        self.commit(records, asynchronous=asynchronous)

    def commit(self, records: Iterable[Record] | None = None, *, asynchronous: bool = False) -> None:
        failed, self._commit_failed = self._commit_failed, None
        if failed is not None:
            raise self._commit_error(failed)
        if records is None:
            # everything polled: the position of every assigned partition, including those that
            # had no records (as the embedded log does), so a restart of a group that starts at
            # the end does not skip what came in meanwhile
            assigned = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
            offsets = [tp for tp in self._consumer.position(assigned) if tp.offset >= 0] if assigned else []
            if not offsets:
                return
        else:
            last: dict[tuple[str, int], int] = {}
            for r in records:
                tp = (r.topic, r.partition)
                if r.offset + 1 > last.get(tp, -1):
                    last[tp] = r.offset + 1
            if not last:
                return
            offsets = [TopicPartition(t, p, o) for (t, p), o in last.items()]
        try:
            self._consumer.store_offsets(offsets=offsets)
            if not asynchronous:  # else the background commit sends it within AUTO_COMMIT_MS
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            raise self._commit_error(exc.args[0]) from None
        finally:
            if not asynchronous:  # it answers for itself and covers every commit sent before it
                self._commit_failed = None

    def _commit_error(self, err: KafkaError) -> Exception:
        if err.code() in (
            KafkaError.REBALANCE_IN_PROGRESS,
            KafkaError.ILLEGAL_GENERATION,
            KafkaError.UNKNOWN_MEMBER_ID,
            KafkaError._STATE,
        ):
            return CommitFailedError(f"commit failed in group {self.group_id}: {err.str()}")
        return TransientError(f"commit failed in group {self.group_id}: {err.str()}")

    def _on_commit(self, err: KafkaError | None, _parts: list[TopicPartition]) -> None:
        # librdkafka calls this from poll/consume/close on the consumer's thread, after every commit;
        # an asynchronous commit's failure is raised by the next commit.
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            self._commit_failed = err

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self._assigned)

    def pause(self, topics: Sequence[str]) -> None:
        """Stop fetching the assigned partitions of ``topics``; what was prefetched of them is dropped
        and fetched again from the consumed position on ``resume`` (``pipeline.retry.AwaitedRetries``)."""
        parts = [TopicPartition(t, p) for t, p in sorted(self._assigned) if t in topics]
        if parts:
            self._consumer.pause(parts)

    def resume(self, topics: Sequence[str]) -> None:
        """Fetch the assigned partitions of ``topics`` again."""
        parts = [TopicPartition(t, p) for t, p in sorted(self._assigned) if t in topics]
        if parts:
            self._consumer.resume(parts)

    def lag(self) -> int:
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        if not parts:
            return 0
        total = 0
        for tp in self._consumer.position(parts):
            # The high watermark comes with every fetch response: read the cached one, so a stage
            # asking for its lag does not stall on a broker round trip per partition. Ask the broker
            # only before the first fetch, or when the low watermark is needed.
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 or (tp.offset < 0 and self._reset != "latest"):
                _low, high = self._consumer.get_watermark_offsets(tp, timeout=2.0)
            if tp.offset >= 0:
                total += max(high - tp.offset, 0)
            else:
                committed = self._consumer.committed([TopicPartition(tp.topic, tp.partition)], timeout=2.0)
                reset = high if self._reset == "latest" else _low  # where this consumer starts without a commit
                start = committed[0].offset if committed and committed[0].offset >= 0 else reset
                total += max(high - start, 0)
        return total

    def close(self) -> None:
        self._consumer.close()  # commits what is stored and not committed yet, then leaves


class KafkaBus:
    """The bus on a Kafka cluster. Thread-safe."""

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_config: Mapping[str, str] | None = None,
        replication_factor: int = 1,
        session_timeout_ms: int = 10_000,
        connect_timeout_s: float = 10.0,
        stats_interval_ms: int = STATS_INTERVAL_MS,
    ) -> None:
        """``stats_interval_ms``: how often producers and consumers report librdkafka's statistics
        (``pipeline.bus.client_metrics``); 0 turns them off."""
        self.bootstrap_servers = bootstrap_servers
        self.client_config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, **(client_config or {})}
        self.replication_factor = replication_factor
        self.session_timeout_ms = session_timeout_ms
        self.stats_interval_ms = stats_interval_ms
        self._admin = AdminClient(self.client_config, logger=log)
        self._topics: set[str] = set()
        self._partition_counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._reader = KafkaReader(self.client_config)
        try:
            self._refresh_topics(connect_timeout_s)
        except KafkaException as exc:
            raise ConfigError(f"Kafka at {bootstrap_servers} is unreachable: {exc.args[0].str()}") from None

    def stats_config(self, callback: Callable[[str], None]) -> dict[str, Any]:
        """The client settings that hand librdkafka's statistics to ``callback`` (none when off)."""
        if self.stats_interval_ms <= 0:
            return {}
        return {"statistics.interval.ms": self.stats_interval_ms, "stats_cb": callback}

    def _refresh_topics(self, timeout: float = 10.0) -> None:
        meta = self._admin.list_topics(timeout=timeout)
        with self._lock:
            self._topics = set(meta.topics)
            self._partition_counts = {n: len(t.partitions) for n, t in meta.topics.items()}

    def _require_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        self._refresh_topics()
        if topic not in self._topics:
            raise UnknownTopicError(
                f"unknown topic {topic!r} on Kafka at {self.bootstrap_servers}: "
                "create it first (python -m pipeline init-topics)"
            )

    def create_topics(self, specs: Iterable[TopicSpec]) -> dict[str, bool]:
        specs = list(specs)
        futures = self._admin.create_topics(
            [NewTopic(s.name, s.partitions, self.replication_factor, config=s.kafka_config()) for s in specs],
            operation_timeout=30,
            request_timeout=30,
        )
        created: dict[str, bool] = {}
        for name, fut in futures.items():
            try:
                fut.result()
                created[name] = True
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise ConfigError(f"cannot create topic {name!r}: {exc.args[0].str()}") from None
                created[name] = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until every new partition has a leader
            meta = self._admin.list_topics(timeout=10)
            with self._lock:
                self._topics = set(meta.topics)
                self._partition_counts = {n: len(t.partitions) for n, t in meta.topics.items()}
            if all(
                s.name in meta.topics
                and meta.topics[s.name].partitions
                and all(p.leader >= 0 for p in meta.topics[s.name].partitions.values())
                for s in specs
            ):
                break
            time.sleep(0.1)
        return created

    def _offsets(self, parts: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, int]]:
        if not parts:
            return {}
        earliest = self._admin.list_offsets({tp: OffsetSpec.earliest() for tp in parts}, request_timeout=10)
        latest = self._admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}, request_timeout=10)
        return {(tp.topic, tp.partition): (earliest[tp].result().offset, latest[tp].result().offset) for tp in parts}

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicState]:
        meta = self._admin.list_topics(timeout=10)
        wanted = set(names) if names is not None else None
        topics = sorted(n for n in meta.topics if not n.startswith("__") and (wanted is None or n in wanted))
        parts = [TopicPartition(n, p) for n in topics for p in meta.topics[n].partitions]
        offsets = self._offsets(parts)
        configs: dict[str, dict[str, str]] = {}
        if topics:
            resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in topics]
            for res, fut in self._admin.describe_configs(resources, request_timeout=10).items():
                entries = fut.result()
                configs[res.name] = {k: entries[k].value for k in _SHOWN_CONFIG if k in entries}
        return [
            TopicState(
                n, [PartitionState(p, *offsets[(n, p)]) for p in sorted(meta.topics[n].partitions)], configs.get(n, {})
            )
            for n in topics
        ]

    def describe_groups(self) -> list[GroupState]:
        listing = self._admin.list_consumer_groups(request_timeout=10).result()
        ids = sorted(g.group_id for g in listing.valid)
        if not ids:
            return []
        described = {g: f.result() for g, f in self._admin.describe_consumer_groups(ids, request_timeout=10).items()}
        committed: dict[str, list[TopicPartition]] = {}
        for gid in ids:
            fut = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)], request_timeout=10)[gid]
            committed[gid] = [tp for tp in fut.result().topic_partitions if tp.offset >= 0]
        parts = {TopicPartition(tp.topic, tp.partition) for tps in committed.values() for tp in tps}
        offsets = self._offsets(sorted(parts, key=lambda tp: (tp.topic, tp.partition)))
        return [
            GroupState(
                gid,
                len(described[gid].members),
                [
                    GroupPartition(tp.topic, tp.partition, tp.offset, *offsets[(tp.topic, tp.partition)])
                    for tp in sorted(committed[gid], key=lambda x: (x.topic, x.partition))
                ],
            )
            for gid in ids
        ]

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(dict.fromkeys(group_ids))
        if not ids:
            return {}
        outcome: dict[str, str | None] = {}
        for gid, fut in self._admin.delete_consumer_groups(ids, request_timeout=10).items():
            try:
                fut.result()
                outcome[gid] = None
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.NON_EMPTY_GROUP:  # the broker checks: never deleted with members
                    outcome[gid] = GROUP_HAS_MEMBERS
                elif code == KafkaError.GROUP_ID_NOT_FOUND:
                    outcome[gid] = GROUP_NOT_FOUND
                else:
                    raise TransientError(f"cannot delete consumer group {gid!r}: {exc.args[0].str()}") from None
        return outcome

    def _check_partition(self, topic: str, partition: int) -> None:
        self._require_topic(topic)
        count = self._partition_counts.get(topic)
        if count is None or not 0 <= partition < count:
            self._refresh_topics()
            count = self._partition_counts.get(topic, 0)
        if not 0 <= partition < count:
            raise UnknownPartitionError(
                f"topic {topic!r} has partitions 0-{count - 1}; there is no partition {partition}"
            )

    def read(self, topic: str, partition: int, offset: int, max_messages: int = 100) -> list[Record]:
        self._check_partition(topic, partition)
        return self._reader.read(topic, partition, offset, max_messages)

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        self._check_partition(topic, 0)
        parts = [TopicPartition(topic, p) for p in range(self._partition_counts[topic])]
        found = offsets_at(self._admin, parts, timestamp_ms)
        missing = [tp for tp in parts if found[tp.partition] < 0]  # no record that recent: the end
        for (_, p), (_, end) in self._offsets(missing).items():
            found[p] = end
        return found

    def reset_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> str | None:
        for topic, partition in offsets:
            self._check_partition(topic, partition)
        return reset_group_offsets(self._admin, group_id, offsets)

    def producer(self, latency: Latency = "batch") -> KafkaProducer:
        return KafkaProducer(self, latency)

    def consumer(
        self,
        group_id: str,
        topics: Sequence[str],
        *,
        auto_offset_reset: OffsetReset = "earliest",
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        latency: Latency = "batch",
    ) -> KafkaConsumer:
        return KafkaConsumer(self, group_id, topics, auto_offset_reset, on_assign, on_revoke, latency)

    def close(self) -> None:
        """Close the reader; producers and consumers close themselves."""
        self._reader.close()
