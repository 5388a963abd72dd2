"""STAGE_PROCESSES: the journal's stages as child processes of the runtime, on the embedded bus in a
fresh DATA_DIR (so the children's standard group ids are their own): trades flow end to end, a
killed child is started again and resumes from its group's last commit, and stopping the runtime
stops every child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.journal import raw_trades
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.processes import StageProcess
from pipeline.topics import RAW_TRADES
from pipeline.wiring import build_runtime

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


def _wait(what: str, check, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
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
        _wait("the children to join their groups", lambda: {
            g.group_id for g in runtime.groups() if g.members} >= {"normalizer", "enricher", "behaviour"})
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
        assert runtime.db.query("SELECT count(DISTINCT trade_id) AS n FROM journal_trades WHERE user_id=?",
                                (user,))[0]["n"] == 400
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
        "time.sleep(600)\n")
    env = {**os.environ, "DATA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "", "STAGE_PROCESSES": ""}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
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
