"""The trades API: in process over a real runtime (embedded bus, SQLite), and served by
``python -m pipeline api`` as a user would start it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_app
from pipeline.config import load_config
from pipeline.wiring import Runtime, build_runtime

ROOT = Path(__file__).resolve().parents[2]
JOURNAL_STAGES = "normalizer,enricher,behaviour,journal-store"
SUMMARY_KEYS = {
    "fills",
    "trades",
    "open_positions",
    "net_pnl",
    "fees",
    "win_rate",
    "profit_factor",
    "expectancy",
    "max_drawdown",
}

pytestmark = pytest.mark.timeout(180)

TRADE = {
    "trade_id": "T-1",
    "user_id": "alice",
    "symbol": "BTC/USDT",
    "side": "BUY",
    "entry_price": 90000.0,
    "exit_price": 91000.0,
    "quantity": 0.1,
    "entry_time": 1731750000000,
    "exit_time": 1731753600000,
    "pnl": None,
    "notes": "breakout",
    "source": "api",
}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    config = load_config({"DATA_DIR": str(tmp_path), "STAGES": JOURNAL_STAGES, "USER_ID": "alice"})
    rt = build_runtime(config)
    yield rt
    rt.stop()


def api_client(runtime: Runtime) -> TestClient:
    """A client of the in-process API with the desk user's token, as a local script would call it."""
    ctx = runtime.api_context()
    token = ctx.tokens.token_for(ctx.user_id)
    return TestClient(create_app(ctx), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"})


def _until(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_post_a_trade_then_read_it_back_enriched_with_a_summary(runtime: Runtime) -> None:
    client = api_client(runtime)
    response = client.post("/api/trades", json=TRADE)
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]
    trades = _until(lambda: client.get("/api/trades", params={"user_id": "alice", "symbol": "btcusdt"}).json())
    assert [t["trade_id"] for t in trades] == [trade_id]
    assert trades[0]["symbol"] == "BTCUSDT" and trades[0]["pnl"] == pytest.approx(100.0)
    assert "entry" in trades[0]["context"]
    summary = client.get("/api/journal/summary", params={"user_id": "alice"}).json()
    assert set(summary) == SUMMARY_KEYS
    assert summary["trades"] == 1 and summary["net_pnl"] == pytest.approx(100.0)
    # posting the same trade id again is the same trade
    assert client.post("/api/trades", json=TRADE).json()["trade_id"] == trade_id


def test_bad_fields_get_422_naming_each_field_value_and_rule(runtime: Runtime) -> None:
    client = api_client(runtime)
    bad = {**TRADE, "side": "HOLD", "quantity": -1, "entry_price": "abc"}
    response = client.post("/api/trades", json=bad)
    assert response.status_code == 422
    fields = {d["field"]: d for d in response.json()["detail"]}
    assert {"side", "quantity", "entry_price"} <= set(fields)
    assert fields["quantity"]["value"] in (-1, "-1") and fields["quantity"]["rule"]
    assert client.post("/api/trades", content=b"{not json").status_code == 422


def test_import_reports_rows_and_the_websocket_pushes_trades_and_alerts(runtime: Runtime) -> None:
    client = api_client(runtime)
    csv = (
        b"Date(UTC),Pair,Side,Price,Executed,Amount,Fee\n"
        b"2024-11-16 09:00:00,SOLUSDT,BUY,200,10SOL,2000USDT,0USDT\n"
        b"2024-11-16 09:30:00,SOLUSDT,SELL,140,10SOL,1400USDT,0USDT\n"
        b"2024-11-16 09:36:00,SOLUSDT,BUY,141,20SOL,2820USDT,0USDT\n"
        b"2024-11-16 09:40:00,SOLUSDT,SIDEWAYS,141,20SOL,2820USDT,0USDT\n"
    )
    with client.websocket_connect("ws://127.0.0.1/ws/trades/alice") as ws:
        assert ws.receive_json()["type"] == "ready"
        response = client.post("/api/trades/import", files={"file": ("binance.csv", csv, "text/csv")})
        assert response.status_code == 200, response.text
        report = response.json()
        assert set(report) == {"format", "rows", "accepted", "duplicates", "rejected"}
        assert (report["rows"], report["accepted"], report["duplicates"]) == (4, 3, 0)
        assert report["rejected"] == [{"row": 5, "column": "Side", "value": "SIDEWAYS", "reason": "one of BUY, SELL"}]
        seen = {"trade": 0, "alert": 0}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (seen["trade"] >= 3 and seen["alert"]):
            message = ws.receive_json()
            seen[message["type"]] += 1
            assert message["data"]["user_id"] == "alice"
    assert seen["trade"] >= 3 and seen["alert"] >= 1
    again = client.post("/api/trades/import", files={"file": ("binance.csv", csv, "text/csv")}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    alerts = client.get("/api/alerts", params={"user_id": "alice"}).json()
    assert any(a["alert_type"] == "revenge_trading" for a in alerts)


def test_import_refuses_empty_and_unknown_files_with_a_reason(runtime: Runtime) -> None:
    client = api_client(runtime)
    empty = client.post("/api/trades/import", files={"file": ("e.csv", b"", "text/csv")})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"].lower()
    unknown = client.post("/api/trades/import", files={"file": ("x.csv", b"a,b,c\n1,2,3\n", "text/csv")})
    assert unknown.status_code == 422 and unknown.json()["needs_mapping"] is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_python_m_pipeline_api_serves_on_loopback(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path), "STAGES": JOURNAL_STAGES, "KAFKA_BOOTSTRAP_SERVERS": ""}
    token = subprocess.run(
        [sys.executable, "-m", "pipeline", "token", "--user", "bob"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert token.returncode == 0, token.stderr
    auth = {"Authorization": f"Bearer {token.stdout.strip()}"}
    assert (tmp_path / "api-tokens.json").stat().st_mode & 0o777 == 0o600
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/api/alerts", headers=auth, timeout=1).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]  # stderr=PIPE
                return False

        assert _until(up, 60), "the API did not answer"
        assert httpx.get(f"{base}/api/alerts", timeout=5).status_code == 401  # no token, no data
        created = httpx.post(f"{base}/api/trades", json={**TRADE, "user_id": "bob"}, headers=auth, timeout=10)
        assert created.status_code == 201
        stored = _until(
            lambda: httpx.get(f"{base}/api/trades", params={"user_id": "bob"}, headers=auth, timeout=5).json()
        )
        assert stored and stored[0]["trade_id"] == created.json()["trade_id"]
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]  # stderr=PIPE
