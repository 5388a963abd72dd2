"""Bus throughput: produce and consume (with decode and validation) of ~200-byte market ticks.

    python -m bench.bus --backend embedded|kafka --messages N [--repeat R]

Each run uses a new topic of 3 partitions (embedded: in a new log file; ``--log-layout both``
alternates the log's messages table as made now and as files made before have it, see
``pipeline.bus.embedded_log``). What is timed:

* ``produce``: N ``produce`` calls and the ``flush`` that makes them durable (creating the topic is
  not timed);
* ``consume``: from before the first ``poll`` of a new consumer group (joining the group, getting
  its partitions, the first fetch of up to 10,000 messages) until all N messages were polled,
  validated into ``MarketData`` and committed batch by batch; ``first_poll_s`` is the first poll's
  share of it (on Kafka mostly the group join). Closing the consumer and deleting the run's topic
  and group are not timed.

Prints one JSON object per line: {"backend", "op", "messages", "seconds", "msgs_per_s"}, one per
run, then the median of the runs with "stat": "median". Kafka needs KAFKA_BOOTSTRAP_SERVERS
(`make kafka-up` prints it). The embedded log is written under a fresh temporary folder.

Benchmarks never write a topic the desk reads: this one uses a topic and group of its own per run,
and the others run the desk's stages on ``BenchBus``, which gives the catalog's topics names of
the run's own on Kafka. Either way a run deletes its topics and groups from the broker at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

from pipeline.bus.base import (
    Bus,
    Consumer,
    Delivery,
    GroupState,
    Latency,
    OffsetReset,
    Outgoing,
    PartitionsCallback,
    Producer,
    Record,
    TopicState,
    delivery_of,
)
from pipeline.messages import MarketData, encode
from pipeline.topics import TopicSpec

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT")


def payloads(n: int) -> list[tuple[bytes, bytes]]:
    """Return ``n`` distinct encoded ticks (key, value), about 200 bytes each."""
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        sym = SYMBOLS[i % len(SYMBOLS)]
        price = 100.0 + (i % 1000) * 0.137
        tick = MarketData(
            symbol=sym,
            timestamp=now + i,
            price=price,
            open=price * 0.99,
            high=price * 1.02,
            low=price * 0.97,
            volume=123456.789 + i,
            price_change_pct=1.2345,
            tick_volume=0.5 + (i % 7),
        )
        out.append((sym.encode(), encode(tick)))
    return out


def make_bus(backend: str, folder: str, shared: bool = False, run: str | None = None, log_layout: str = "rowid") -> Bus:
    """The bus of a benchmark. On Kafka with ``run``, a ``BenchBus``: the catalog's topics under
    names of that run's own, which processes of one run share by passing the same ``run``.
    Embedded, ``log_layout="without-rowid"`` makes the log's messages table as files made before
    the rowid layout have it (``pipeline.bus.embedded_log``), to compare the two."""
    if backend == "kafka":
        from pipeline.bus.kafka import KafkaBus

        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            sys.exit("error: set KAFKA_BOOTSTRAP_SERVERS (make kafka-up prints it)")
        return BenchBus(KafkaBus(servers), run) if run else KafkaBus(servers)
    from pipeline.bus.embedded import EmbeddedBus
    from pipeline.bus.embedded_log import MESSAGES_WITHOUT_ROWID

    path = os.path.join(folder, "bus.db")
    if log_layout == "without-rowid" and not os.path.exists(path):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.executescript(MESSAGES_WITHOUT_ROWID)
    return EmbeddedBus(path, shared=shared)


def drop(bus: Bus, topics: Iterable[str], groups: Iterable[str]) -> None:
    """Delete a run's consumer groups (those still with members stay) and, on Kafka, its topics;
    an embedded log lives in a temporary folder that goes anyway."""
    bus.delete_groups(groups)
    topics = list(topics)
    config = getattr(bus, "client_config", None)
    if topics and config is not None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(config)  # held until every future is done: its handle resolves them
        for name, fut in admin.delete_topics(topics, request_timeout=30).items():
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - a leftover topic is worth a line, not a failed run
                print(f"bench: could not delete topic {name}: {exc}", file=sys.stderr)


class BenchBus:
    """A bus whose topics are one benchmark run's own: the catalog's ``raw-trades`` is
    ``raw-trades.bench-<run>`` on the broker (its dead-letter topic likewise), so stages benchmarked
    on a broker the desk uses never write a topic the desk reads. Stages and clients see the
    catalog's names. ``close`` deletes the topics this bus created and the groups its consumers
    used, then closes the bus under it. Renaming costs about 0.1 us per record polled."""

    def __init__(self, inner: Bus, run: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.suffix = f".bench-{run}"
        self.client_config = getattr(inner, "client_config", None)
        self._created: set[str] = set()
        self._groups: set[str] = set()

    def physical(self, topic: str) -> str:
        return topic + self.suffix

    def logical(self, topic: str) -> str:
        return topic.removesuffix(self.suffix)

    def create_topics(self, specs: Iterable[TopicSpec]) -> dict[str, bool]:
        created = self.inner.create_topics([dataclasses.replace(s, name=self.physical(s.name)) for s in specs])
        self._created.update(created)
        return {self.logical(name): now for name, now in created.items()}

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicState]:
        wanted = None if names is None else [self.physical(n) for n in names]
        return [
            dataclasses.replace(t, name=self.logical(t.name))
            for t in self.inner.describe_topics(wanted)
            if t.name.endswith(self.suffix)
        ]

    def describe_groups(self) -> list[GroupState]:
        return [
            dataclasses.replace(
                g, partitions=[dataclasses.replace(p, topic=self.logical(p.topic)) for p in g.partitions]
            )
            for g in self.inner.describe_groups()
        ]

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, str | None]:
        return self.inner.delete_groups(group_ids)

    def read(self, topic: str, partition: int, offset: int, max_messages: int = 100) -> list[Record]:
        records = self.inner.read(self.physical(topic), partition, offset, max_messages)
        return [dataclasses.replace(r, topic=topic) for r in records]

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        return self.inner.offsets_for_time(self.physical(topic), timestamp_ms)

    def reset_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> str | None:
        return self.inner.reset_offsets(group_id, {(self.physical(t), p): o for (t, p), o in offsets.items()})

    def producer(self, latency: Latency = "batch") -> Producer:
        return _BenchProducer(self, self.inner.producer(latency))

    def consumer(
        self,
        group_id: str,
        topics: Sequence[str],
        *,
        auto_offset_reset: OffsetReset = "earliest",
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        latency: Latency = "batch",
    ) -> Consumer:
        self._groups.add(group_id)
        return _BenchConsumer(self, group_id, topics, auto_offset_reset, on_assign, on_revoke, latency)

    def close(self) -> None:
        try:
            drop(self, sorted(self._created), sorted(self._groups))
        finally:
            self.inner.close()


class _BenchProducer:
    def __init__(self, bus: BenchBus, inner: Producer) -> None:
        self._suffix, self._inner = bus.suffix, inner

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self._inner.produce(topic + self._suffix, value, key, headers)

    def produce_many(self, messages: Sequence[Outgoing]) -> None:
        self._inner.produce_many([(topic + self._suffix, value, key, hs) for topic, value, key, hs in messages])

    def flush(self, timeout: float = 30.0) -> int:
        return self._inner.flush(timeout)

    def delivery(self) -> Delivery | None:
        return delivery_of(self._inner)

    def close(self) -> None:
        self._inner.close()


class _BenchConsumer:
    def __init__(
        self,
        bus: BenchBus,
        group_id: str,
        topics: Sequence[str],
        reset: OffsetReset,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
        latency: Latency,
    ) -> None:
        self.group_id = group_id
        self._bus = bus
        self._names = {bus.physical(t): t for t in topics}

        def logical(callback: PartitionsCallback | None) -> PartitionsCallback | None:
            if callback is None:
                return None
            return lambda parts: callback([(bus.logical(t), p) for t, p in parts])

        self._inner = bus.inner.consumer(
            group_id,
            list(self._names),
            auto_offset_reset=reset,
            on_assign=logical(on_assign),
            on_revoke=logical(on_revoke),
            latency=latency,
        )

    def poll(self, max_messages: int = 500, timeout: float = 1.0) -> list[Record]:
        records = self._inner.poll(max_messages, timeout)
        names = self._names
        for r in records:  # fresh records of this poll, nobody else's: renamed in place (0.1 us, not 0.9)
            object.__setattr__(r, "topic", names[r.topic])
        return records

    def commit(self, records: Iterable[Record] | None = None, *, asynchronous: bool = False) -> None:
        if records is None:
            self._inner.commit(asynchronous=asynchronous)
            return
        self._inner.commit(self._physical(records), asynchronous=asynchronous)

    def commit_after(self, producer: Producer, records: Iterable[Record], *, asynchronous: bool = False) -> None:
        inner = producer._inner if isinstance(producer, _BenchProducer) else producer  # the bus's own
        self._inner.commit_after(inner, self._physical(records), asynchronous=asynchronous)

    def _physical(self, records: Iterable[Record]) -> list[Record]:
        """The last record of each partition, under its topic's name on the broker."""
        last: dict[tuple[str, int], int] = {}
        for r in records:
            if r.offset > last.get((r.topic, r.partition), -1):
                last[(r.topic, r.partition)] = r.offset
        return [Record(self._bus.physical(t), p, o, None, None, 0) for (t, p), o in last.items()]

    def assignment(self) -> list[tuple[str, int]]:
        return [(self._bus.logical(t), p) for t, p in self._inner.assignment()]

    def lag(self) -> int:
        return self._inner.lag()

    def close(self) -> None:
        self._inner.close()


def run_once(bus: Bus, messages: list[tuple[bytes, bytes]]) -> tuple[float, float, float]:
    """Return (produce seconds, consume seconds, of which the first poll)."""
    topic = f"bench.market_data.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(topic, 3, 86_400_000, compression="lz4")])
    producer = bus.producer()
    start = time.perf_counter()
    for key, value in messages:
        producer.produce(topic, value, key=key)
    if producer.flush(120):
        raise RuntimeError("undelivered messages")
    produce_s = time.perf_counter() - start

    consumer = bus.consumer(f"bench-{topic}", [topic])
    validate = MarketData.model_validate_json
    got = 0
    start = time.perf_counter()
    records = consumer.poll(10_000, 30.0)  # joins the group, gets partitions, fetches the first batch
    first_poll_s = time.perf_counter() - start
    while True:
        for r in records:
            validate(r.value or b"")
        got += len(records)
        consumer.commit(records)
        if got >= len(messages):
            break
        records = consumer.poll(10_000, 5.0)
        if not records:
            raise RuntimeError(f"consumed {got} of {len(messages)}")
    consume_s = time.perf_counter() - start
    consumer.close()
    drop(bus, [topic], [consumer.group_id])
    return produce_s, consume_s, first_poll_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "kafka"), required=True)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--log-layout",
        choices=("rowid", "without-rowid", "both"),
        default="rowid",
        help="embedded: the log's messages table as made now (rowid) or as files made before have it; "
        "both alternates them run by run",
    )
    args = parser.parse_args()
    messages = payloads(args.messages)
    size = sum(len(v) for _, v in messages) / len(messages)
    layouts = ("rowid", "without-rowid") if args.log_layout == "both" else (args.log_layout,)
    if args.backend == "kafka":
        layouts = ("rowid",)
    results: dict[tuple[str, str], list[float]] = {}
    first_polls: dict[str, list[float]] = {}
    for k in range(args.repeat):
        for layout in layouts if k % 2 == 0 else layouts[::-1]:
            with tempfile.TemporaryDirectory() as folder:
                bus = make_bus(args.backend, folder, log_layout=layout)
                try:
                    produce_s, consume_s, first_poll_s = run_once(bus, messages)
                finally:
                    bus.close()
            first_polls.setdefault(layout, []).append(first_poll_s)
            for op, seconds in (("produce", produce_s), ("consume", consume_s)):
                results.setdefault((op, layout), []).append(seconds)
                line = {
                    "backend": args.backend,
                    "op": op,
                    "messages": args.messages,
                    "seconds": round(seconds, 4),
                    "msgs_per_s": round(args.messages / seconds),
                    "avg_bytes": round(size),
                }
                if args.backend == "embedded":
                    line["log_layout"] = layout
                if op == "consume":
                    line["first_poll_s"] = round(first_poll_s, 4)
                print(json.dumps(line), flush=True)
    for (op, layout), runs in results.items():
        seconds = statistics.median(runs)
        line = {
            "backend": args.backend,
            "op": op,
            "messages": args.messages,
            "stat": "median",
            "seconds": round(seconds, 4),
            "msgs_per_s": round(args.messages / seconds),
        }
        if args.backend == "embedded":
            line["log_layout"] = layout
        if op == "consume":
            line["first_poll_s"] = round(statistics.median(first_polls[layout]), 4)
        print(json.dumps(line))


if __name__ == "__main__":
    main()
