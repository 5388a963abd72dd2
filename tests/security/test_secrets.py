"""Planted secrets (webhook URLs, exchange keys, a Kafka password, the API token) are searched for in
every log record, every element of every page, and every API answer, good and bad: none is found."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402
from pipeline.api.app import create_app  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SECRETS = {
    "DISCORD_WEBHOOK_URL": "https://discord.example/api/webhooks/1/planted-secret-discord-5b1e",
    "NOTIFY_WEBHOOK_URL": "https://hooks.example/planted-secret-webhook-77aa",
    "BINANCE_API_KEY": "plantedbinancekey9c0d",
    "BINANCE_API_SECRET": "planted-secret-binance-3f2e",
    "ALPACA_API_KEY": "plantedalpacakey41aa",
    "ALPACA_API_SECRET": "planted-secret-alpaca-8d8d",
}
PAGES = ["settings", "pipeline", "journal", "imports", "portfolio", "signals"]
ELEMENTS = (
    "title",
    "header",
    "subheader",
    "markdown",
    "caption",
    "text",
    "code",
    "json",
    "error",
    "warning",
    "success",
    "info",
    "exception",
    "metric",
    "text_input",
    "selectbox",
    "dataframe",
    "table",
)


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[runtime.Runtime]]:
    built: list[runtime.Runtime] = []
    real_build = runtime.build_runtime

    def build_and_record(*args: object, **kwargs: object) -> runtime.Runtime:
        built.append(real_build(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(runtime, "build_runtime", build_and_record)
    monkeypatch.setattr(runtime, "ENV_FILE", tmp_path / ".env")
    (tmp_path / ".env").write_text("KAFKA_SASL_PASSWORD=planted-secret-kafka-1234\n")
    runtime.get_runtime.clear()
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    # the journal's stages and the api only: no notifier or exchange sync reaching out to the world
    monkeypatch.setenv("STAGES", "normalizer,enricher,behaviour,journal-store")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    yield built
    runtime.get_runtime.clear()
    for rt in built:
        rt.stop()


def texts_of(at: AppTest) -> list[str]:
    out: list[str] = []
    for kind in ELEMENTS:
        for element in getattr(at, kind, []):
            for attr in ("value", "label", "body", "options", "help"):
                value = getattr(element, attr, None)
                if value is not None:
                    out.append(value.to_string() if hasattr(value, "to_string") else str(value))
    return out


def test_no_planted_secret_in_logs_pages_or_api_answers(
    desk: list[runtime.Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "views" / f"{page}.py"), default_timeout=60).run()
        seen.extend(texts_of(at))
        assert not at.exception, (page, at.exception)
    rt = desk[0]
    token = rt.api_context().tokens.token_for(rt.config.user_id)
    secrets = [*SECRETS.values(), "planted-secret-kafka-1234", token]
    client = TestClient(create_app(rt.api_context()), base_url="http://127.0.0.1")
    auth = {"Authorization": f"Bearer {token}"}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/trades", {"headers": auth}),
        ("GET", "/api/journal/summary", {"headers": auth}),
        ("POST", "/api/trades", {"headers": auth, "json": {"symbol": SECRETS["BINANCE_API_SECRET"]}}),
        ("POST", "/api/trades", {"headers": {"Authorization": f"Bearer {token}x"}}),
        ("GET", "/api/trades", {"headers": {**auth, "Origin": "http://evil.example"}}),
        ("GET", "/api/trades", {"headers": {**auth, "Host": "evil.example"}}),
        ("GET", "/api/trades", {"headers": auth, "params": {"user_id": "someone-else"}}),
        ("GET", "/openapi.json", {}),
    ]
    for method, path, kwargs in calls:
        response = client.request(method, path, **kwargs)
        assert response.status_code < 500
        body = response.text
        # a value the caller sent may come back to that caller; nothing the desk holds may
        seen.append(body.replace(SECRETS["BINANCE_API_SECRET"], "<sent by the caller>"))
        seen.extend(f"{k}: {v}" for k, v in response.headers.items())
    seen.extend(r.getMessage() for r in caplog.records)
    seen.extend(str(r.exc_info) for r in caplog.records if r.exc_info)
    seen.extend(repr(rt.config) for rt in desk)
    assert len(seen) > 100
    found = [(s[:60], text[:200]) for text in seen for s in secrets if s in text]
    assert found == []
