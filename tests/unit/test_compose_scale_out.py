"""docker-compose.yml's scale-out profile (no Docker engine runs here): the file parses, PostgreSQL
is a service of the profile, every stage service runs a real command of ``python -m pipeline`` on a
real stage with several replicas, and its settings are ones the configuration reads (the store
PostgreSQL, the bus Kafka, a DATA_DIR of each replica's own)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from pipeline.cli import AREAS
from pipeline.cli.bus_commands import cmd_init_topics, cmd_run
from pipeline.config import load_config
from pipeline.stage_catalog import CATALOG

ROOT = Path(__file__).resolve().parents[2]


def _cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    for area in AREAS:
        area.register(sub)
    return parser


def _services() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_postgres_is_a_service_of_the_profile_with_its_password_from_the_environment() -> None:
    pg = _services()["postgres"]
    assert "scale-out" in pg["profiles"] and pg["image"].startswith("postgres:")
    assert pg["ports"] == ["127.0.0.1:5432:5432"]  # loopback only
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")  # never in the file
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_every_stage_service_runs_a_real_stage_with_replicas_on_kafka_and_postgres() -> None:
    services = _services()
    stages = {name: s for name, s in services.items() if "scale-out" in s.get("profiles", []) and name != "postgres"}
    known = {info.name for info in CATALOG}
    parser = _cli()
    ran: set[str] = set()
    for name, service in stages.items():
        command = service["command"]
        assert command[:3] == ["python", "-m", "pipeline"], name
        args = parser.parse_args(command[3:])
        assert args.fn in (cmd_run, cmd_init_topics), name
        if args.fn is cmd_run:
            assert args.stage and set(args.stage) <= known, (name, args.stage)
            assert service["deploy"]["replicas"] >= 2, name
            ran |= set(args.stage)
        assert {"kafka", "postgres"} <= set(service["depends_on"]), name
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        assert dockerfile.is_file() and "requirements.txt" in dockerfile.read_text()
        env = {k: re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "secret", str(v)) for k, v in service["environment"].items()}
        config = load_config(env)
        assert config.database_url == "postgresql://desk:secret@postgres:5432/desk"
        assert config.kafka_bootstrap_servers == "kafka:29092" and config.bus_kind == "kafka"
        assert str(config.data_dir) == "/data"  # inside each replica's own container
        assert "secret" not in repr(config)
    assert ran == {"normalizer", "enricher", "behaviour", "journal-store"}
