"""``GET /metrics`` on the API the desk serves: the stages of every process (from their status rows),
the batch-latency histogram, the topics and the consumer groups, in Prometheus's text format."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pipeline.api.app import create_app
from pipeline.bus.base import Record
from pipeline.config import load_config
from pipeline.topics import MARKET_DATA
from pipeline.wiring import Runtime, build_runtime
from pipeline.worker_health import Health
from storage import status
from storage.status import StageStatus
from tests.integration.test_runner import tick


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    runtime = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": ""}))
    ctx = runtime.api_context()
    token = ctx.tokens.token_for(ctx.user_id)  # /metrics is behind the API's gate like every route
    with TestClient(
        create_app(ctx), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield runtime, client
    runtime.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_every_processs_stages_their_latency_topics_and_groups(desk) -> None:
    runtime, api = desk
    health = Health("normalizer", "stage")
    for seconds in (0.003, 0.04, 0.04, 3.0):
        health.batch_done(seconds)
    now = time.time()
    rows = [
        # A stage run as a process of its own: the parent's row and the child's, as two processes write them.
        StageStatus("normalizer", "process", True, started_at=1.0, pid=10, details={"child_pid": 11}, updated_at=now),
        StageStatus(
            "normalizer",
            "stage",
            True,
            processed=120,
            produced=118,
            dead_lettered=2,
            retried=5,
            lag=7,
            started_at=2.0,
            pid=11,
            updated_at=now,
            metrics={"batch_latency": health.batch_latency()},
        ),
        StageStatus("market-store", "stage", False, processed=9, errors=1, started_at=0.5, pid=10, updated_at=now),
    ]
    runtime.db.write(lambda db: status.publish(db.conn, rows))
    producer = runtime.producer
    for i in range(6):
        producer.produce(MARKET_DATA, tick("BTCUSDT", price=100.0 + i), key=b"BTCUSDT")
    assert producer.flush() == 0
    reader = runtime.bus.consumer("metrics-reader", [MARKET_DATA])
    got: list[Record] = []
    deadline = time.monotonic() + 30
    while len(got) < 6 and time.monotonic() < deadline:
        got.extend(reader.poll(100, 0.2))
    reader.commit(got[:4])

    answer = api.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    shown = samples(answer.text)
    stage = (("stage", "normalizer"),)
    assert shown[("desk_stage_processed_total", stage)] == 120, "the child process's counters"
    assert shown[("desk_stage_dead_lettered_total", stage)] == 2
    assert shown[("desk_stage_retried_total", stage)] == 5
    assert shown[("desk_stage_lag", stage)] == 7
    assert shown[("desk_stage_errors_total", (("stage", "market-store"),))] == 1
    assert shown[("desk_stage_up", (("kind", "stage"), ("stage", "market-store")))] == 0
    assert shown[("desk_stage_batch_latency_seconds_bucket", (("le", "0.005"), *stage))] == 1
    assert shown[("desk_stage_batch_latency_seconds_bucket", (("le", "0.05"), *stage))] == 3
    assert shown[("desk_stage_batch_latency_seconds_bucket", (("le", "+Inf"), *stage))] == 4
    assert shown[("desk_stage_batch_latency_seconds_count", stage)] == 4
    assert shown[("desk_stage_batch_latency_seconds_sum", stage)] == pytest.approx(3.083)
    assert shown[("desk_topic_messages", (("topic", MARKET_DATA),))] == 6
    group = (("group", "metrics-reader"),)
    assert shown[("desk_consumer_group_lag", group)] == 2 and shown[("desk_consumer_group_members", group)] == 1
    per_partition = {
        k: v for k, v in shown.items() if k[0] == "desk_consumer_lag" and ("group", "metrics-reader") in k[1]
    }
    assert list(per_partition.values()) == [2], "one key, one partition: 6 written, 4 committed"
    reader.close()
