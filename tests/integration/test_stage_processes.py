"""STAGE_PROCESSES: the journal's stages as child processes of the runtime, on the embedded bus in a
fresh DATA_DIR (so the children's standard group ids are their own): trades flow end to end, a
killed child is started again and resumes from its group's last commit, and stopping the runtime
stops every child."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.journal import raw_trades
from pipeline.bus.base import partition_for, read_to_end
from pipeline.bus.embedded import EmbeddedBus
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.messages import decode, encode
from pipeline.processes import StageProcess
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG, NORMALIZED_TRADES, RAW_TRADES
from pipeline.wiring import build_runtime
from storage.db import Database

pytestmark = pytest.mark.timeout(240)

JOURNAL = "normalizer,enricher,behaviour,journal-store"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait(what: str, check, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_stage_processes_must_be_stages_that_run() -> None:
    with pytest.raises(ConfigError, match=r"STAGE_PROCESSES has \['ml'\], which STAGES does not run"):
        load_config({"STAGES": JOURNAL, "STAGE_PROCESSES": "normalizer,ml"})
    config = load_config({"STAGES": JOURNAL, "STAGE_PROCESSES": " normalizer, enricher "})
    assert config.stage_processes == ("normalizer", "enricher") and config.bus_shared
    assert not load_config({"STAGES": JOURNAL}).bus_shared
    assert load_config({"STAGES": JOURNAL, "EMBEDDED_BUS_SHARED": "1"}).bus_shared
    child = StageProcess("normalizer", Path("data"), env={"STAGE_PROCESSES": "normalizer", "X": "1"})
    assert child.env["STAGE_PROCESSES"] == "" and child.env["EMBEDDED_BUS_SHARED"] == "1" and child.env["X"] == "1"


def test_journal_stages_as_processes_flow_restart_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "DISCORD_WEBHOOK_URL", "NOTIFY_WEBHOOK_URL"):
        monkeypatch.setenv(key, "")  # the embedded bus, whatever a .env here says
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STAGES", JOURNAL)
    monkeypatch.setenv("STAGE_PROCESSES", "normalizer,enricher,behaviour")
    config = load_config(dict(os.environ))
    runtime = build_runtime(config)
    try:
        children = [w for w in runtime.workers if isinstance(w, StageProcess)]
        assert [w.name for w in children] == ["normalizer", "enricher", "behaviour"]
        assert [w.kind for w in runtime.workers if not isinstance(w, StageProcess)] == ["stage"]  # journal-store
        _wait("three children", lambda: all(w.pid for w in children))
        _wait(
            "the children to join their groups",
            lambda: {g.group_id for g in runtime.groups() if g.members} >= {"normalizer", "enricher", "behaviour"},
        )
        user = "proc-user"
        producer = runtime.producer

        def publish(messages: list[tuple[str, bytes]]) -> None:
            for _, value in messages:
                producer.produce(RAW_TRADES, value, key=user.encode())
            assert producer.flush(30) == 0

        def stored() -> int:
            return runtime.db.query("SELECT count(*) AS n FROM journal_trades WHERE user_id=?", (user,))[0]["n"]

        first = raw_trades(400, user)
        publish(first[:200])
        _wait("200 rows", lambda: stored() == 200)

        # Kill the normalizer's process: it is started again and goes on from its group's last commit.
        normalizer = children[0]
        old_pid = normalizer.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        _wait("a new normalizer process", lambda: normalizer.pid not in (None, old_pid) and normalizer.restarts == 1)
        assert "exited with code -9" in (normalizer.health.last_error or "")
        publish(first[200:])
        _wait("400 rows", lambda: stored() == 400)
        assert (
            runtime.db.query("SELECT count(DISTINCT trade_id) AS n FROM journal_trades WHERE user_id=?", (user,))[0][
                "n"
            ]
            == 400
        )
        assert (tmp_path / "logs" / "normalizer.log").stat().st_size > 0
        pids = [w.pid for w in children]
        assert all(pid is not None and _alive(pid) for pid in pids)
    finally:
        runtime.stop()
    assert all(w.pid is None for w in children)
    assert not any(_alive(pid) for pid in pids if pid is not None)


def test_a_child_stops_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    """A runtime killed with SIGKILL cannot stop its children; they notice and stop themselves."""
    script = (
        "import os, subprocess, sys, time\n"
        "env = {**os.environ, 'PIPELINE_PARENT_PID': str(os.getpid())}\n"
        "child = subprocess.Popen([sys.executable, '-m', 'pipeline', 'run', '--stage', 'journal-store'], env=env)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "DATA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "", "STAGE_PROCESSES": ""}
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        _wait("the child to start its stage", lambda: (tmp_path / "desk.db").exists())
        assert _alive(child)
        parent.kill()
        parent.wait()
        _wait("the orphaned child to stop", lambda: not _alive(child), timeout=30)
    finally:
        parent.kill()


def _user_on_partition(partition: int, partitions: int) -> str:
    n = 0
    while partition_for(f"kill-user-{n}".encode(), partitions) != partition:
        n += 1
    return f"kill-user-{n}"


def _write_locked(path: Path) -> bool:
    """Tell whether some connection holds the database's write lock (without waiting for it)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return True
    finally:
        conn.close()


def test_a_stage_process_killed_mid_batch_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """``python -m pipeline run --stage normalizer`` under ``StageProcess`` is killed with SIGKILL
    while it is inside a batch's write: a trigger the test puts on the ledger spins when the second
    batch's 100th fill goes in, so the child holds the write lock with part of the batch written and
    nothing committed. Killed there, started again by ``StageProcess``, it takes the batch again: every fill
    is in the ledger once, and normalized-trades carries each record once, as one normalizer run over
    the same trades makes them."""
    bus = EmbeddedBus(tmp_path / "bus.db", shared=True)
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    partitions = CATALOG[RAW_TRADES].partitions
    # The killed member keeps its partitions until its session expires (30 s); a restarted member
    # joins after it and gets the last partition at once (range assignment), so the trades go there.
    user = _user_on_partition(partitions - 1, partitions)
    trades = raw_trades(400, user)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "", "DISCORD_WEBHOOK_URL": "", "NOTIFY_WEBHOOK_URL": ""}
    child = StageProcess("normalizer", tmp_path, env=env, restart_pause_s=3.0)
    producer = bus.producer()
    sql = sqlite3.connect(tmp_path / "desk.db", timeout=30, isolation_level=None)

    def fills() -> int:
        return db.query("SELECT count(*) AS n FROM journal_fills WHERE user_id=?", (user,))[0]["n"]

    def committed() -> int | None:
        for g in bus.describe_groups():
            for p in g.partitions if g.group_id == "normalizer" else ():
                if (p.topic, p.partition) == (RAW_TRADES, partitions - 1):
                    return p.committed
        return None

    def publish(batch: list[tuple[str, bytes]]) -> None:
        for _, value in batch:
            producer.produce(RAW_TRADES, value, key=user.encode())
        assert producer.flush(30) == 0

    child.start()
    try:
        _wait(
            "the child to join its group",
            lambda: any(g.group_id == "normalizer" and g.members for g in bus.describe_groups()),
        )
        publish(trades[:200])
        _wait("the first 200 fills committed", lambda: fills() == 200 and committed() == 200)

        spin_at = trades[299][0]  # the 100th fill of the next 200
        sql.execute("CREATE TABLE spin (x INTEGER)")
        sql.executemany("INSERT INTO spin VALUES (?)", [(i,) for i in range(1000)])
        sql.execute(
            f"CREATE TRIGGER spin_fill BEFORE INSERT ON journal_fills WHEN NEW.fill_id = '{spin_at}' "
            "BEGIN SELECT count(*) FROM spin a, spin b, spin c, spin d; END"
        )
        publish(trades[200:])
        _wait("the child to be inside the batch's write", lambda: _write_locked(tmp_path / "desk.db"), timeout=60)
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        sql.execute("DROP TRIGGER spin_fill")  # waits for the lock the dead child held
        # killed mid-batch: the batch was being written and none of it is committed, in the store or the bus
        assert fills() == 200 and committed() == 200

        _wait("the child started again", lambda: child.restarts == 1 and child.pid not in (None, pid))
        assert "exited with code -9" in (child.health.last_error or "")
        _wait("all 400 fills committed", lambda: fills() == 400 and committed() == 400)
    finally:
        child.stop()
        sql.close()
    assert db.query("SELECT count(DISTINCT fill_id) AS n FROM journal_fills WHERE user_id=?", (user,))[0]["n"] == 400

    published = [
        r.value
        for r in read_to_end(bus, NORMALIZED_TRADES, "kill-test-reader")
        if r.key == user.encode() and r.value is not None
    ]
    reference_db = Database(tmp_path / "reference.db")
    reference = Normalizer(reference_db)
    expected = reference.process_batch([reference.prepare(decode(RAW_TRADES, v)) for _, v in trades])
    reference_db.close()
    db.close()
    bus.close()
    assert len(published) == len(expected) == 400  # nothing doubled
    assert sorted(published) == sorted(encode(m) for m in expected)  # nothing lost
