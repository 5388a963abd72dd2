"""Client metrics of a stage's producer and consumer (seed 003): messages sent and send errors
(rates in Prometheus), request latency; messages consumed, fetch latency, lag; and messages and
bytes out and in per topic.

One shape for both buses, ``Figures`` (JSON-able, carried in ``stage_status.metrics["client"]`` so
a stage run as a process of its own is seen like a thread):

* On Kafka they come from librdkafka's statistics: the producer and consumer of
  ``pipeline.bus.kafka`` set ``statistics.interval.ms`` (``STATS_INTERVAL_MS``) and a ``stats_cb``
  that hands each JSON document to ``from_librdkafka``. Counters are librdkafka's own (``txmsgs``,
  ``rxmsgs``, per partition ``txbytes``/``rxbytes``; bytes are what librdkafka counts for the
  messages, key and value); send errors are deliveries reported failed; the latencies are the mean
  broker round trip (``rtt``) over the last interval of the producer's requests and of the
  consumer's (mostly fetches, so on a quiet topic it includes the broker's ``fetch.wait.max.ms``);
  the lag is the sum of ``consumer_lag`` (high watermark minus committed offset) of the assigned
  partitions.
* On the embedded bus ``CountingProducer`` and ``CountingConsumer`` count what passes through the
  client: messages and bytes (key + value) out and in per topic, and send errors (messages
  ``flush`` reports undelivered). Request and fetch latency have no meaning there (no broker, no
  request): they are None and not exported; the lag is the runner's own figure.

A counter starts from zero again when its client is made again (a stage restarted after a failure);
Prometheus's ``rate`` reads that as a reset. Cost: librdkafka builds and we parse one JSON document
per client per second (a few KB, under a millisecond); the embedded counters are one dictionary
update per produce and per polled record.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

from pipeline.bus.base import Consumer, Delivery, Outgoing, Producer, Record, delivery_of
from pipeline.errors import OutputsNotDelivered

STATS_INTERVAL_MS = 1000
Source = Literal["librdkafka", "embedded"]


class TopicFigures(TypedDict):
    """One topic's messages and bytes, out (produced) and in (consumed), by one stage's clients."""

    out_messages: int
    out_bytes: int
    in_messages: int
    in_bytes: int


class Figures(TypedDict, total=False):
    """A stage's client metrics; producer keys, consumer keys or both."""

    source: Source
    sent: int
    send_errors: int
    request_latency_s: float | None
    consumed: int
    fetch_latency_s: float | None
    lag: int | None
    topics: dict[str, TopicFigures]


def _topic() -> TopicFigures:
    return {"out_messages": 0, "out_bytes": 0, "in_messages": 0, "in_bytes": 0}


def _rtt_s(stats: Mapping[str, Any]) -> float | None:
    """The mean round trip of the requests to real brokers in the last interval, in seconds."""
    total = count = 0.0
    for b in stats.get("brokers", {}).values():
        if b.get("nodeid", -1) < 0:  # the logical coordinator's connection, or a bootstrap one
            continue
        rtt = b.get("rtt") or {}
        n = rtt.get("cnt", 0)
        if n > 0:
            total += rtt.get("avg", 0) * n
            count += n
    return total / count / 1e6 if count else None


def from_librdkafka(raw: str, role: Literal["producer", "consumer"], *, send_errors: int = 0) -> Figures:
    """The figures of one librdkafka statistics document (``stats_cb``'s argument)."""
    stats = json.loads(raw)
    topics: dict[str, TopicFigures] = {}
    lag = 0
    for name, t in stats.get("topics", {}).items():
        figures = topics.setdefault(name, _topic())
        for pid, p in t.get("partitions", {}).items():
            if pid == "-1":  # the unassigned-partition queue, no partition of the topic
                continue
            if role == "producer":
                figures["out_messages"] += p.get("txmsgs", 0)
                figures["out_bytes"] += p.get("txbytes", 0)
            else:
                figures["in_messages"] += p.get("rxmsgs", 0)
                figures["in_bytes"] += p.get("rxbytes", 0)
                if p.get("desired") and p.get("consumer_lag", -1) >= 0:
                    lag += p["consumer_lag"]
    if role == "producer":
        return {
            "source": "librdkafka",
            "sent": stats.get("txmsgs", 0),
            "send_errors": send_errors,
            "request_latency_s": _rtt_s(stats),
            "topics": topics,
        }
    return {
        "source": "librdkafka",
        "consumed": stats.get("rxmsgs", 0),
        "fetch_latency_s": _rtt_s(stats),
        "lag": lag,
        "topics": topics,
    }


def merge(parts: Iterable[Figures]) -> Figures:
    """One stage's figures from its producer's and its consumer's (topics added up)."""
    out: Figures = {}
    topics: dict[str, TopicFigures] = {}
    for part in parts:
        for key, value in part.items():
            if key != "topics":
                out[key] = value  # type: ignore[literal-required]  # keys of the same TypedDict
        for name, t in part.get("topics", {}).items():
            into = topics.setdefault(name, _topic())
            for k in ("out_messages", "out_bytes", "in_messages", "in_bytes"):
                into[k] += t[k]
    if topics:
        out["topics"] = topics
    return out


def figures_of(client: object) -> Figures:
    """A client's figures when it keeps them (``client_metrics()``), else none."""
    get = getattr(client, "client_metrics", None)
    return get() if callable(get) else {}


class CountingProducer:
    """A producer that counts what it sends, per topic (for buses without client statistics)."""

    def __init__(self, inner: Producer) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._topics: dict[str, TopicFigures] = {}
        self._sent = 0
        self._errors = 0

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self._inner.produce(topic, value, key, headers)
        with self._lock:
            t = self._topics.setdefault(topic, _topic())
            t["out_messages"] += 1
            t["out_bytes"] += len(value or b"") + len(key or b"")
            self._sent += 1

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        self._inner.produce_many(messages)
        with self._lock:
            for topic, value, key, _ in messages:
                t = self._topics.setdefault(topic, _topic())
                t["out_messages"] += 1
                t["out_bytes"] += len(value or b"") + len(key or b"")
            self._sent += len(messages)

    def flush(self, timeout: float = 30.0) -> int:
        undelivered = self._inner.flush(timeout)
        self.count_errors(undelivered)
        return undelivered

    def count_errors(self, undelivered: int) -> None:
        """Count messages the bus reported undelivered (by a flush or a ``commit_after``)."""
        with self._lock:
            self._errors += undelivered

    def close(self) -> None:
        self._inner.close()

    def delivery(self) -> Delivery | None:
        """The inner producer's handle (``pipeline.bus.base.delivery_of``); what it refused is counted
        by the flush that follows a refusal (the runner's)."""
        return delivery_of(self._inner)

    def client_metrics(self) -> Figures:
        with self._lock:
            return {
                "source": "embedded",
                "sent": self._sent,
                "send_errors": self._errors,
                "request_latency_s": None,
                "topics": {n: TopicFigures(**t) for n, t in self._topics.items()},
            }


class CountingConsumer:
    """A consumer that counts what it returns, per topic (for buses without client statistics)."""

    def __init__(self, inner: Consumer) -> None:
        self._inner = inner
        self.group_id = inner.group_id
        self._lock = threading.Lock()
        self._topics: dict[str, TopicFigures] = {}
        self._consumed = 0

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Record]:
        records = self._inner.poll(max_messages, timeout)
        if records:
            with self._lock:
                for r in records:
                    t = self._topics.setdefault(r.topic, _topic())
                    t["in_messages"] += 1
                    t["in_bytes"] += len(r.value or b"") + len(r.key or b"")
                self._consumed += len(records)
        return records

    def commit(self, records: Iterable[Record] | None = None, *, asynchronous: bool = False) -> None:
        self._inner.commit(records, asynchronous=asynchronous)

    def commit_after(self, producer: Producer, records: Iterable[Record], *, asynchronous: bool = False) -> None:
        # The inner consumer gets the inner producer (its bus's own), and the producer counts what
        # was refused, as its flush does.
        counting = producer if isinstance(producer, CountingProducer) else None
        try:
            self._inner.commit_after(counting._inner if counting else producer, records, asynchronous=asynchronous)
        except OutputsNotDelivered as exc:
            if counting is not None:
                counting.count_errors(exc.undelivered)
            raise

    def assignment(self) -> list[tuple[str, int]]:
        return self._inner.assignment()

    def lag(self) -> int:
        return self._inner.lag()

    def close(self) -> None:
        self._inner.close()

    def client_metrics(self) -> Figures:
        with self._lock:
            return {
                "source": "embedded",
                "consumed": self._consumed,
                "fetch_latency_s": None,
                "lag": None,
                "topics": {n: TopicFigures(**t) for n, t in self._topics.items()},
            }


def counted_producer(producer: Producer) -> Producer:
    """``producer`` itself when it keeps client statistics (Kafka), else a counting wrapper."""
    return producer if callable(getattr(producer, "client_metrics", None)) else CountingProducer(producer)


def counted_consumer(consumer: Consumer) -> Consumer:
    """``consumer`` itself when it keeps client statistics (Kafka), else a counting wrapper."""
    return consumer if callable(getattr(consumer, "client_metrics", None)) else CountingConsumer(consumer)
