"""What workers publish about themselves: the rows pages read instead of live stage objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import status
from storage.db import Database
from storage.status import StageStatus


def test_a_stage_process_is_shown_once_with_its_childs_counters_and_details(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    try:
        parent = StageStatus(
            "ml",
            "process",
            True,
            errors=1,
            started_at=1.0,
            pid=100,
            details={"child_pid": 200, "restarts": 1},
            updated_at=1000.0,
        )
        child = StageStatus(
            "ml",
            "stage",
            True,
            processed=50,
            produced=150,
            lag=3,
            started_at=2.0,
            pid=200,
            details={"skipped": {"warming up": 7}},
            updated_at=1000.5,
            retried=4,
            metrics={"batch_latency": {"le": [0.1], "counts": [2, 3], "sum": 0.4}},
        )
        thread = StageStatus("market-store", "stage", True, processed=9, started_at=0.5, pid=100, updated_at=1000.0)
        db.write(lambda w: status.publish(w.conn, [parent, child, thread]))
        shown = status.stages(db, now=1001.0)
        assert [(s.name, s.kind) for s in shown] == [("market-store", "stage"), ("ml", "process")]
        ml = shown[1]
        assert (ml.processed, ml.produced, ml.lag, ml.errors, ml.pid) == (50, 150, 3, 1, 100)
        assert ml.details == {"skipped": {"warming up": 7}, "child_pid": 200, "restarts": 1}
        assert ml.retried == 4 and ml.metrics["batch_latency"]["counts"] == [2, 3], "the child's numbers"
        assert status.stage(db, "ml", now=1001.0) == ml and status.stage(db, "ml") is None  # stale by now
    finally:
        db.close()


def test_rows_of_a_process_gone_quiet_are_not_shown_and_old_ones_are_forgotten(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    try:
        rows = [
            StageStatus("api", "source", True, pid=1, updated_at=100.0),
            StageStatus("api", "source", True, pid=2, updated_at=200.0),
        ]
        db.write(lambda w: status.publish(w.conn, rows))
        assert [s.pid for s in status.stages(db, now=210.0)] == [2]
        assert status.stages(db, now=300.0) == []
        db.write(lambda w: status.forget(w.conn, older_than=150.0))
        assert [r["pid"] for r in db.query("SELECT pid FROM stage_status")] == [2]
    finally:
        db.close()


def test_a_runtime_publishes_its_workers_at_start_and_says_they_stopped_at_stop(tmp_path: Path) -> None:
    from pipeline.config import load_config
    from pipeline.wiring import build_runtime

    runtime = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": "market-store,ml", "SYMBOLS": "BTCUSDT"}))
    db = Database(tmp_path / "desk.db")
    try:
        shown = {s.name: s for s in status.stages(db)}
        assert set(shown) == {"market-store", "ml"} and all(s.running for s in shown.values())
        assert shown["ml"].details["skipped"] == {"warming up": 0, "out of order": 0, "no model": 0}
        runtime.stop()
        assert not any(s.running for s in status.stages(db))
    finally:
        runtime.stop()
        db.close()


def test_a_runners_batch_latency_is_a_cumulative_histogram() -> None:
    from pipeline.worker_health import BATCH_BUCKETS_S, Health

    health = Health("ml", "stage")
    for seconds in (0.001, 0.02, 0.02, 30.0):
        health.batch_done(seconds)
    shown = health.snapshot().batch_latency()
    assert shown["le"] == list(BATCH_BUCKETS_S)
    assert shown["counts"][0] == 1 and shown["counts"][BATCH_BUCKETS_S.index(0.025)] == 3
    assert shown["counts"][-2] == 3 and shown["counts"][-1] == 4, "the last bucket (+Inf) counts every batch"
    assert shown["sum"] == pytest.approx(30.041)
