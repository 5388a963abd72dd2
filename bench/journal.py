"""The journal pipeline end to end: raw-trades in -> normalizer -> enricher -> behaviour ->
journal-store -> a row in the store (SQLite, or PostgreSQL with ``--store postgres``).

    python -m bench.journal --trades N [--rate R] [--backend embedded|kafka] [--repeat K] [--processes]
        [--store sqlite|postgres|both] [--database-url URL] [--groups 1|2] [--users U]

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

``--groups 2`` (with ``--processes --backend kafka``) runs two processes per stage in one consumer group, as two
hosts of one desk would (docs/scaling.md): the group splits each topic's partitions between them.
Trades are keyed by user, so a second process has work only with several users: ``--users U``
spreads the N trades over U users on U different partitions of raw-trades (round robin, so they
arrive interleaved); compare ``--groups 1`` and ``--groups 2`` with the same ``--users``.
``throughput_per_s`` and the latencies are timed as above, over every user's rows. The stages then
read the run's topics from their start, not their end (see ``_stage``).

``--compare`` (embedded bus, SQLite, stages on threads) runs every repeat twice, ``before`` and
``after``, flipping which goes first each repeat, and prints a median line per variant. ``before``
selects the older ways that settings keep: the behaviour stage handles each poll at once
(``after``: it gathers a batch for ``ALERTS_BATCH_WAIT_MS``, as the desk's wiring sets it; without
``--compare`` too), the store's writes are handed to a writer thread of its own, which
checkpoints inside its commits (``Database(checkpoint="writer", writer="thread")``; ``after``:
each write runs on its caller's thread, holding the writer's lock), every commit of the bus wakes
every idle consumer (``EmbeddedBus(wake_scope="all")``) and the interpreter switches threads
every 5 ms, Python's default (``after``: the desk's ``SWITCH_INTERVAL_MS``, as ``build_runtime``
sets it; without ``--compare`` too). The other changes of that work (a flush with nothing
produced skips the writer, a poll reads its partitions in one read transaction, and only those
with something new, and looks at its group's generation only after a membership change; a batch
that fills looks for more every ``FILL_LOOK_S``, not at every record) have no setting and run in
both; compare them against an older checkout instead.

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
from typing import Any, Literal

import orjson

from bench.bus import make_bus
from pipeline.bus.base import Bus, OffsetReset, partition_for
from pipeline.config import Config
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.fills import Fill, fill_fingerprint
from pipeline.messages import RawTrade, Side, encode
from pipeline.runner import Stage, StageRunner
from pipeline.stages.behaviour import BehaviourStage
from pipeline.stages.enricher import Enricher
from pipeline.stages.journal_store import JournalStore
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG, RAW_TRADES
from pipeline.wiring import tune_gc, tune_switching
from storage.db import Database

Variant = Literal["before", "after"]

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


def spread_users(prefix: str, count: int) -> list[str]:
    """``count`` user ids, each on a different partition of raw-trades (trades are keyed by user)."""
    partitions = CATALOG[RAW_TRADES].partitions
    if not 1 <= count <= partitions:
        raise SystemExit(f"error: --users must be 1 to {partitions} (raw-trades' partitions), not {count}")
    users: dict[int, str] = {}
    n = 0
    while len(users) < count:
        user = f"{prefix}-{n}"
        users.setdefault(partition_for(user.encode(), partitions), user)
        n += 1
    return list(users.values())


_CLASSES: tuple[type[Stage], ...] = (Normalizer, Enricher, BehaviourStage, JournalStore)


def _group(cls: type[Stage], suffix: str) -> str:
    return f"{cls.name}-bench-{suffix}"


def _stage(index: int, db: Database, suffix: str, reset: OffsetReset = "latest") -> Stage:
    """A journal stage with a group id of its own, so a shared broker's old offsets don't count."""
    cls = _CLASSES[index]
    args = (db, BehaviourRules()) if cls is BehaviourStage else (db,)
    # From the end of each topic: a shared broker holds earlier runs' messages. With two processes
    # per group, from the start: a partition moved by a late rebalance before its first commit
    # would otherwise start at its end and skip what came meanwhile; the run's Kafka topics are
    # its own (BenchBus), so their start is this run's.
    sub = type(cls.__name__, (cls,), {"name": _group(cls, suffix), "offset_reset": reset})
    return sub(*args)


def journal_stages(db: Database, suffix: str) -> list[Stage]:
    """The four journal stages, in pipeline order, with group ids of their own."""
    return [_stage(i, db, suffix) for i in range(len(_CLASSES))]


def fill_wait_s(stage: Stage, variant: Variant = "after") -> float:
    """How long the stage's runner gathers a batch, as the desk's wiring sets it (``before``: none)."""
    if isinstance(stage, BehaviourStage) and variant == "after":
        return Config().behaviour_batch_wait_ms / 1000
    return 0.0


class InProcess:
    """The four stages on threads of this process, sharing its bus and database, as in the app."""

    def __init__(self, bus: Bus, db: Database, suffix: str, variant: Variant = "after") -> None:
        self.runners = [
            StageRunner(s, bus, poll_timeout=0.05, fill_wait_s=fill_wait_s(s, variant), fill_when_busy=True)
            for s in journal_stages(db, suffix)
        ]
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
    index: int,
    backend: str,
    folder: str,
    db_path: str,
    suffix: str,
    ready: Any,
    stop: Any,
    report: Any,
    reset: OffsetReset = "latest",
) -> None:
    """One stage in a process of its own, with its own bus client and database writer."""
    bus = make_bus(backend, folder, shared=True, run=suffix)
    db = open_store(db_path)
    stage = _stage(index, db, suffix, reset)
    runner = StageRunner(stage, bus, poll_timeout=0.05, fill_wait_s=fill_wait_s(stage), fill_when_busy=True)
    tune_gc()
    tune_switching(Config().switch_interval_ms)  # as build_runtime does in a stage process
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
    """Each stage in ``groups`` processes of its own, one consumer group per stage (spawned, so
    nothing of this process is inherited)."""

    def __init__(self, backend: str, folder: Path, store_spec: str, suffix: str, groups: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop_event, self.report = ctx.Event(), ctx.Queue()
        indexes = [i for i in range(len(_CLASSES)) for _ in range(groups)]
        reset: OffsetReset = "earliest" if groups > 1 else "latest"
        readies = [ctx.Event() for _ in indexes]
        self.procs = [
            ctx.Process(
                target=_stage_process,
                name=f"stage-{i}-{k}",
                daemon=True,
                args=(i, backend, str(folder), store_spec, suffix, readies[k], self.stop_event, self.report, reset),
            )
            for k, i in enumerate(indexes)
        ]
        for p in self.procs:
            p.start()
        for p, ready in zip(self.procs, readies, strict=True):
            while not ready.wait(0.5):
                if not p.is_alive():
                    raise SystemExit(f"a stage process exited with code {p.exitcode} before it started")
        self.groups = {_group(cls, suffix) for cls in _CLASSES}
        self.members = groups

    def stop(self) -> dict[str, tuple[int, ...]]:
        """Stop the stages; return each one's processed, produced, dead-lettered, errors and CPU seconds."""
        self.stop_event.set()
        reports = [self.report.get(timeout=60) for _ in self.procs]
        health = {f"{name}#{n}": h for n, (name, h) in enumerate(sorted(reports))}
        for p in self.procs:
            p.join(30)
        return health


def wait_until_joined(bus: Bus, groups: set[str], members: int = 1) -> None:
    """Wait until every stage's group has ``members`` members and they found the end of their
    topics: they start from there, so a message published earlier would be missed."""
    deadline = time.time() + 60
    while time.time() < deadline:
        joined = {g.group_id for g in bus.describe_groups() if g.group_id in groups and g.members >= members}
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


def open_store(spec: str, variant: Variant = "after") -> Database:
    """The store a run writes: a PostgreSQL URL, or a SQLite file's path (``before``: written by a
    writer thread of its own and checkpointed inside its commits, the older ways)."""
    if spec.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresDatabase

        return PostgresDatabase(spec)  # type: ignore[return-value]
    if variant == "before":
        return Database(spec, checkpoint="writer", writer="thread")
    return Database(spec)


def open_bus(backend: str, folder: Path, processes: bool, suffix: str, variant: Variant) -> Bus:
    """The run's bus; ``before`` is the embedded bus whose every commit wakes every idle consumer."""
    if variant == "before":
        from pipeline.bus.embedded import EmbeddedBus

        return EmbeddedBus(folder / "bus.db", wake_scope="all")
    return make_bus(backend, str(folder), shared=processes, run=suffix)


def run_once(
    backend: str,
    n: int,
    rate: float | None,
    folder: Path,
    processes: bool = False,
    idle_seconds: float = 0.0,
    database_url: str | None = None,
    groups: int = 1,
    users: int = 1,
    variant: Variant = "after",
) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:8]
    user = f"bench-{suffix}"
    names = [user] if users == 1 else spread_users(user, users)
    # as build_runtime does for the app (before: Python's own 5 ms)
    tune_switching(5.0 if variant == "before" else Config().switch_interval_ms)
    bus = open_bus(backend, folder, processes, suffix, variant)
    bus.create_topics(CATALOG.values())
    spec = database_url or str(folder / f"desk-{suffix}.db")
    db = open_store(spec, variant)
    stages = Processes(backend, folder, spec, suffix, groups) if processes else InProcess(bus, db, suffix, variant)
    producer = bus.producer()
    # each user's trades (an even number: every buy is closed by the next sell), round robin
    per_user = [raw_trades(n // len(names), u) for u in names]
    messages = [(u, m) for ms in zip(*per_user, strict=True) for u, m in zip(names, ms, strict=True)]
    wait_until_joined(bus, stages.groups, groups)
    pids = [p.pid for p in stages.procs if p.pid] if isinstance(stages, Processes) else [os.getpid()]
    idle = idle_cpu_pct(pids, idle_seconds) if idle_seconds > 0 else None
    sent: dict[str, float] = {}
    start = time.time()
    for i, (owner, (fid, value)) in enumerate(messages):
        if rate:
            due = start + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        sent[fid] = time.time()
        producer.produce(RAW_TRADES, value, key=owner.encode())
        if rate and i % 50 == 0:
            producer.flush(10)
    producer.flush(120)
    deadline = time.time() + max(120.0, n / 500)
    marks = ", ".join("?" * len(names))
    stored = 0
    while time.time() < deadline:
        stored = db.query(f"SELECT count(*) AS n FROM journal_trades WHERE user_id IN ({marks})", tuple(names))[0]["n"]
        if stored >= n:
            break
        time.sleep(0.25)  # the end is the last row's stored_at; counting often would slow the stages
    end = time.time()
    rows = db.query(f"SELECT fill_ids, stored_at FROM journal_trades WHERE user_id IN ({marks})", tuple(names))
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
        "variant": variant,
        "store": "postgres" if database_url else "sqlite",
        "processes": processes,
        "groups": groups,
        "users": len(names),
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
    parser.add_argument(
        "--groups", type=int, choices=(1, 2), default=1, help="processes per stage group (2 needs --processes)"
    )
    parser.add_argument("--users", type=int, default=1, help="users the trades are spread over, one per partition")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run each repeat before (older settings) and after, alternating; embedded bus, SQLite, threads only",
    )
    args = parser.parse_args()
    if args.compare and (args.backend != "embedded" or args.processes or args.store != "sqlite"):
        parser.error(
            "--compare runs the embedded bus with a SQLite store on threads: drop --backend/--processes/--store"
        )
    if args.groups > 1 and not (args.processes and args.backend == "kafka"):
        parser.error("--groups 2 runs two processes per stage on Kafka: add --processes --backend kafka")
    if args.trades % (2 * args.users):
        parser.error(f"--trades must be a multiple of 2 x --users ({2 * args.users}): each user's buys are closed")
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
    runs: dict[Variant, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeat):
            order: tuple[Variant, ...] = ("before", "after") if i % 2 == 0 else ("after", "before")
            for variant in order if args.compare else ("after",):
                result = run_once(
                    args.backend,
                    args.trades,
                    args.rate,
                    Path(folder) / f"{i}-{variant}",
                    args.processes,
                    args.idle_seconds,
                    url_of(i),
                    args.groups,
                    args.users,
                    variant,
                )
                runs[variant].append(result)
                print(json.dumps(result), flush=True)
    for variant, done in runs.items():
        if len(done) > 1:
            _print_median(args, store, variant, done)


def _print_median(args: argparse.Namespace, store: str, variant: Variant, runs: list[dict[str, Any]]) -> None:
    print(
        json.dumps(
            {
                "backend": args.backend,
                "variant": variant,
                "store": store,
                "processes": args.processes,
                "groups": args.groups,
                "users": args.users,
                "trades": args.trades,
                "rate": args.rate,
                "stat": "median",
                **{
                    k: statistics.median(r[k] for r in runs)
                    for k in ("throughput_per_s", "latency_ms_p50", "latency_ms_p99", "latency_ms_p999")
                },
                "idle_cpu_pct": None
                if any(r["idle_cpu_pct"] is None for r in runs)
                else statistics.median(r["idle_cpu_pct"] for r in runs),
            }
        )
    )


if __name__ == "__main__":
    main()
