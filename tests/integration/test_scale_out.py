"""Several hosts, one desk: the journal's stages in two process groups ("hosts", each a process
with a DATA_DIR of its own: tests/integration/scale_out_host.py), on the tests' Kafka broker and
the tests' PostgreSQL. The consumer groups split raw-trades' partitions between the hosts; the
journal read through either host's configuration is the same and whole; and while trades keep
coming, partitions move five times (a host killed with SIGKILL, started again, the other stopped
with SIGTERM and started again, the first stopped) with every trade stored exactly once: stored =
published after each move. Then the API (its journal routes, served over each host's configuration:
its own DATA_DIR and tokens, the shared PostgreSQL) answers with identical bodies from either host,
and the Journal page rendered by Streamlit's AppTest for each host's configuration shows the same
tiles, the whole journal's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

import runtime
from bench.bus import BenchBus
from bench.journal import _CLASSES, _group, raw_trades
from pipeline.api.app import create_app
from pipeline.api.context import loopback_context
from pipeline.bus.base import Bus, Producer, partition_for
from pipeline.bus.kafka import KafkaBus
from pipeline.config import Config, load_config
from pipeline.topics import CATALOG, RAW_TRADES
from storage import journal
from storage.db import Database, open_database

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]
ROOT = Path(__file__).resolve().parents[2]
PER_USER = 480  # trades per user, in six slices of 80 (even: every buy is closed by the next sell)


def _wait(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Host:
    """One host: ``python -m tests.integration.scale_out_host RUN`` with its own DATA_DIR."""

    def __init__(self, name: str, run: str, env: dict[str, str]) -> None:
        self.name, self.run, self.env = name, run, env
        self.proc: subprocess.Popen[str] | None = None
        self.processed: dict[str, int] = {}
        self.assigned: dict[str, list[list[Any]]] = {}
        self.ready = threading.Event()

    def start(self) -> None:
        self.ready.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.scale_out_host", self.run],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        _wait(f"host {self.name} to start", self.ready.is_set, timeout=90)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
            elif line.startswith("{"):
                report = json.loads(line)
                self.processed, self.assigned = report["processed"], report["assigned"]

    def stop(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)
        self.proc = None
        self.processed, self.assigned = {}, {}

    def raw_partitions(self, group: str) -> set[int]:
        return {p for t, p in self.assigned.get(group, []) if t == RAW_TRADES}


def _api_bodies(config: Config, db: Database, bus: Bus, producer: Producer, users: list[str]) -> dict[str, list[Any]]:
    """Each user's journal routes' bodies from an API over one host's configuration: the host's
    own DATA_DIR (its own token file: each user's token is that host's) and its store."""
    ctx = loopback_context(bus, producer, db, users[0], config.data_dir)
    app = create_app(ctx)
    bodies: dict[str, list[Any]] = {}
    for user in users:
        token = ctx.tokens.token_for(user)
        client = TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"})
        got = []
        for path in ("/api/trades?limit=100000", "/api/journal/summary", "/api/alerts"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            got.append(response.json())
        bodies[user] = got
    return bodies


def _journal_page_tiles(env: dict[str, str], user: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The Journal page's tiles rendered by AppTest with one host's configuration (its DATA_DIR,
    the shared PostgreSQL; no stages, the embedded bus: the page reads the store)."""
    monkeypatch.chdir(ROOT)
    for name in ("DATA_DIR", "DATABASE_URL"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.setenv("STAGES", "")
    monkeypatch.setenv("USER_ID", user)
    runtime.get_runtime.clear()
    try:
        at = AppTest.from_file(str(ROOT / "views" / "journal.py"), default_timeout=60)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return {m.label: m.value for m in at.metric}
    finally:
        runtime.get_runtime().stop()
        runtime.get_runtime.clear()


def _users(partitions: int, run: str) -> list[str]:
    """One user per partition of raw-trades (trades are keyed by user)."""
    users: dict[int, str] = {}
    n = 0
    while len(users) < partitions:
        user = f"scale-{run}-{n}"
        users.setdefault(partition_for(user.encode(), partitions), user)
        n += 1
    return [users[p] for p in range(partitions)]


@pytest.fixture
def desk(kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    bus = BenchBus(KafkaBus(kafka_bootstrap), run)
    bus.create_topics(CATALOG.values())
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DISCORD_", "NOTIFY_", "DATABASE_", "DATA_"))
    }
    hosts = []
    for name in ("a", "b"):
        env = {**base, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": postgres_url}
        env["DATA_DIR"] = str(tmp_path / f"host-{name}")
        hosts.append(Host(name, run, env))
    try:
        yield {"bus": bus, "hosts": hosts, "run": run}
    finally:
        for host in hosts:
            host.stop(signal.SIGKILL)
        bus.delete_groups([_group(cls, run) for cls in _CLASSES])
        bus.close()  # deletes the run's topics


def test_two_hosts_split_the_work_show_one_journal_and_lose_or_double_nothing_as_partitions_move(
    desk: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, (a, b), run = desk["bus"], desk["hosts"], desk["run"]
    groups = [_group(cls, run) for cls in _CLASSES]
    partitions = CATALOG[RAW_TRADES].partitions
    users = _users(partitions, run)
    trades = {u: raw_trades(PER_USER, u) for u in users}
    slices = [slice(i * PER_USER // 6, (i + 1) * PER_USER // 6) for i in range(6)]
    producer = bus.producer()
    configs = [load_config(h.env) for h in (a, b)]
    stores = [open_database(c) for c in configs]  # what each host's pages and API read
    published = 0

    def members() -> dict[str, int]:
        return {g.group_id: g.members for g in bus.describe_groups() if g.group_id in groups}

    def publish(part: slice, pace_s: float = 0.0) -> None:
        nonlocal published
        for u in users:
            for _, value in trades[u][part]:
                producer.produce(RAW_TRADES, value, key=u.encode())
                if pace_s:
                    time.sleep(pace_s)
        assert producer.flush(30) == 0
        published += sum(len(trades[u][part]) for u in users)

    def stored() -> int:
        return sum(len(journal.trades(stores[0], u)) for u in users)  # a lot per buy, a round trip per sell

    def whole() -> bool:
        return stored() == published

    try:
        a.start()
        b.start()
        _wait("both hosts in every group", lambda: members() == dict.fromkeys(groups, 2))
        normalizer = _group(_CLASSES[0], run)

        def split() -> bool:  # raw-trades' partitions, each on exactly one host, both hosts with some
            mine, theirs = a.raw_partitions(normalizer), b.raw_partitions(normalizer)
            return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == set(range(partitions))

        _wait("the normalizer group to split raw-trades' partitions between the hosts", split)

        publish(slices[0])
        _wait("the first slice stored", whole)
        _wait("both hosts' counters", lambda: normalizer in a.processed and normalizer in b.processed)
        # The partitions were split: each host normalized some of the trades, none twice.
        assert a.processed[normalizer] > 0 and b.processed[normalizer] > 0
        assert a.processed[normalizer] + b.processed[normalizer] == published

        # Five moves of partitions while trades keep coming: a dies (its partitions go to b once its
        # session times out), a comes back, b stops cleanly and leaves, b comes back, a stops.
        moves: list[Callable[[], None]] = [
            lambda: a.stop(signal.SIGKILL),
            a.start,
            lambda: b.stop(signal.SIGTERM),
            b.start,
            lambda: a.stop(signal.SIGTERM),
        ]
        for n, move in enumerate(moves, start=1):
            mover = threading.Thread(target=publish, args=(slices[n], 0.002))
            mover.start()
            time.sleep(0.3)
            move()
            mover.join()
            _wait(f"every trade stored after move {n}", whole, timeout=180)
            if a.proc is not None and b.proc is not None:
                _wait("both hosts in every group again", lambda: members() == dict.fromkeys(groups, 2))
        time.sleep(2.0)  # anything doubled would show now

        def settled() -> bool:
            # Every group has committed past all of its input. A stage commits only once its outputs
            # are delivered, so the behaviour stage's last alerts are stored too: they trail the trades
            # (a fresh clone's run read one host's API while an alert was still on its way).
            lags = {g.group_id: g.lag for g in bus.describe_groups() if g.group_id in groups}
            return len(lags) == len(groups) and not any(lags.values())

        _wait("every stage to consume all of its input", settled, timeout=180)

        for user in users:
            summaries = [journal.journal_summary(s, user) for s in stores]
            assert summaries[0] == summaries[1]  # either host's pages show the same journal
            assert summaries[0]["trades"] == PER_USER // 2 and summaries[0]["fills"] == PER_USER
            rows = stores[1].query(
                "SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM journal_trades WHERE user_id = ?", (user,)
            )[0]
            assert rows["n"] == rows["d"] == PER_USER
            fills = stores[0].query("SELECT count(*) AS n FROM journal_fills WHERE user_id = ?", (user,))[0]["n"]
            assert fills == PER_USER
        assert stored() == published == PER_USER * len(users)

        # Every journal route, served over either host's configuration, answers the same bodies.
        api = [_api_bodies(c, s, bus, producer, users) for c, s in zip(configs, stores, strict=True)]
        assert api[0] == api[1]
        for user in users:
            listed, summary, _ = api[0][user]
            assert len(listed) == PER_USER and summary == journal.journal_summary(stores[0], user)
            assert summary["trades"] == PER_USER // 2 and summary["fills"] == PER_USER
        # The Journal page shows the same tiles, the whole journal's, from either host.
        tiles = [_journal_page_tiles(h.env, users[0], monkeypatch) for h in (a, b)]
        assert tiles[0] == tiles[1]
        assert tiles[0]["Closed trades"] == f"{PER_USER // 2:,}"
    finally:
        producer.close()
        for s in stores:
            s.close()
