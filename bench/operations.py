"""Operating the pipeline: a browser page anywhere in a big topic, a redrive of many dead letters,
and what a retried message costs the messages behind it.

    python -m bench.operations --backend embedded|kafka [--messages 1000000] [--letters 10000]
        [--ops browse,redrive,retry]

What is timed:

* ``browse``: a topic of ``--messages`` ticks over 3 partitions is written first (not timed), then
  each ``pipeline.operations.browse.open_page`` of 100 messages (all partitions, in time order) is
  timed alone: from the start, from offsets at 25 %, 50 % and 75 % of each partition, from a time
  in the middle, the newest page (from the end), and the page before the middle one (``turn``
  backward). Prints each and the slowest; the issue's bound is 1 s.
* ``redrive``: ``--letters`` dead letters of a source topic are written first (not timed); one
  letter in ten names the same source message as the letter before it (two stages rejected one
  message); they are checked against ``MarketData``. ``pipeline.operations.redrive.redrive`` at
  the default ``REDRIVE_RATE`` (2000 a second, so at least 5 s for 10,000) is timed from its first
  read to its report. Then the source topic is read back: ``published_twice`` counts source
  coordinates found more than once there, and a second redrive of the same letters must publish
  nothing. Bound: 10 s, published + skipped = letters, none twice.
* ``retry``: a stage that takes 1 ms a message reads 5,000 messages of one partition; the 100th
  fails once with a TransientError. Timed: from the failure to when the message behind it is
  processed (``behind_s``), against the median time a batch takes (``batch_s``), with delay
  topics (seed 003's non-blocking retries) and, for contrast, retried in place
  (``retry_topics=False``, which holds the partition for the backoff). Bound: at most one batch.
  Also timed: when the retried message is processed, from its failure (``retried_done_after_s``) and
  past its 1 s delay (``retried_late_s``, and in batches ``retried_late_batches``; bound: one batch).

Prints one JSON object per line. Kafka needs KAFKA_BOOTSTRAP_SERVERS; every run uses topics and
groups of its own and deletes them at the end (``bench.bus.drop``). The embedded log is written
under a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from bench.bus import drop, make_bus, payloads
from pipeline.bus.base import Bus
from pipeline.dead_letters import publish_dead_letter
from pipeline.errors import TransientError
from pipeline.messages import MarketData, Message, encode
from pipeline.operations import browse, redrive
from pipeline.runner import Stage, StageRunner
from pipeline.topics import RETRY_DELAYS_S, TopicSpec, dlq_name, retry_names
from storage.db import Database

PAGE = 100


def _emit(**line: object) -> None:
    print(json.dumps(line), flush=True)


def _fill(bus: Bus, topic: str, n: int) -> None:
    producer = bus.producer()
    chunk = payloads(min(n, 100_000))
    for i in range(n):
        key, value = chunk[i % len(chunk)]
        producer.produce(topic, value, key=key)
        if i % 100_000 == 99_999 and producer.flush(120):
            raise RuntimeError("undelivered messages")
    if producer.flush(120):
        raise RuntimeError("undelivered messages")


def bench_browse(bus: Bus, backend: str, messages: int) -> list[str]:
    topic = f"bench.browse.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(topic, 3, 86_400_000, compression="lz4")])
    started = time.perf_counter()
    _fill(bus, topic, messages)
    _emit(backend=backend, op="browse-fill", messages=messages, seconds=round(time.perf_counter() - started, 2))
    parts = browse.partitions_of(bus, topic)
    timings: dict[str, float] = {}

    def timed(name: str, fn: object) -> browse.Page:
        t = time.perf_counter()
        page = fn()  # type: ignore[operator]
        timings[name] = time.perf_counter() - t
        if len(page.records) != PAGE:
            raise RuntimeError(f"{name}: {len(page.records)} messages, not {PAGE}")
        _emit(backend=backend, op="browse", page=name, messages=messages, seconds=round(timings[name], 4))
        return page

    timed("start", lambda: browse.open_page(bus, topic, start="beginning", size=PAGE))
    middle = None
    for share in (25, 50, 75):
        offset = min(s.end_offset for s in parts.values()) * share // 100
        page = timed(
            f"offset {share}%", lambda o=offset: browse.open_page(bus, topic, start="offset", offset=o, size=PAGE)
        )
        middle = page if share == 50 else middle
    assert middle is not None
    at = middle.records[0].timestamp
    timed("time middle", lambda: browse.open_page(bus, topic, start="time", time_ms=at, size=PAGE))
    timed("end", lambda: browse.open_page(bus, topic, start="end", size=PAGE))
    timed("before middle", lambda: browse.turn(bus, topic, middle.partitions, middle.before, "backward", PAGE))
    slowest = max(timings.values())
    _emit(backend=backend, op="browse", stat="max", messages=messages, seconds=round(slowest, 4), bound_s=1.0)
    return [topic]


def bench_redrive(bus: Bus, backend: str, letters: int, folder: str) -> list[str]:
    source = f"bench.redrive.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(source, 3, 86_400_000), TopicSpec(dlq_name(source), 3, 86_400_000)])
    producer = bus.producer()
    values = payloads(1000)
    coordinate = 0
    for i in range(letters):
        if i % 10 != 9:  # every tenth names the message of the letter before it again
            coordinate += 1
        key, value = values[i % len(values)]
        publish_dead_letter(
            producer, "volume=-1 breaks rule: volume >= 0", topic=source, value=value, stage=f"s{i % 2}",
            key=key, partition=coordinate % 3, offset=coordinate,
        )  # fmt: skip
    if producer.flush(120):
        raise RuntimeError("undelivered dead letters")
    db = Database(Path(folder) / f"desk-{uuid.uuid4().hex[:6]}.db")
    try:
        out = bus.producer()
        started = time.perf_counter()
        report = redrive.redrive(db, out, redrive.letters(bus, dlq_name(source)), contract=lambda _: MarketData)
        seconds = time.perf_counter() - started
        found: Counter[bytes] = Counter()
        for p in browse.partitions_of(bus, source):
            position = 0
            while True:
                records = bus.read(source, p, position, 5000)
                if not records:
                    break
                found.update(dict(r.headers).get("redriven_from", b"") for r in records)
                position = records[-1].offset + 1
        again = redrive.redrive(db, out, redrive.letters(bus, dlq_name(source)), contract=lambda _: MarketData)
    finally:
        db.close()
    _emit(
        backend=backend,
        op="redrive",
        letters=letters,
        seconds=round(seconds, 3),
        published=report.published,
        skipped=report.skipped,
        failed=report.failed,
        on_source_topic=sum(found.values()),
        published_twice=sum(1 for n in found.values() if n > 1),
        second_run_published=again.published,
        second_run_skipped=again.skipped,
        bound_s=10.0,
    )
    return [source, dlq_name(source)]


class _Slow(Stage):
    """1 ms a message; the message with ``fail_price`` fails once with a TransientError."""

    input_model: ClassVar[type[Message] | None] = MarketData

    def __init__(self, fail_price: float) -> None:
        self.fail_price = fail_price
        self.failed_at: float | None = None
        self.done: dict[float, float] = {}
        self.batches: list[float] = []

    def process_batch(self, messages: list[MarketData]) -> Sequence[Message]:
        started = time.perf_counter()
        if self.failed_at is None and any(m.price == self.fail_price for m in messages):
            if len(messages) == 1:
                self.failed_at = time.perf_counter()
            raise TransientError("busy")
        time.sleep(0.001 * len(messages))
        now = time.perf_counter()
        for m in messages:
            self.done.setdefault(m.price, now)
        if len(messages) > 1:
            self.batches.append(now - started)
        return []


def bench_retry(bus: Bus, backend: str) -> list[str]:
    made: list[str] = []
    for mode in ("delay-topics", "in-place"):
        topic = f"bench.retry.{uuid.uuid4().hex[:8]}"
        specs = [TopicSpec(topic, 1, 86_400_000), TopicSpec(dlq_name(topic), 1, 86_400_000)]
        bus.create_topics(specs + [TopicSpec(n, 1, 86_400_000) for n in retry_names(topic)])
        made += [s.name for s in specs] + list(retry_names(topic))
        producer = bus.producer()
        now = int(time.time() * 1000)
        for i in range(5000):
            tick = MarketData(
                symbol="BTCUSDT",
                timestamp=now + i,
                price=1.0 + i,
                open=1.0,
                high=2.0,
                low=0.5,
                volume=1.0,
                price_change_pct=0.0,
            )
            producer.produce(topic, encode(tick), key=b"BTCUSDT")
        if producer.flush(60):
            raise RuntimeError("undelivered messages")
        cls = type(
            f"Slow{uuid.uuid4().hex[:6]}", (_Slow,), {"name": f"bench-retry-{uuid.uuid4().hex[:6]}", "inputs": (topic,)}
        )
        stage = cls(fail_price=100.0)
        runner = StageRunner(stage, bus, poll_timeout=0.05, max_batch=500, retry_topics=mode == "delay-topics")
        runner.start()
        deadline = time.monotonic() + 120
        while (len(stage.done) < 5000 or 100.0 not in stage.done) and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.stop()
        made.append(stage.group_id)
        if stage.failed_at is None or 101.0 not in stage.done:
            raise RuntimeError(f"{mode}: the run did not finish ({len(stage.done)} of 5000)")
        behind = stage.done[101.0] - stage.failed_at
        batch = statistics.median(stage.batches) if stage.batches else float("nan")
        # the retried message past its 1 s delay (bound: one batch); in place it has no delay topic
        late = stage.done[100.0] - stage.failed_at - RETRY_DELAYS_S[0] if mode == "delay-topics" else None
        _emit(
            backend=backend,
            op="retry",
            mode=mode,
            behind_s=round(behind, 4),
            batch_s=round(batch, 4),
            batches=round(behind / batch, 2),
            retried_done_after_s=round(stage.done[100.0] - stage.failed_at, 3),
            retried_late_s=None if late is None else round(late, 3),
            retried_late_batches=None if late is None else round(late / batch, 2),
        )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "kafka"), required=True)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the browsed topic")
    parser.add_argument("--letters", type=int, default=10_000, help="dead letters redriven")
    parser.add_argument("--ops", default="browse,redrive,retry")
    args = parser.parse_args()
    ops = set(args.ops.split(","))
    with tempfile.TemporaryDirectory() as folder:
        bus = make_bus(args.backend, folder)
        made: list[str] = []
        try:
            if "browse" in ops:
                made += bench_browse(bus, args.backend, args.messages)
            if "redrive" in ops:
                made += bench_redrive(bus, args.backend, args.letters, folder)
            if "retry" in ops:
                made += bench_retry(bus, args.backend)
        finally:
            topics = [m for m in made if m.startswith("bench.")]
            drop(bus, topics, [m for m in made if not m.startswith("bench.")])
            bus.close()


if __name__ == "__main__":
    main()
