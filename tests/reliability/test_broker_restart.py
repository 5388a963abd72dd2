"""The tests' Kafka broker is killed (SIGKILL) while an import is being published and processed, and
started again: the import finishes, every fill is stored once, and the journal is complete.

The run has topics of its own (``bench.bus.BenchBus``), so its stages read them from the start as
the desk's journal stages do (``earliest``): a stage restarted by the outage resumes from its last
commit or the topic's start, never from a new end. About 25 s, most of it the broker's restart.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.bus import BenchBus
from pipeline.bus.kafka import KafkaBus
from pipeline.topics import CATALOG
from storage.db import Database
from tests.conftest import kafka_script
from tests.integration.test_journal_flow import Journal
from tests.reliability.test_kill_import import export, reference_ids

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.timeout(400),
]

FILLS = 3000


def broker_pid() -> int:
    where = dict(line.split("=", 1) for line in kafka_script("where", check=True).stdout.split())
    return int((Path(where["state"]) / "broker.pid").read_text())


def test_a_broker_killed_and_restarted_during_an_import_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    bus = BenchBus(KafkaBus(kafka_bootstrap, session_timeout_ms=6000), uuid.uuid4().hex[:8])
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    journal = Journal(bus, db)
    for r in journal.runners:
        type(r.stage).offset_reset = "earliest"  # the run's own topics: from their start, as the desk reads
    path = tmp_path / "binance.csv"
    export(path, FILLS, seed=11)
    outcome: dict[str, Any] = {}
    journal.start()
    try:

        def run_import() -> None:
            try:
                outcome["report"] = journal.import_(path.read_bytes())
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        importer = threading.Thread(target=run_import)
        importer.start()
        time.sleep(0.3)
        os.kill(broker_pid(), signal.SIGKILL)  # mid-import: rows buffered, some sent, none processed
        time.sleep(3.0)
        started = kafka_script("start", check=False)
        assert started.returncode == 0, started.stderr
        importer.join(180)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["report"].accepted == FILLS

        def fills() -> tuple[int, int]:
            row = db.query(
                "SELECT count(*) AS n, count(DISTINCT fill_id) AS d FROM journal_fills WHERE user_id=?", (journal.user,)
            )[0]
            return int(row["n"]), int(row["d"])

        deadline = time.monotonic() + 180
        while fills()[0] < FILLS and time.monotonic() < deadline:
            time.sleep(0.5)
        assert fills() == (FILLS, FILLS)
        expected = reference_ids(tmp_path, path.read_bytes(), journal.user)

        def journal_ids() -> set[str]:
            rows = db.query("SELECT trade_id FROM journal_trades WHERE user_id=?", (journal.user,))
            return {r["trade_id"] for r in rows}

        deadline = time.monotonic() + 120
        while journal_ids() != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert journal_ids() == expected  # nothing lost, nothing doubled
    finally:
        journal.stop()
        journal.producer.close()
        db.close()
        bus.close()  # deletes the run's topics and groups, then closes the broker's client
