"""The tests' Kafka broker is killed (SIGKILL) while an import is being published and processed, and
started again: the import finishes, every fill is stored once, and the journal is complete.

Not yet part of ``make test``: it found that after the broker comes back the stages' consumers can
stay stuck for minutes (members expired during the outage; commits refused with UNKNOWN_MEMBER_ID,
committed-offset lookups timing out), so the journal does not complete. Nothing is lost (the fills
that were stored are stored once) but the pipeline stalls. ``DESK_BROKER_RESTART_TEST=1`` runs it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.bus.kafka import KafkaBus
from pipeline.topics import CATALOG
from storage.db import Database
from tests.conftest import kafka_script
from tests.integration.test_journal_flow import Journal
from tests.reliability.test_kill_import import export, reference_ids

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.timeout(400),
    pytest.mark.skipif(
        not os.environ.get("DESK_BROKER_RESTART_TEST"),
        reason="known to fail: stages stall after a Kafka broker restart (see the module docstring)",
    ),
]

FILLS = 3000


def broker_pid() -> int:
    where = dict(line.split("=", 1) for line in kafka_script("where", check=True).stdout.split())
    return int((Path(where["state"]) / "broker.pid").read_text())


def test_a_broker_killed_and_restarted_during_an_import_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    bus = KafkaBus(kafka_bootstrap, session_timeout_ms=6000)
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    journal = Journal(bus, db)
    path = tmp_path / "binance.csv"
    export(path, FILLS, seed=11)
    outcome: dict[str, Any] = {}
    journal.start()
    try:
        # The stages start at the topics' end (the shared broker holds other tests' messages): wait
        # until each group has committed that position, so a stage restarted after the kill resumes
        # there instead of at the new end.
        groups = {r.stage.group_id for r in journal.runners}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [g for g in bus.describe_groups() if g.group_id in groups]
            if len(states) == len(groups) and all(
                g.partitions and all(p.committed is not None for p in g.partitions) for g in states
            ):
                break
            time.sleep(0.5)

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
        db.close()
        bus.close()
