"""``kill -9`` during an import, at 5 random moments, with the journal's stages as threads of the
killed process and as processes of their own (embedded bus). After each kill the trader does what
the page says: import the file again. In the end every accepted fill is stored once, the journal
holds exactly the records one clean normalizer run makes, and SQLite's integrity check passes on
the store and on the bus."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.bus.base import read_to_end
from pipeline.bus.embedded import EmbeddedBus
from pipeline.journal.importer import import_file
from pipeline.messages import decode
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG, RAW_TRADES
from storage.db import Database

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
FILLS = 4000
KILLS = 5
USER = "killer"
STAGES = "normalizer,enricher,behaviour,journal-store"
PAIRS = [("BTCUSDT", "BTC", 60000.0), ("ETHUSDT", "ETH", 3000.0), ("SOLUSDT", "SOL", 150.0)]

CHILD = f"""
import os, sqlite3, sys, time
data_dir, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
expected, records = int(sys.argv[4]), int(sys.argv[5])
os.environ.update({{
    "DATA_DIR": data_dir, "STAGES": "{STAGES}", "USER_ID": "{USER}", "KAFKA_BOOTSTRAP_SERVERS": "",
    "EMBEDDED_SESSION_TIMEOUT_MS": "2000", "EMBEDDED_BUS_SHARED": "1", "DISCORD_WEBHOOK_URL": "",
    "NOTIFY_WEBHOOK_URL": "", "STAGE_PROCESSES": "{STAGES}" if mode == "processes" else "",
}})
from pipeline.config import load_config
from pipeline.journal.importer import import_file
from pipeline.wiring import build_runtime
rt = build_runtime(load_config(os.environ))
print("importing", flush=True)
report = import_file(open(path, "rb").read(), user_id="{USER}", producer=rt.producer, db=rt.db)
print("imported", report.accepted, report.duplicates, flush=True)
sql = sqlite3.connect(os.path.join(data_dir, "desk.db"), timeout=30)
deadline = time.monotonic() + 150
while time.monotonic() < deadline:
    fills = sql.execute("SELECT count(*) FROM journal_fills").fetchone()[0]
    trades = sql.execute("SELECT count(*) FROM journal_trades").fetchone()[0]
    if fills == expected and trades == records:
        break
    time.sleep(0.2)
print("stored", fills, flush=True)
rt.stop()
"""


def export(path: Path, n: int, seed: int) -> None:
    """A Binance spot export of ``n`` fills, oldest first, on three pairs, buys and sells mixed."""
    rng = random.Random(seed)
    start = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
    lines = ["Date(UTC),Pair,Side,Price,Executed,Amount,Fee"]
    for i in range(n):
        pair, base, price = rng.choice(
            [("BTCUSDT", "BTC", 60000.0), ("ETHUSDT", "ETH", 3000.0), ("SOLUSDT", "SOL", 150.0)]
        )
        price = round(price * rng.uniform(0.9, 1.1), 2)
        qty = round(rng.uniform(0.01, 2.0), 4)
        when = datetime.fromtimestamp(start + i * 37, UTC).strftime("%Y-%m-%d %H:%M:%S")
        side = rng.choice(["BUY", "SELL"])
        lines.append(f"{when},{pair},{side},{price},{qty}{base},{price * qty:.8f}USDT,0.1USDT")
    path.write_text("\n".join(lines) + "\n")


def reference_ids(tmp: Path, data: bytes, user: str = USER) -> set[str]:
    """The trade ids one clean normalizer run over the file makes (no kills, no stages)."""
    bus = EmbeddedBus(tmp / "ref-bus.db")
    bus.create_topics(CATALOG.values())
    db = Database(tmp / "ref-desk.db")
    try:
        import_file(data, user_id=user, producer=bus.producer(), db=db)
        raws = [decode(RAW_TRADES, r.value or b"") for r in read_to_end(bus, RAW_TRADES, "ref")]
        normalizer = Normalizer(db)
        records = normalizer.process_batch([normalizer.prepare(m) for m in raws])
        live: dict[str, bool] = {}
        for t in records:
            live[t.trade_id] = not t.void  # type: ignore[attr-defined]
        return {i for i, alive in live.items() if alive}
    finally:
        db.close()
        bus.close()


def run(data_dir: Path, mode: str, path: Path, records: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(data_dir), mode, str(path), str(FILLS), str(records)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"the child ended ({proc.returncode}) before {prefix!r}: {proc.stderr.read()}")  # type: ignore[union-attr]
    raise AssertionError(f"no {prefix!r} in {timeout} s")


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child and every stage process it started (its session)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def count_fills(data_dir: Path) -> int:
    if not (data_dir / "desk.db").exists():
        return 0
    with sqlite3.connect(data_dir / "desk.db", timeout=30) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM journal_fills").fetchone()[0])
        except sqlite3.OperationalError:  # killed before the store's first migration
            return 0


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_kill_9_during_an_import_loses_and_doubles_nothing(tmp_path: Path, mode: str) -> None:
    rng = random.Random(f"kill-{mode}")
    path = tmp_path / "binance.csv"
    export(path, FILLS, seed=7)
    expected = reference_ids(tmp_path, path.read_bytes())
    data_dir = tmp_path / "desk"
    moments: list[float] = []
    stored_at_kill: list[int] = []
    for _ in range(KILLS):
        child = run(data_dir, mode, path, len(expected))
        try:
            wait_line(child, "importing")
            moment = rng.uniform(0.0, 2.5)  # during the publish, or while the stages store
            moments.append(round(moment, 2))
            time.sleep(moment)
        finally:
            kill_group(child)
        stored_at_kill.append(count_fills(data_dir))
    assert any(n < FILLS for n in stored_at_kill), stored_at_kill  # the kills interrupted the work
    final = run(data_dir, mode, path, len(expected))
    try:
        wait_line(final, "imported")
        stored = wait_line(final, "stored", timeout=180)
        assert final.wait(60) == 0, final.stderr.read()  # type: ignore[union-attr]
    finally:
        if final.poll() is None:
            kill_group(final)
    assert stored.split() == ["stored", str(FILLS)], (moments, stored_at_kill)
    with sqlite3.connect(data_dir / "desk.db") as conn:
        fills = conn.execute("SELECT count(*), count(DISTINCT fill_id) FROM journal_fills").fetchone()
        journal = {r[0] for r in conn.execute("SELECT trade_id FROM journal_trades WHERE user_id=?", (USER,))}
    assert fills == (FILLS, FILLS)  # stored = accepted, each once
    assert journal == expected  # nothing lost, nothing doubled, nothing left that a clean run retracts
    assert integrity(data_dir / "desk.db") == "ok" and integrity(data_dir / "bus.db") == "ok"
