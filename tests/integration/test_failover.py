"""The decision stage and the virtual exchange fail over from one host to another: both run on host
A (a process with a DATA_DIR of its own: tests/integration/failover_host.py) on the tests' Kafka
broker and the tests' PostgreSQL, A is killed with SIGKILL mid-stream, signals keep coming while no
host runs them, and host B (another DATA_DIR, the same Kafka and PostgreSQL, the same consumer
groups) takes the partitions over from A's last commits and rebuilds the paper account from
``crypto.orders``. The orders afterwards are the uninterrupted run's (the stream of
tests/integration/test_trading_stages.py, whose final states an uninterrupted run gives): none
lost, none filled twice, and every order's last message on the topic says its final state. Both
hosts' configurations read the same orders and account from the shared store (the Portfolio page's
doors)."""

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

from pipeline.bus.kafka import KafkaBus
from pipeline.config import load_config
from pipeline.topics import CATALOG
from storage import orders as orders_door
from storage.db import open_database
from tests.integration.test_trading_stages import (
    MODEL,
    STEP_MS,
    STREAM,
    Reader,
    _expected,
    _send,
    _signal,
    _symbol,
    _tick,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Host:
    """One host: ``python -m tests.integration.failover_host SUFFIX ACCOUNT MODEL`` with its own DATA_DIR."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.proc: subprocess.Popen[str] | None = None
        self.state: dict[str, Any] = {}
        self.ready = threading.Event()
        self.log = open(Path(env["DATA_DIR"]).parent / f"host-{name}.log", "a")  # noqa: SIM115 - closed by the fixture

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.failover_host", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
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
                self.state = json.loads(line)

    def processed(self) -> int:
        counts = self.state.get("processed", {})
        return min(counts.values()) if len(counts) == 2 else 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(60)
        self.proc = None


@pytest.fixture
def hosts(kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    bus = KafkaBus(kafka_bootstrap)
    bus.create_topics(CATALOG.values())
    run = uuid.uuid4().hex[:8]
    account = f"failover-{run}"
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DISCORD_", "NOTIFY_", "DATABASE_", "DATA_"))
    }
    made = []
    for name in ("a", "b"):
        env = {**base, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": postgres_url}
        env["DATA_DIR"] = str(tmp_path / f"host-{name}")
        made.append(Host(name, [f"failover-{run}", account, MODEL], env))
    try:
        yield {"bus": bus, "hosts": made, "account": account, "run": run}
    finally:
        for host in made:
            host.kill()
            host.log.close()
        bus.delete_groups([f"decision-failover-{run}", f"virtual-exchange-failover-{run}"])
        bus.close()


def test_decision_and_exchange_killed_on_one_host_go_on_on_another_with_no_order_lost_or_doubled(
    hosts: dict[str, Any],
) -> None:
    bus, (a, b), account, run = hosts["bus"], hosts["hosts"], hosts["account"], hosts["run"]
    producer = bus.producer()
    reader = Reader(bus, f"reader-failover-{run}", needle=account)
    sym, other = _symbol(), _symbol()
    base = int(time.time() * 1000)
    expected = _expected(sym, base)

    def step(i: int) -> None:
        price, sig = STREAM[i]
        ts = base + i * STEP_MS
        _send(producer, _tick(sym, ts, price), _signal(sym, ts, price, sig, 0.9))
        time.sleep(0.15)

    def warm(host: Host) -> None:  # the stages start at their topics' end: tick another symbol until both read
        deadline = time.monotonic() + 90
        while host.processed() == 0:
            assert time.monotonic() < deadline, f"host {host.name}'s stages did not join: {host.state}"
            _send(producer, _tick(other, int(time.time() * 1000), 1.0))
            time.sleep(0.25)

    def last_states() -> dict[str, str]:  # each order's last message on the topic
        return {o.order_id: o.status for o in reader.orders()}

    try:
        a.start()
        warm(a)
        for i in range(9):
            step(i)
        step(9)
        a.kill()  # host A dies mid-stream: whatever it read of step 9 it may not have committed
        for i in (10, 11):  # no host runs the stages
            step(i)
        b.start()  # joins A's groups; gets A's partitions once A's session times out
        for i in range(12, len(STREAM)):
            step(i)
        want = {oid: status for oid, (status, _) in expected.items()}
        reader.read(lambda r: last_states() == want, timeout=120)
        assert last_states() == want, (last_states(), b.state)
        # B made and filled those orders. Its report, printed every 0.1 s, may lag the topic: a stage
        # rebuilds at the start of its first batch but counts the batch only once its offsets are
        # committed, after the orders went out (and the venue may have filled them meanwhile).
        _wait("host B's stages rebuilt", lambda: b.state.get("rebuilt") == {"decision": True, "venue": True})
        _wait("host B's stages to count what they processed", lambda: b.processed() > 0)
        assert not b.state["errors"], b.state
        reader.read(timeout=2.0)  # anything doubled would show now
        assert last_states() == want
        # no order was filled twice: every FILLED/CLOSED message of an order names the same fill
        fills: dict[str, set[tuple[float, int]]] = {}
        for o in reader.orders():
            if o.status in ("FILLED", "CLOSED"):
                fills.setdefault(o.order_id, set()).add((o.metadata["fill_price"], o.metadata["filled_at"]))
        assert set(fills) == {oid for oid, status in want.items() if status in ("FILLED", "CLOSED")}
        assert {oid: f for oid, f in fills.items() if len(f) != 1} == {}
        # and the orders' PENDING messages (the decision stage's): one order per decision, the same
        # order if a redelivered batch made it again
        pending: dict[str, set[tuple[Any, ...]]] = {}
        for o in reader.orders():
            if o.status == "PENDING":
                pending.setdefault(o.order_id, set()).add((o.action, o.quantity, o.price, o.timestamp))
        assert set(pending) == set(want) and all(len(p) == 1 for p in pending.values()), pending

        # Either host's configuration reads the same orders, in their final states, from the shared store.
        stores = [open_database(load_config(h.env)) for h in (a, b)]
        try:

            def stored(i: int) -> dict[str, tuple[str, str | None]]:
                frame = orders_door.orders(stores[i], symbol=sym)
                reason = frame["exit_reason"].astype(object).where(frame["exit_reason"].notna(), None)
                return dict(zip(frame["order_id"], zip(frame["status"], reason, strict=True), strict=True))

            deadline = time.monotonic() + 30  # the exchange stores its account at least once a second
            while stored(0) != expected and time.monotonic() < deadline:
                time.sleep(0.2)
            assert stored(1) == stored(0) == expected
            assert orders_door.portfolio_state(stores[0]) == orders_door.portfolio_state(stores[1]) is not None
        finally:
            for s in stores:
                s.close()
    finally:
        b.kill()
        reader.close()
        producer.close()
