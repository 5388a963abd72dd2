"""One bus hop: from a ``produce`` call to the moment a consumer's ``poll`` returns the message.

    python -m bench.hop [--backend embedded|kafka] [--where in-process|processes|both]
                        [--rates 100 1000 10000] [--seconds 5] [--repeat 3]
                        [--mode new|old|both] [--idle-seconds 5]

A producer offers small messages (the send time inside, ``time.monotonic_ns``, one clock for every
process of the machine) paced at each rate for ``--seconds``; one consumer of a new group on a new
topic of 3 partitions polls them. A message's latency is its receipt time minus its send time; the
first half second of each run is left out (the group join). What ``--where`` means:

* ``in-process``: producer and consumer are threads of this process, on one bus instance;
* ``processes``: the producer is a child process with a bus of its own on the same file (embedded,
  opened shared) or the same broker (Kafka): the stages-as-processes case.

``--mode`` picks what is compared, side by side in one run, alternating rounds:

* embedded ``new``: the log's checkpoints run on a thread of their own
  (``checkpoint="background"``), a writer waits for another's lock in steps of 0.1-1 ms
  (``lock_wait="retry"``) and a shared bus wakes other processes' consumers through datagrams
  (``wake="notify"``); ``old``: SQLite checkpoints inside the writer's commits
  (``checkpoint="writer"``), a writer sleeps in SQLite's busy handler (``lock_wait="sqlite"``)
  and other processes' consumers watch the file's data version every 10 ms (``wake="poll"``).
* Kafka ``new``: both clients with the ``low`` latency profile; ``old``: ``batch`` (5 ms linger on
  the producer, 5 ms after the first message of a poll on the consumer), the profile every stage
  had before profiles existed.

The garbage collector is tuned as the desk tunes it for its stages
(``pipeline.wiring.tune_gc``); each run reports the collections of the oldest generation that
fell inside it and the longest pause of any collection (``gc_full``, ``gc_max_ms``).

``--idle-seconds``: an idle consumer (nothing produced) is left to wait that long, and the CPU its
process used meanwhile is reported as a share of one core (embedded; for processes, the consumer's
process holds a shared bus, as a stage process does).

Prints one JSON line per run and per round, then one line per configuration with the medians of
its rounds (``"stat": "median"``): p50, p99, p99.9 and max in milliseconds, messages received and
the rate reached. On Kafka it needs KAFKA_BOOTSTRAP_SERVERS and uses a topic and group of its own
per run, deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.bus import drop
from pipeline.bus.base import Bus
from pipeline.topics import TopicSpec
from pipeline.wiring import tune_gc

WARM_UP_S = 0.5
PARTITIONS = 3


class GcPauses:
    """Counts full collections and the longest pause of any, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.full = 0
        self.max_ms = 0.0
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.monotonic_ns()
            return
        self.max_ms = max(self.max_ms, (time.monotonic_ns() - self._start) / 1e6)
        self.full += info["generation"] == 2

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def open_bus(backend: str, folder: str, mode: str, shared: bool) -> Bus:
    if backend == "kafka":
        from pipeline.bus.kafka import KafkaBus

        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            sys.exit("error: set KAFKA_BOOTSTRAP_SERVERS (make kafka-up prints it)")
        return KafkaBus(servers)
    from pipeline.bus.embedded import EmbeddedBus

    return EmbeddedBus(
        os.path.join(folder, "bus.db"),
        shared=shared,
        wake="notify" if mode == "new" else "poll",
        checkpoint="background" if mode == "new" else "writer",
        lock_wait="retry" if mode == "new" else "sqlite",
    )


def latency_for(backend: str, mode: str) -> Any:
    return "low" if backend == "kafka" and mode == "new" else "batch"


def produce_paced(bus: Bus, topic: str, rate: float, seconds: float, latency: Any) -> int:
    """Offer ``rate`` messages a second for ``seconds``, each sent when it is due (a late one is sent
    at once, never bunched ahead); return how many were sent."""
    producer = bus.producer(latency)
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while True:
        due = start + n * interval
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        producer.produce(topic, str(time.monotonic_ns()).encode(), key=str(n % 64).encode())
        n += 1
    producer.produce(topic, b"end", key=b"end")
    producer.flush(30)
    return n


def consume(bus: Bus, topic: str, group: str, latency: Any, ready: threading.Event, out: list[float]) -> None:
    """Poll until the end marker; append each message's latency in ms (receipt minus send)."""
    consumer = bus.consumer(group, [topic], auto_offset_reset="earliest", latency=latency)
    try:
        consumer.poll(1, 0.05)
        deadline = time.monotonic() + 60
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(1, 0.05)
        ready.set()
        while True:
            records = consumer.poll(1000, 0.5)
            got = time.monotonic_ns()
            done = False
            for r in records:
                if r.value == b"end":
                    done = True
                    continue
                out.append((got - int(r.value or b"0")) / 1e6)
            if records:
                consumer.commit(records)
            if done:
                return
    finally:
        consumer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": round(ordered[-1], 3)}


@contextmanager
def topic_on(bus: Bus) -> Iterator[tuple[str, str]]:
    topic, group = f"bench.hop.{uuid.uuid4().hex[:10]}", f"bench-hop-{uuid.uuid4().hex[:10]}"
    bus.create_topics([TopicSpec(topic, PARTITIONS, 3_600_000)])
    try:
        yield topic, group
    finally:
        drop(bus, [topic], [group])


def one_run(backend: str, where: str, mode: str, rate: float, seconds: float, folder: str) -> dict[str, Any]:
    shared = where == "processes"
    bus = open_bus(backend, folder, mode, shared)
    latency = latency_for(backend, mode)
    try:
        with topic_on(bus) as (topic, group), GcPauses() as pauses:
            ready, lat = threading.Event(), list[float]()
            t0 = time.monotonic()
            reader = threading.Thread(target=consume, args=(bus, topic, group, latency, ready, lat), daemon=True)
            reader.start()
            if not ready.wait(60):
                raise RuntimeError("the consumer got no partitions in 60 s")
            if where == "in-process":
                sent = produce_paced(bus, topic, rate, seconds + WARM_UP_S, latency)
            else:
                argv = ["--child", backend, folder, mode, topic, str(rate), str(seconds + WARM_UP_S)]
                child = subprocess.run(
                    [sys.executable, "-m", "bench.hop", *argv],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                sent = int(child.stdout.strip().splitlines()[-1])
            reader.join(120)
            elapsed = time.monotonic() - t0
    finally:
        bus.close()
    skip = int(rate * WARM_UP_S)
    kept = lat[skip:]
    return {
        "bench": "hop",
        "backend": backend,
        "where": where,
        "mode": mode,
        "rate": rate,
        "sent": sent,
        "received": len(lat),
        **percentiles(kept),
        "seconds": round(elapsed, 2),
        "gc_full": pauses.full,
        "gc_max_ms": round(pauses.max_ms, 3),
    }


def idle_cpu(backend: str, mode: str, where: str, seconds: float, folder: str) -> dict[str, Any]:
    """CPU of this process while one consumer waits on an empty topic, as a share of one core."""
    bus = open_bus(backend, folder, mode, where == "processes")
    try:
        with topic_on(bus) as (topic, group):
            consumer = bus.consumer(group, [topic], latency=latency_for(backend, mode))
            consumer.poll(1, 0.5)
            stop = time.monotonic() + seconds
            cpu0, t0 = time.process_time(), time.monotonic()
            while time.monotonic() < stop:
                consumer.poll(500, 0.5)
            share = (time.process_time() - cpu0) / (time.monotonic() - t0)
            consumer.close()
    finally:
        bus.close()
    return {"bench": "hop", "backend": backend, "where": where, "mode": mode, "idle_cpu_pct": round(100 * share, 2)}


def child(argv: list[str]) -> None:
    backend, folder, mode, topic, rate, seconds = argv
    tune_gc()
    bus = open_bus(backend, folder, mode, True)
    try:
        bus.describe_topics([topic])
        print(produce_paced(bus, topic, float(rate), float(seconds), latency_for(backend, mode)), flush=True)
    finally:
        bus.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--where", choices=("in-process", "processes", "both"), default="both")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", choices=("new", "old", "both"), default="both")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    tune_gc()  # as build_runtime does for the desk's stages
    wheres = ["in-process", "processes"] if args.where == "both" else [args.where]
    modes = ["new", "old"] if args.mode == "both" else [args.mode]
    rounds: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for where in wheres:
            for rate in args.rates:
                for mode in modes:
                    with tempfile.TemporaryDirectory(prefix="bench-hop-") as folder:
                        run = one_run(args.backend, where, mode, rate, args.seconds, folder)
                    print(json.dumps(run), flush=True)
                    rounds.setdefault((where, mode, rate), []).append(run)
    for (where, mode, rate), runs in rounds.items():
        medians = {k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
        line = {"bench": "hop", "stat": "median", "backend": args.backend, "where": where, "mode": mode, "rate": rate}
        print(json.dumps({**line, "rounds": len(runs), **medians}), flush=True)
    if args.idle_seconds > 0 and args.backend == "embedded":
        for where in wheres:
            for mode in modes:
                with tempfile.TemporaryDirectory(prefix="bench-hop-") as folder:
                    print(json.dumps(idle_cpu(args.backend, mode, where, args.idle_seconds, folder)), flush=True)


if __name__ == "__main__":
    main()
