"""Market data from either host: ticks stored through one host's store (its DATA_DIR, the shared
PostgreSQL) are what the other host's API bar routes and Market page show, to the byte and the tile.
The journal's routes and page are compared the same way in test_scale_out.py, and the portfolio's
reads in test_failover.py; this one needs no stage, only the two hosts' configurations."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

import runtime
from pipeline.api.app import create_app
from pipeline.api.context import loopback_context
from pipeline.bus.embedded import EmbeddedBus
from pipeline.config import load_config
from storage import market
from storage.db import open_database

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
ROUTES = ("/bars/BTCUSDT?limit=50", "/bars/ETHUSDT?limit=50", "/bars/latest", "/bars/BTCUSDT?timeframe=5Min")


def _env(tmp_path: Path, host: str, postgres_url: str) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path / host), "DATABASE_URL": postgres_url, "SYMBOLS": ",".join(SYMBOLS)}


def _bodies(env: dict[str, str]) -> list[Any]:
    """The bar routes' bodies from an API built over one host's configuration (its own DATA_DIR,
    so its own token file, and the shared store)."""
    config = load_config(env)
    db = open_database(config)
    bus = EmbeddedBus(config.data_dir / "bus.db")
    try:
        ctx = loopback_context(bus, bus.producer(), db, "ann", config.data_dir)
        token = ctx.tokens.token_for("ann")
        client = TestClient(create_app(ctx), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"})
        out = []
        for path in ROUTES:
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            out.append(response.json())
        return out
    finally:
        bus.close()
        db.close()


def _market_tiles(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, str]]:
    monkeypatch.chdir(ROOT)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.setenv("STAGES", "")
    runtime.get_runtime.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)  # Market is the first page
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return {m.label: (m.value, m.delta) for m in at.metric}
    finally:
        runtime.get_runtime().stop()
        runtime.get_runtime.clear()


def test_ticks_stored_by_one_host_are_the_other_hosts_bars_and_market_tiles(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_a, host_b = _env(tmp_path, "a", postgres_url), _env(tmp_path, "b", postgres_url)
    now = int(time.time() * 1000)
    start = now - now % 60_000 - 30 * 60_000
    ticks = [
        (symbol, start + i * 20_000, base + i * 0.5, base * 1.01, base * 0.99, base * 0.98, 1.5, 10.0 + i, 2.0)
        for symbol, base in zip(SYMBOLS, (60_000.0, 3_000.0))
        for i in range(90)  # 30 minutes, three ticks a minute
    ]
    db_a = open_database(load_config(host_a))
    try:
        db_a.write(lambda d: market.store_ticks(d.conn, ticks))
    finally:
        db_a.close()

    a, b = _bodies(host_a), _bodies(host_b)
    assert a == b
    assert [len(body["bars"]) for body in a[:2]] == [30, 30]  # the whole half hour, both symbols
    assert a[0]["bars"][-1]["close"] == 60_000.0 + 89 * 0.5  # the last tick's price, from the other host
    assert {bar["symbol"] for bar in a[2]["bars"]} == set(SYMBOLS)

    tiles_a, tiles_b = _market_tiles(host_a, monkeypatch), _market_tiles(host_b, monkeypatch)
    assert tiles_a == tiles_b
    assert set(tiles_b) == set(SYMBOLS) and tiles_b["BTCUSDT"][0] == f"{60_000.0 + 89 * 0.5:,.6g}"
