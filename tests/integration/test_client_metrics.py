"""Seed 003's client metrics on both buses: after real traffic through a stage, its status row
carries its producer's and consumer's figures (librdkafka's statistics on Kafka, the clients' own
counts on the embedded bus) and /metrics exports them, parseable by prometheus_client's parser."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import ClassVar

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.api.metrics import registry
from pipeline.bus.base import Bus
from pipeline.bus.client_metrics import Figures, counted_producer, figures_of
from pipeline.errors import BadMessageError, Violation
from pipeline.messages import MarketData, Message
from pipeline.runner import Stage, StageRunner
from pipeline.status_board import StatusBoard
from pipeline.topics import TopicSpec, dlq_name
from storage import status
from storage.db import Database
from tests.integration.test_runner import tick, wait_for

N = 60


class Every5thRejected(Stage):
    """Dead-letters every fifth tick (its producer's traffic), takes the others."""

    input_model: ClassVar[type[Message] | None] = MarketData

    def prepare(self, message: Message) -> Message:
        assert isinstance(message, MarketData)
        if int(message.price) % 5 == 0:
            raise BadMessageError([Violation("price", message.price, "not a multiple of 5 (for the test)")])
        return message


def test_a_stages_client_metrics_reach_its_status_row_and_metrics(bus: Bus, tmp_path: Path) -> None:
    topic = f"test.client.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(topic, 2, 3_600_000), TopicSpec(dlq_name(topic), 1, 3_600_000)])
    producer = bus.producer()
    for i in range(1, N + 1):
        producer.produce(topic, tick("BTCUSDT" if i % 2 else "ETHUSDT", price=float(i)), key=str(i % 7).encode())
    assert producer.flush() == 0
    stage = type("Counted", (Every5thRejected,), {"name": f"test-client-{uuid.uuid4().hex[:6]}", "inputs": (topic,)})()
    runner = StageRunner(stage, bus, poll_timeout=0.1)
    db = Database(tmp_path / "desk.db")
    board = StatusBoard(db, lambda: [runner])
    runner.start()
    try:
        dlq = dlq_name(topic)

        def settled() -> bool:
            f: Figures = runner.client_metrics()
            topics = f.get("topics", {})
            return (
                topic in topics
                and topics[topic]["in_messages"] == N
                and dlq in topics
                and topics[dlq]["out_messages"] == N // 5
                and f.get("lag") == 0
            )

        # librdkafka reports once a second from a poll or a flush: wait for the report after the traffic
        wait_for(settled, timeout=60)
        figures = runner.client_metrics()
        board.publish()
    finally:
        runner.stop()
    [row] = [s for s in status.stages(db) if s.name == stage.name]
    assert row.metrics["client"]["topics"][topic]["in_messages"] == N, "the figures travel in the status row"
    assert figures["consumed"] >= N and figures["sent"] >= N // 5 and figures["send_errors"] == 0
    assert figures["source"] == ("librdkafka" if bus.name == "kafka" else "embedded")

    text = generate_latest(registry(db, bus)).decode()
    shown = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    by_stage = (("stage", stage.name),)
    input_topic = (("stage", stage.name), ("topic", topic))
    dlq_topic = (("stage", stage.name), ("topic", dlq))
    assert shown[("desk_client_topic_messages_in_total", input_topic)] == N, "consumed == produced"
    assert shown[("desk_client_topic_bytes_in_total", input_topic)] > N * 50, "ticks are JSON of 100+ bytes"
    assert shown[("desk_client_topic_messages_out_total", dlq_topic)] == N // 5
    assert shown[("desk_client_topic_bytes_out_total", dlq_topic)] > 0
    assert shown[("desk_client_sent_messages_total", by_stage)] >= N // 5
    assert shown[("desk_client_send_errors_total", by_stage)] == 0
    assert shown[("desk_client_consumed_messages_total", by_stage)] >= N
    assert shown[("desk_client_lag_sum", by_stage)] == 0
    latencies = {name for name, labels in shown if name.endswith("_latency_seconds") and labels == by_stage}
    if bus.name == "kafka":  # broker round trips: present and plausible (a local broker, well under 10 s)
        assert latencies == {"desk_client_request_latency_seconds", "desk_client_fetch_latency_seconds"}
        for name in latencies:
            assert 0 < shown[(name, by_stage)] < 10
    else:  # no broker, no request: not exported on the embedded bus
        assert latencies == set()
    db.close()


def test_an_undelivered_message_counts_as_a_send_error(bus: Bus) -> None:
    topic = f"test.client.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(topic, 1, 3_600_000, cleanup="compact")])
    producer = counted_producer(bus.producer())
    producer.produce(topic, b"{}", key=None)  # a compacted topic refuses a keyless message, on both buses
    assert producer.flush(30) == 1
    # on Kafka the figure comes with librdkafka's next report, served by a flush (or a poll)
    wait_for(lambda: producer.flush(0.1) == 0 and figures_of(producer).get("send_errors") == 1, timeout=30)
