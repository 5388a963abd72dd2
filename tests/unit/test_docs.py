"""Docs that match the code: every link resolves inside the repository, every documented command,
route, setting and requirement reference exists, and the README stays short."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from pipeline.__main__ import main
from pipeline.config import load_config
from pipeline.stage_catalog import CATALOG, KNOWN_STAGES

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted(ROOT.joinpath("docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def all_docs() -> str:
    return "\n".join(text(p) for p in DOCS)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    cleaned = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return cleaned.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text(path), re.M)}


def test_the_docs_exist_and_the_readme_is_short() -> None:
    names = {p.name for p in DOCS}
    assert {
        "design.md",
        "origins.md",
        "configuration.md",
        "topics.md",
        "delivery.md",
        "ml.md",
        "paper-trading.md",
        "journal.md",
        "operations.md",
        "benchmarks.md",
    } <= names
    assert len(text(ROOT / "README.md").splitlines()) <= 150


def test_every_link_resolves_inside_the_repository() -> None:
    checked = 0
    for doc in DOCS:
        for match in LINK.finditer(text(doc)):
            target = match.group(1) or match.group(2)
            assert "://" not in target and not target.startswith(("mailto:", "//")), f"{doc.name}: {target} leaves"
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            assert dest.is_relative_to(ROOT), f"{doc.name}: {target} points outside the repository"
            assert dest.exists(), f"{doc.name}: {target} does not exist"
            if anchor:
                assert anchor in anchors(dest), f"{doc.name}: no heading #{anchor} in {dest.name}"
            checked += 1
    assert checked >= 15


def test_the_link_checker_catches_a_broken_anchor_and_an_outside_link(tmp_path: Path) -> None:
    assert slug("Stages in processes") == "stages-in-processes"
    assert slug("seed 001: Kafka topic schemas") == "seed-001-kafka-topic-schemas"
    assert LINK.findall("[a](b.md#c) ![i](x.png) [w](https://example.org)") == [
        ("b.md#c", ""),
        ("", "x.png"),
        ("https://example.org", ""),
    ]


def test_every_file_path_named_in_the_docs_exists() -> None:
    named = set(re.findall(r"`((?:pipeline|storage|views|tests|bench|scripts|docs)/[\w/.-]+)`", all_docs()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert len(named) > 20 and missing == []


def test_every_api_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

    from pipeline.api.app import create_app
    from pipeline.wiring import build_runtime

    def path_of(route: BaseRoute) -> str:
        assert isinstance(route, Route | WebSocketRoute | Mount), f"{route!r} has no path"
        return route.path

    runtime = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": ""}), start=False)
    try:
        routes = {
            (next(iter(getattr(r, "methods", None) or {"WS"})), path_of(r))
            for r in create_app(runtime.api_context()).routes
            if path_of(r).startswith(("/api", "/ws", "/bars", "/health", "/metrics"))
        }
    finally:
        runtime.stop()
    documented = set(re.findall(r"^\| `(GET|POST|PUT|DELETE|WS) (/[^ ?`]+)", all_docs(), re.M))
    assert routes and documented == routes


def test_every_cli_command_in_the_docs_exists(capsys: pytest.CaptureFixture[str]) -> None:
    commands = set(re.findall(r"python -m pipeline ([a-z][a-z-]*)", all_docs()))
    assert {"api", "run", "tail", "topics", "init-topics", "schemas", "train", "backtest"} <= commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0, command


def test_every_benchmark_in_the_docs_exists_and_every_benchmark_is_documented() -> None:
    documented = set(re.findall(r"python -m bench\.([a-z_]+)", all_docs()))
    modules = {p.stem for p in ROOT.joinpath("bench").glob("*.py") if p.stem != "__init__"}
    assert documented == modules


def test_every_make_target_in_the_docs_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", text(ROOT / "Makefile"), re.M))
    documented = set(re.findall(r"(?:^|`|; )make ([a-z][a-z-]*)", all_docs(), re.M))
    assert {"run", "test", "lint"} <= documented and documented <= targets


def _settings_read_by_the_code() -> set[str]:
    code = "\n".join(p.read_text() for p in (ROOT / "pipeline").rglob("*.py"))
    read = set(re.findall(r"""env(?:\.get)?[\[(]\s*f?["']([A-Z][A-Z0-9_]+)["']""", code))
    read |= set(re.findall(r"""\(\s*env\s*,\s*["']([A-Z][A-Z0-9_]+)["']""", code))  # _int(env, "NAME", ...)
    from pipeline.config import FEED_URL_ENV, KAFKA_SECURITY_ENV

    read |= set(KAFKA_SECURITY_ENV) | set(FEED_URL_ENV)
    read |= {f"{prefix}_{what}" for prefix in ("BINANCE", "BYBIT") for what in ("API_KEY", "API_SECRET", "BASE_URL")}
    return {name for name in read if not name.startswith("BEHAVIOUR_")}


def test_every_setting_the_code_reads_is_documented_and_no_other() -> None:
    table = text(ROOT / "docs" / "configuration.md")
    documented = {
        n for row in re.findall(r"^\| ([^|]+)\|", table, re.M) for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)
    }
    read = _settings_read_by_the_code()
    assert len(read) > 30
    assert read - documented == set(), "read by the code but not in docs/configuration.md"
    assert documented - read - {"BEHAVIOUR_"} == set(), "documented but read by no code"


def test_every_stage_is_in_the_configuration_docs() -> None:
    table = text(ROOT / "docs" / "configuration.md")
    assert {s.name for s in CATALOG} <= set(re.findall(r"^\| `([a-z-]+)` \|", table, re.M))


def test_every_seed_reference_resolves_in_origins() -> None:
    sections = set(re.findall(r"^## seed (00\d)", text(ROOT / "docs" / "origins.md"), re.M))
    cited: set[str] = set()
    for path in [
        *ROOT.joinpath("pipeline").rglob("*.py"),
        *ROOT.joinpath("storage").rglob("*.py"),
        *ROOT.joinpath("views").glob("*.py"),
        *DOCS,
    ]:
        cited |= set(re.findall(r"seeds? ?-?(00\d)", path.read_text(encoding="utf-8")))
    assert cited and cited <= sections == {"000", "001", "002", "003", "004"}


def test_env_example_loads_and_names_only_known_stages() -> None:
    env = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    config = load_config(env)
    assert set(config.stages) <= KNOWN_STAGES and "journal-store" in config.stages


def test_the_readme_commands_are_make_targets_that_run() -> None:
    done = subprocess.run(["make", "-n", "run", "test", "lint"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "streamlit run app.py" in done.stdout and "-m pytest" in done.stdout
    assert "ruff check" in done.stdout and "ruff format --check" in done.stdout and "mypy" in done.stdout
