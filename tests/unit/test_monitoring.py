"""docker-compose.yml's Prometheus and Grafana: the files parse, Prometheus scrapes the API's
/metrics where the API listens, and every metric the dashboard plots is one /metrics exports (no
Docker engine runs here: the files are read, not run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pipeline.api.metrics import registry
from pipeline.bus.embedded import EmbeddedBus
from pipeline.config import load_config
from pipeline.topics import CATALOG
from storage.db import Database
from storage.status import StageStatus, publish

ROOT = Path(__file__).resolve().parents[2]
PROMQL_FUNCTIONS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "stage", "topic", "group"}


def exported_names(tmp_path: Path) -> set[str]:
    """The sample names /metrics answers with, on a desk with one stage that ran a batch."""
    db = Database(tmp_path / "desk.db")
    bus = EmbeddedBus(tmp_path / "bus.db")
    try:
        bus.create_topics(CATALOG.values())
        consumer = bus.consumer("store", ["crypto.market_data"])
        consumer.commit()
        row = StageStatus(
            "market-store",
            "stage",
            True,
            processed=1,
            updated_at=9e9,
            metrics={
                "batch_latency": {"le": [0.1], "counts": [1, 1], "sum": 0.05},
                # a stage's client figures as on Kafka (pipeline.bus.client_metrics: every key)
                "client": {
                    "source": "librdkafka",
                    "sent": 1,
                    "send_errors": 0,
                    "request_latency_s": 0.002,
                    "consumed": 1,
                    "fetch_latency_s": 0.1,
                    "lag": 0,
                    "topics": {
                        "crypto.market_data": {"out_messages": 1, "out_bytes": 9, "in_messages": 1, "in_bytes": 9}
                    },
                },
            },
        )
        db.write(lambda w: publish(w.conn, [row]))
        return {s.name for family in registry(db, bus).collect() for s in family.samples}
    finally:
        bus.close()
        db.close()


def test_compose_runs_prometheus_and_grafana_with_the_repositorys_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "prometheus", "grafana"} <= set(services)
    mounts = [v.split(":")[0] for name in ("prometheus", "grafana") for v in services[name]["volumes"]]
    made_by_the_trader = {"./deploy/prometheus/desk-token"}  # python -m pipeline token writes it (docs/operations.md)
    assert all((ROOT / m).exists() for m in mounts if m not in made_by_the_trader), mounts
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"


def test_prometheus_scrapes_the_apis_metrics_where_the_api_listens() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    desk = load_config({})
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{desk.api_host}:{desk.api_port}"]
    # the API's gate needs the desk's token on /metrics too: Prometheus sends it from a mounted file
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/desk-token"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert (
        "./deploy/prometheus/desk-token:/etc/prometheus/desk-token:ro" in compose["services"]["prometheus"]["volumes"]
    )
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://127.0.0.1:9090"


def test_every_metric_the_dashboard_plots_is_exported(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/desk.json").read_text())
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/desk.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b([a-z_][a-z0-9_]*)\b", re.sub(r"\[\w+\]|\"[^\"]*\"", "", e))}
    used -= PROMQL_FUNCTIONS
    exported = exported_names(tmp_path)
    assert len(exprs) >= 6 and used and used <= exported, used - exported
    assert {"desk_stage_retried_total", "desk_stage_batch_latency_seconds_bucket"} <= used
    client = {
        "desk_client_sent_messages_total",
        "desk_client_send_errors_total",
        "desk_client_request_latency_seconds",
        "desk_client_consumed_messages_total",
        "desk_client_fetch_latency_seconds",
        "desk_client_lag_sum",
        "desk_client_topic_messages_out_total",
        "desk_client_topic_bytes_out_total",
        "desk_client_topic_messages_in_total",
        "desk_client_topic_bytes_in_total",
    }
    assert client <= used, f"seed 003's client metrics on the dashboard: {client - used} missing"
