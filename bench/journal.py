"""The journal pipeline end to end: raw-trades in -> normalizer -> enricher -> behaviour ->
journal-store -> a row in the store (SQLite, or PostgreSQL with ``--store postgres``).

    python -m bench.journal --trades N [--rate R] [--backend embedded|kafka] [--repeat K] [--processes]
        [--store sqlite|postgres|both] [--database-url URL]

Each trade is a Binance spot fill as the CSV importer publishes it; buys and sells alternate so
every raw trade makes exactly one journal row (a buy opens a lot, the next sell closes it into a
round trip). Without ``--rate`` the trades are offered as fast as the producer takes them and
``throughput_per_s`` is N over the time from the first produce to the last row stored. With
``--rate R`` they are offered at R per second and each row's latency is the time from its
produce call to the journal store's commit (``stored_at``): p50, p99, p99.9 and max. Before the
trades, the stages wait ``--idle-seconds`` with no input and ``idle_cpu_pct`` is the CPU their
process(es) used meanwhile, as a share of one core. Prints one JSON line per run and one with the
medians.

By default the four stages run in this process on their own threads, as in the app. With
``--processes`` each runs in a process of its own, as ``python -m pipeline run --stage NAME`` runs
it, on the same bus and database files (embedded) or broker (Kafka): one interpreter's lock no
longer holds all four stages, so they use every core.

``--store postgres`` runs the same on PostgreSQL: on ``--database-url`` when given, else on a
server this run starts in a temporary cluster (Debian's postgresql, scripts/setup-postgres.sh; fsync
and synchronous commit on, as PostgreSQL ships), one fresh database per run; the server shares the
machine's cores with the stages, and its CPU is not in ``idle_cpu_pct``. ``--store both`` runs
SQLite then PostgreSQL, each ``--repeat`` times. Each JSON line names its ``store``.

On Kafka the run's topics and groups are its own (``bench.bus.BenchBus``: ``raw-trades.bench-<run>``
and so on), never the desk's, and are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.bus import make_bus
from pipeline.bus.base import Bus
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.fills import Fill, fill_fingerprint
from pipeline.messages import RawTrade, Side, encode
from pipeline.runner import Stage, StageRunner
from pipeline.stages.behaviour import BehaviourStage
from pipeline.stages.enricher import Enricher
from pipeline.stages.journal_store import JournalStore
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG, RAW_TRADES
from pipeline.wiring import tune_gc
from storage.db import Database

T0 = 1_700_000_000_000
HEADER = ("Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee")


def raw_trades(n: int, user: str) -> list[tuple[str, bytes]]:
    """Return ``n`` encoded raw Binance fills (fill id, value) alternating BUY and SELL."""
    out = []
    now = int(time.time() * 1000)
    for i in range(n):
        side: Side = "BUY" if i % 2 == 0 else "SELL"
        price = 100.0 + (i % 500) * 0.01 + (0.5 if side == "SELL" else 0.0)
        t = T0 + i * 1000
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t / 1000))
        row = dict(
            zip(
                HEADER,
                (
                    stamp,
                    "SOLUSDT",
                    side,
                    f"{price:.2f}",
                    "0.5SOL",
                    f"{price * 0.5:.4f}USDT",
                    f"{price * 0.0005:.6f}USDT",
                ),
                strict=True,
            )
        )
        fill = Fill("SOLUSDT", side, round(price, 2), 0.5, t)
        fid = fill_fingerprint(user, fill, 0, venue="binance-spot")
        raw = RawTrade(
            raw_id=fid, user_id=user, source="csv", format="binance-spot", received_at=now, payload=row, row=i + 2
        )
        out.append((fid, encode(raw)))
    return out


_CLASSES: tuple[type[Stage], ...] = (Normalizer, Enricher, BehaviourStage, JournalStore)


def _group(cls: type[Stage], suffix: str) -> str:
    return f"{cls.name}-bench-{suffix}"


def _stage(index: int, db: Database, suffix: str) -> Stage:
    """A journal stage with a group id of its own, so a shared broker's old offsets don't count."""
    cls = _CLASSES[index]
    args = (db, BehaviourRules()) if cls is BehaviourStage else (db,)
    # From the end of each topic: a shared broker holds earlier runs' messages.
    sub = type(cls.__name__, (cls,), {"name": _group(cls, suffix), "offset_reset": "latest"})
    return sub(*args)


def journal_stages(db: Database, suffix: str) -> list[Stage]:
    """The four journal stages, in pipeline order, with group ids of their own."""
    return [_stage(i, db, suffix) for i in range(len(_CLASSES))]


class InProcess:
    """The four stages on threads of this process, sharing its bus and database, as in the app."""

    def __init__(self, bus: Bus, db: Database, suffix: str) -> None:
        self.runners = [StageRunner(s, bus, poll_timeout=0.05) for s in journal_stages(db, suffix)]
        tune_gc()  # as build_runtime does for the app
        for r in self.runners:
            r.start()
        self.groups = {r.stage.group_id for r in self.runners}

    def stop(self) -> dict[str, tuple[int, ...]]:
        for r in self.runners:
            r.stop()
        return {
            r.name: (r.health.processed, r.health.produced, r.health.dead_lettered, r.health.errors)
            for r in self.runners
        }


def _stage_process(
    index: int, backend: str, folder: str, db_path: str, suffix: str, ready: Any, stop: Any, report: Any
) -> None:
    """One stage in a process of its own, with its own bus client and database writer."""
    bus = make_bus(backend, folder, shared=True, run=suffix)
    db = open_store(db_path)
    runner = StageRunner(_stage(index, db, suffix), bus, poll_timeout=0.05)
    tune_gc()
    runner.start()
    started = os.times()
    ready.set()
    stop.wait()
    runner.stop()
    h, ended = runner.health, os.times()
    cpu = ended.user + ended.system - started.user - started.system
    report.put((runner.name, (h.processed, h.produced, h.dead_lettered, h.errors, round(cpu, 2))))
    db.close()
    bus.close()


class Processes:
    """Each stage in its own process (spawned, so nothing of this process is inherited)."""

    def __init__(self, backend: str, folder: Path, store_spec: str, suffix: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop_event, self.report = ctx.Event(), ctx.Queue()
        readies = [ctx.Event() for _ in _CLASSES]
        self.procs = [
            ctx.Process(
                target=_stage_process,
                name=f"stage-{i}",
                daemon=True,
                args=(i, backend, str(folder), store_spec, suffix, readies[i], self.stop_event, self.report),
            )
            for i in range(len(_CLASSES))
        ]
        for p in self.procs:
            p.start()
        for p, ready in zip(self.procs, readies, strict=True):
            while not ready.wait(0.5):
                if not p.is_alive():
                    raise SystemExit(f"a stage process exited with code {p.exitcode} before it started")
        self.groups = {_group(cls, suffix) for cls in _CLASSES}

    def stop(self) -> dict[str, tuple[int, ...]]:
        """Stop the stages; return each one's processed, produced, dead-lettered, errors and CPU seconds."""
        self.stop_event.set()
        health = dict(self.report.get(timeout=60) for _ in self.procs)
        for p in self.procs:
            p.join(30)
        return health


def wait_until_joined(bus: Bus, groups: set[str]) -> None:
    """Wait until every stage has joined its group and found the end of its topics: they start
    from there, so a message published earlier would be missed."""
    deadline = time.time() + 60
    while time.time() < deadline:
        joined = {g.group_id for g in bus.describe_groups() if g.group_id in groups and g.members}
        if joined == groups:
            break
        time.sleep(0.2)
    time.sleep(2.0)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes ``pids`` (Linux's /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def idle_cpu_pct(pids: list[int], seconds: float) -> float:
    """The CPU ``pids`` use over ``seconds`` of doing nothing, as a share of one core."""
    before, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pids) - before) / (time.monotonic() - t0)


def open_store(spec: str) -> Database:
    """The store a run writes: a PostgreSQL URL, or a SQLite file's path."""
    if spec.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresDatabase

        return PostgresDatabase(spec)  # type: ignore[return-value]
    return Database(spec)


def run_once(
    backend: str,
    n: int,
    rate: float | None,
    folder: Path,
    processes: bool = False,
    idle_seconds: float = 0.0,
    database_url: str | None = None,
) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:8]
    user = f"bench-{suffix}"
    bus = make_bus(backend, str(folder), shared=processes, run=suffix)
    bus.create_topics(CATALOG.values())
    spec = database_url or str(folder / f"desk-{suffix}.db")
    db = open_store(spec)
    stages = Processes(backend, folder, spec, suffix) if processes else InProcess(bus, db, suffix)
    producer = bus.producer()
    messages = raw_trades(n, user)
    wait_until_joined(bus, stages.groups)
    pids = [p.pid for p in stages.procs if p.pid] if isinstance(stages, Processes) else [os.getpid()]
    idle = idle_cpu_pct(pids, idle_seconds) if idle_seconds > 0 else None
    sent: dict[str, float] = {}
    start = time.time()
    for i, (fid, value) in enumerate(messages):
        if rate:
            due = start + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        sent[fid] = time.time()
        producer.produce(RAW_TRADES, value, key=user.encode())
        if rate and i % 50 == 0:
            producer.flush(10)
    producer.flush(120)
    deadline = time.time() + max(120.0, n / 500)
    stored = 0
    while time.time() < deadline:
        stored = db.query("SELECT count(*) AS n FROM journal_trades WHERE user_id=?", (user,))[0]["n"]
        if stored >= n:
            break
        time.sleep(0.25)  # the end is the last row's stored_at; counting often would slow the stages
    end = time.time()
    rows = db.query("SELECT fill_ids, stored_at FROM journal_trades WHERE user_id=?", (user,))
    last_stored = max((r["stored_at"] for r in rows), default=end * 1000) / 1000
    latencies = sorted(r["stored_at"] - sent[orjson.loads(r["fill_ids"])[-1]] * 1000 for r in rows)
    health = stages.stop()
    print(json.dumps({"health": health}), file=sys.stderr)
    producer.close()
    db.close()
    bus.close()
    if stored < n:
        raise SystemExit(f"only {stored} of {n} trades stored; stages: {health}")
    seconds = last_stored - start
    return {
        "backend": backend,
        "store": "postgres" if database_url else "sqlite",
        "processes": processes,
        "trades": n,
        "rate": rate,
        "seconds": round(seconds, 3),
        "throughput_per_s": round(n / seconds),
        "latency_ms_p50": round(_pct(latencies, 50), 1),
        "latency_ms_p99": round(_pct(latencies, 99), 1),
        "latency_ms_p999": round(_pct(latencies, 99.9), 1),
        "latency_ms_max": round(latencies[-1], 1),
        "idle_cpu_pct": None if idle is None else round(idle, 2),
    }


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=None, help="offered trades per second (default: flat out)")
    parser.add_argument("--backend", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--processes", action="store_true", help="run each stage in a process of its own")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="before the trades, the stages wait this long with no input; their CPU is reported (idle_cpu_pct)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="where the journal is stored (postgres: --database-url, or a temporary server of this run's own)",
    )
    parser.add_argument("--database-url", default=None, help="a PostgreSQL database to use for --store postgres")
    args = parser.parse_args()
    stores = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    for store in stores:
        if store == "postgres" and args.database_url:
            _runs(args, store, lambda i: args.database_url)
        elif store == "postgres":
            from tests.fakes.postgres_server import PostgresServer

            with PostgresServer(durable=True) as server:
                _runs(args, store, lambda i: server.create_database(f"bench_{i}"))
        else:
            _runs(args, store, lambda i: None)


def _runs(args: argparse.Namespace, store: str, url_of: Any) -> None:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeat):
            result = run_once(
                args.backend,
                args.trades,
                args.rate,
                Path(folder) / str(i),
                args.processes,
                args.idle_seconds,
                url_of(i),
            )
            runs.append(result)
            print(json.dumps(result), flush=True)
    if args.repeat > 1:
        print(
            json.dumps(
                {
                    "backend": args.backend,
                    "store": store,
                    "processes": args.processes,
                    "trades": args.trades,
                    "rate": args.rate,
                    "stat": "median",
                    **{
                        k: statistics.median(r[k] for r in runs)
                        for k in ("throughput_per_s", "latency_ms_p50", "latency_ms_p99", "latency_ms_p999")
                    },
                }
            )
        )


if __name__ == "__main__":
    main()
