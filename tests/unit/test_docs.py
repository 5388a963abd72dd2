"""Docs that match the code: the README's API routes, CLI commands and settings exist."""

from __future__ import annotations

import re
from pathlib import Path

from dotenv import dotenv_values

from pipeline.__main__ import main
from pipeline.config import load_config
from pipeline.stage_catalog import KNOWN_STAGES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_api_route_is_in_the_readme_and_every_documented_route_exists(tmp_path: Path) -> None:
    from pipeline.api.app import create_app
    from pipeline.wiring import build_runtime

    runtime = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": ""}), start=False)
    try:
        routes = {(next(iter(getattr(r, "methods", None) or {"WS"})), r.path) for r in create_app(runtime.api_context()).routes
                  if r.path.startswith(("/api", "/ws"))}
    finally:
        runtime.stop()
    documented = set(re.findall(r"^\| `(GET|POST|WS) (/[^ ?`]+)", README, re.M))
    assert documented == routes


def test_readme_cli_commands_exist(capsys) -> None:  # noqa: ANN001
    commands = set(re.findall(r"^python -m pipeline ([a-z-]+)", README, re.M))
    assert {"api", "run", "tail", "topics", "init-topics", "schemas"} <= commands
    for command in commands:
        try:
            main([command, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, command


def test_env_example_loads_and_names_only_known_stages() -> None:
    env = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    config = load_config(env)
    assert set(config.stages) <= KNOWN_STAGES and "journal-store" in config.stages
