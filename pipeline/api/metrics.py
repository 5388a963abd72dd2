"""``GET /metrics``: Prometheus's text format, built from what every process publishes.

Stage numbers come from ``storage.status`` (the rows ``pipeline.status_board`` writes every
second), so a stage run as a process of its own (``STAGE_PROCESSES``) is counted like a thread of
this one; topic and consumer-group numbers come from the bus's describe calls. A collector of the
prometheus-client library builds every family on each scrape from those rows (nothing is kept
here between scrapes, so two API processes report the same numbers):

* ``desk_stage_processed_total``, ``_produced_total``, ``_dead_lettered_total``, ``_retried_total``,
  ``_errors_total`` and the gauges ``desk_stage_lag`` and ``desk_stage_up``, labelled by stage;
* ``desk_stage_batch_latency_seconds``: each stage's batches from poll to commit, a histogram;
* seed 003's client metrics of each stage's producer and consumer (``pipeline.bus.client_metrics``:
  librdkafka's statistics on Kafka, the clients' own counts on the embedded bus), labelled by
  stage: the counters ``desk_client_sent_messages_total``, ``_send_errors_total`` and
  ``_consumed_messages_total`` (rates by ``rate``), the gauges ``desk_client_request_latency_seconds``
  and ``_fetch_latency_seconds`` (Kafka only: no broker, no request on the embedded bus) and
  ``desk_client_lag_sum``; per stage and topic the counters
  ``desk_client_topic_{messages,bytes}_{out,in}_total``;
* ``desk_topic_messages`` and ``desk_topic_end_offset`` per topic (the log's messages in);
* ``desk_consumer_group_lag`` and ``desk_consumer_group_members`` per group, and the lag per
  partition as ``desk_consumer_lag`` (what a group still has to read: messages out, as lag).

A counter of a stage restarted from zero falls, which Prometheus's ``rate`` reads as a reset.
Cost per scrape: one read of ``stage_status`` and a describe of the topics and of the groups.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from pipeline.bus.base import Bus
from storage import status
from storage.db import Database

COUNTERS = {
    "processed": "messages a stage consumed and committed",
    "produced": "messages a stage published",
    "dead_lettered": "messages a stage sent to a dead-letter topic",
    "retried": "messages a stage sent to a delay topic to try again",
    "errors": "failures a stage reported",
}

# Keys of ``pipeline.bus.client_metrics.Figures`` -> (metric name after ``desk_client_``, help).
CLIENT_COUNTERS = {
    "sent": ("sent_messages", "messages a stage's producer sent (its send rate is the rate of this)"),
    "send_errors": ("send_errors", "messages a stage's producer failed to deliver"),
    "consumed": ("consumed_messages", "messages a stage's consumer fetched"),
}
CLIENT_GAUGES = {
    "request_latency_s": ("request_latency_seconds", "mean broker round trip of a stage's producer requests"),
    "fetch_latency_s": ("fetch_latency_seconds", "mean broker round trip of a stage's consumer requests (fetches)"),
    "lag": ("lag_sum", "messages a stage's consumer has still to read, over its partitions"),
}


class DeskCollector(Collector):
    """Builds every metric family from the status rows and the bus on each ``collect``."""

    def __init__(self, db: Database, bus: Bus) -> None:
        self.db = db
        self.bus = bus

    def collect(self) -> Iterator[Metric]:
        yield from self.stage_metrics()
        yield from self.client_metrics()
        yield from self.bus_metrics()

    def stage_metrics(self) -> Iterator[Metric]:
        rows = status.stages(self.db)
        counters = {
            name: CounterMetricFamily(f"desk_stage_{name}", text, labels=["stage"]) for name, text in COUNTERS.items()
        }
        lag = GaugeMetricFamily("desk_stage_lag", "messages a stage has still to read", labels=["stage"])
        up = GaugeMetricFamily("desk_stage_up", "1 while a worker runs", labels=["stage", "kind"])
        latency = HistogramMetricFamily(
            "desk_stage_batch_latency_seconds", "a stage's batches from poll to commit", labels=["stage"]
        )
        for s in rows:
            for name, family in counters.items():
                family.add_metric([s.name], getattr(s, name))
            up.add_metric([s.name, s.kind], 1.0 if s.running else 0.0)
            if s.kind in ("stage", "process"):
                lag.add_metric([s.name], s.lag)
            hist = s.metrics.get("batch_latency")
            if hist and len(hist["counts"]) == len(hist["le"]) + 1:
                buckets = [(str(le), n) for le, n in zip(hist["le"], hist["counts"], strict=False)]
                buckets.append(("+Inf", hist["counts"][-1]))
                latency.add_metric([s.name], buckets, hist["sum"])
        yield from counters.values()
        yield from (lag, up, latency)

    def client_metrics(self) -> Iterator[Metric]:
        counters = {
            key: CounterMetricFamily(f"desk_client_{name}", text, labels=["stage"])
            for key, (name, text) in CLIENT_COUNTERS.items()
        }
        gauges = {
            key: GaugeMetricFamily(f"desk_client_{name}", text, labels=["stage"])
            for key, (name, text) in CLIENT_GAUGES.items()
        }
        per_topic = {
            key: CounterMetricFamily(
                f"desk_client_topic_{key}",
                f"{key.replace('_', ' ')} of a topic by a stage's clients",
                labels=["stage", "topic"],
            )
            for key in ("messages_out", "bytes_out", "messages_in", "bytes_in")
        }
        for s in status.stages(self.db):
            client = s.metrics.get("client") or {}
            for key, family in counters.items():
                if client.get(key) is not None:
                    family.add_metric([s.name], client[key])
            for key, gauge in gauges.items():
                if client.get(key) is not None:
                    gauge.add_metric([s.name], client[key])
            for topic, t in sorted((client.get("topics") or {}).items()):
                for key, topic_family in per_topic.items():
                    what, way = key.split("_")
                    topic_family.add_metric([s.name, topic], t[f"{way}_{what}"])
        yield from counters.values()
        yield from gauges.values()
        yield from per_topic.values()

    def bus_metrics(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily("desk_topic_messages", "messages a topic holds now", labels=["topic"])
        ends = GaugeMetricFamily("desk_topic_end_offset", "messages ever written to a topic", labels=["topic"])
        for t in self.bus.describe_topics():
            messages.add_metric([t.name], t.messages)
            ends.add_metric([t.name], sum(p.end_offset for p in t.partitions))
        group_lag = GaugeMetricFamily("desk_consumer_group_lag", "a group's lag over its partitions", labels=["group"])
        members = GaugeMetricFamily("desk_consumer_group_members", "a group's active members", labels=["group"])
        lag = GaugeMetricFamily(
            "desk_consumer_lag", "a group's lag on one partition", labels=["group", "topic", "partition"]
        )
        for g in self.bus.describe_groups():
            group_lag.add_metric([g.group_id], g.lag)
            members.add_metric([g.group_id], g.members)
            for p in g.partitions:
                lag.add_metric([g.group_id, p.topic, str(p.partition)], p.lag)
        yield from (messages, ends, group_lag, members, lag)


def registry(db: Database, bus: Bus) -> CollectorRegistry:
    """A registry of its own holding the desk's collector (nothing of the process's default one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DeskCollector(db, bus))
    return reg


def add_metrics_routes(app: FastAPI, db: Database, bus: Bus) -> None:
    """Add ``GET /metrics``."""
    reg = registry(db, bus)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of the stages (every process), the topics and the consumer groups."""
        body = await run_in_threadpool(generate_latest, reg)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
