"""Contract of the stock routes: /bars (stocks and crypto), /bars/{symbol}/range, /bars/latest,
/health and WS /ws/stocks, on the app the desk serves, over a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.api.app import create_app
from pipeline.api.health import check
from pipeline.config import load_config
from pipeline.wiring import Runtime, build_runtime
from storage import market, status, stocks
from tests.fakes.market_servers import wait_for

DAY1 = 1_796_135_400_000  # Tue 2026-12-01 09:30 New York (14:30 UTC)
DAY2 = DAY1 + 86_400_000


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    runtime = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": "", "SUBSCRIBED_SYMBOLS": "AAPL,MSFT"}))
    rows = [
        ("AAPL", "1Min", day + i * 60_000, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0, 3, 100.2 + i)
        for day in (DAY1, DAY2)
        for i in range(390)
    ]
    runtime.db.write(lambda db: stocks.store_bars(db.conn, rows))
    ticks = [("BTCUSDT", DAY1 + i * 15_000, 50_000.0 + i, None, None, None, None, None, 0.5) for i in range(40)]
    runtime.db.write(lambda db: market.store_ticks(db.conn, ticks))
    ctx = runtime.api_context()
    auth = {"Authorization": f"Bearer {ctx.tokens.token_for(ctx.user_id)}"}
    with TestClient(create_app(ctx), base_url="http://127.0.0.1", headers=auth) as client:
        yield runtime, client
    runtime.stop()


def test_latest_bars_of_a_stock_in_every_timeframe(desk) -> None:
    _, api = desk
    body = api.get("/bars/aapl", params={"limit": 3}).json()
    assert body["symbol"] == "AAPL" and body["asset"] == "stock" and body["timeframe"] == "1Min"
    assert [b["start"] for b in body["bars"]] == [DAY2 + i * 60_000 for i in (387, 388, 389)]
    assert body["bars"][-1]["time"] == "2026-12-02T20:59:00+00:00" and body["bars"][-1]["vwap"] == 100.2 + 389
    five = api.get("/bars/AAPL", params={"timeframe": "5Min", "limit": 1}).json()["bars"][0]
    assert (five["open"], five["high"], five["low"], five["close"], five["volume"]) == (
        485.0,
        490.0,
        484.0,
        489.5,
        50.0,
    )
    days = api.get("/bars/AAPL", params={"timeframe": "1Day"}).json()["bars"]
    assert [d["start"] for d in days] == [stocks.day_start(DAY1), stocks.day_start(DAY2)] and days[0]["volume"] == 3900
    assert len(api.get("/bars/AAPL", params={"timeframe": "1Hour", "limit": 100}).json()["bars"]) == 14
    assert api.get("/bars/MSFT").json()["bars"] == []


def test_a_day_of_minute_bars_by_range_in_iso_and_epoch(desk) -> None:
    _, api = desk
    iso = api.get("/bars/AAPL/range", params={"start": "2026-12-01T09:30:00-05:00", "end": "2026-12-01T16:00:00-05:00"})
    assert iso.status_code == 200 and len(iso.json()["bars"]) == 390 and not iso.json()["truncated"]
    seconds = api.get("/bars/AAPL/range", params={"start": str(DAY1 // 1000), "end": str(DAY1 // 1000 + 600)}).json()
    millis = api.get("/bars/AAPL/range", params={"start": str(DAY1), "end": str(DAY1 + 600_000)}).json()
    assert seconds["bars"] == millis["bars"] and len(millis["bars"]) == 10
    cut = api.get("/bars/AAPL/range", params={"start": str(DAY1), "limit": 5}).json()
    assert cut["truncated"] and len(cut["bars"]) == 5 and cut["bars"][0]["start"] == DAY1
    naive = api.get("/bars/AAPL/range", params={"start": "2026-12-01T14:30:00", "end": "2026-12-01T14:32:00"}).json()
    assert [b["start"] for b in naive["bars"]] == [DAY1, DAY1 + 60_000]  # no offset means UTC


def test_crypto_symbols_are_served_from_the_market_store(desk) -> None:
    _, api = desk
    one = api.get("/bars/BTCUSDT", params={"limit": 100}).json()
    assert one["asset"] == "crypto" and len(one["bars"]) == 10 and one["bars"][0]["open"] == 50_000.0
    five = api.get("/bars/BTCUSDT", params={"timeframe": "5Min"}).json()["bars"]
    assert [(b["start"], b["open"], b["close"], b["high"]) for b in five] == [
        (DAY1, 50_000.0, 50_019.0, 50_019.0),
        (DAY1 + 300_000, 50_020.0, 50_039.0, 50_039.0),
    ]
    ranged = api.get("/bars/BTCUSDT/range", params={"start": str(DAY1 + 120_000), "end": str(DAY1 + 240_000)}).json()
    assert [b["start"] for b in ranged["bars"]] == [DAY1 + 120_000, DAY1 + 180_000]
    latest = {b["symbol"]: b for b in api.get("/bars/latest").json()["bars"]}
    assert latest["AAPL"]["start"] == DAY2 + 389 * 60_000 and latest["BTCUSDT"]["start"] == DAY1 + 9 * 60_000
    assert latest["BTCUSDT"]["asset"] == "crypto"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/bars/AA$PL", {}, "symbol"),
        ("/bars/AAPL", {"timeframe": "2Min"}, "timeframe"),
        ("/bars/AAPL", {"limit": 0}, "limit"),
        ("/bars/AAPL", {"limit": 100_001}, "limit"),
        ("/bars/AAPL/range", {"start": "yesterday"}, "start"),
        ("/bars/AAPL/range", {"start": "2026-12-01", "end": "not-a-time"}, "end"),
        ("/bars/AAPL/range", {"start": "2026-12-02", "end": "2026-12-01"}, "end"),
        ("/bars/AAPL/range", {"start": "99999999999999999"}, "start"),
        ("/bars/latest", {"timeframe": "1Week"}, "timeframe"),
    ],
)
def test_bad_parameters_get_a_422_naming_the_field_and_change_nothing(
    desk, path: str, params: dict, field: str
) -> None:
    runtime, api = desk
    before = stocks.bar_count(runtime.db)
    answer = api.get(path, params=params)
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["field"] == field and detail["rule"]
    assert stocks.bar_count(runtime.db) == before


def test_a_missing_start_names_the_parameter(desk) -> None:
    _, api = desk
    answer = api.get("/bars/AAPL/range")
    assert answer.status_code == 422 and "start" in str(answer.json()["detail"])


def _publish(runtime: Runtime, name: str, *, last_activity: float, now: float) -> None:
    row = status.StageStatus(
        name, "source", True, last_activity_at=last_activity, started_at=last_activity - 60, pid=1, updated_at=now
    )
    runtime.db.write(lambda db: status.publish(db.conn, [row]))


def test_health_reports_bus_database_feeds_lag_and_the_market(desk) -> None:
    runtime, api = desk
    body = api.get("/health").json()
    assert body["bus"] == {"kind": "embedded", "ok": True} and body["database"] == {"ok": True}
    assert set(body["market"]) >= {"open", "label", "next_open", "next_close"} and "redis" not in body
    assert body["fast_path"]["kind"] == "in-process"
    assert body["round_trip"]["ok"] and body["round_trip"]["latency_ms"] > 0, "a message went through the bus"
    in_session = datetime(2026, 12, 1, 16, 0, tzinfo=UTC).timestamp()  # Tue 11:00 New York
    saturday = datetime(2026, 12, 5, 16, 0, tzinfo=UTC).timestamp()
    _publish(runtime, "stock-simulator", last_activity=in_session - 600, now=in_session)
    code, quiet = check(runtime.api_context(), now=in_session)
    (feed,) = quiet["feeds"]
    assert code == 200 and quiet["status"] == "degraded" and feed["state"] == "stale" and quiet["market"]["open"]
    _publish(runtime, "stock-simulator", last_activity=saturday - 86_400, now=saturday)
    code, closed = check(runtime.api_context(), now=saturday)
    (feed,) = closed["feeds"]
    assert code == 200 and closed["status"] == "ok" and feed["state"] == "closed"  # closed is no alarm
    assert feed["market"] == "market closed, opens Mon 7 Dec 09:30 ET"


def test_health_shows_redis_and_says_when_it_is_gone(tmp_path: Path) -> None:
    from tests.fakes.redis_server import RedisServer

    with RedisServer() as server:
        runtime = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": "", "REDIS_URL": server.url}))
        try:
            ctx = runtime.api_context()
            auth = {"Authorization": f"Bearer {ctx.tokens.token_for(ctx.user_id)}"}
            api = TestClient(create_app(ctx), base_url="http://127.0.0.1", headers=auth)
            up = api.get("/health").json()
            assert up["redis"]["ok"] and up["status"] == "ok" and str(server.port) in up["redis"]["where"]
            server.stop()
            down = api.get("/health").json()
            assert not down["redis"]["ok"] and down["status"] == "degraded"
        finally:
            runtime.stop()


def test_ws_stocks_pushes_subscribed_trades_and_releases_on_disconnect(desk) -> None:
    runtime, api = desk
    fanout = runtime.fanout
    with api.websocket_connect("ws://127.0.0.1/ws/stocks") as ws:
        assert ws.receive_json() == {"type": "ready", "data": {"symbols": ["AAPL", "MSFT"]}}
        ws.send_text('{"action": "subscribe", "symbols": ["aapl"]}')
        assert ws.receive_json() == {"type": "subscribed", "data": {"symbols": ["AAPL"]}}
        assert fanout.stats().subscribers == 1
        fanout.publish({"symbol": "MSFT", "price": 1.0, "trade_id": 1})
        fanout.publish({"symbol": "AAPL", "price": 190.5, "trade_id": 2})
        assert ws.receive_json() == {"type": "trade", "data": {"symbol": "AAPL", "price": 190.5, "trade_id": 2}}
        ws.send_text('{"action": "subscribe", "symbols": ["TSLA"]}')
        error = ws.receive_json()
        assert (
            error["type"] == "error"
            and error["detail"][0]["field"] == "symbols"
            and "SUBSCRIBED_SYMBOLS" in error["detail"][0]["rule"]
        )
        ws.send_text("not json")
        assert ws.receive_json()["detail"][0]["rule"] == "a JSON object"
        ws.send_text('{"action": "subscribe", "symbols": "MSFT"}')
        assert ws.receive_json()["data"]["symbols"] == ["AAPL", "MSFT"]
        ws.send_text('{"action": "unsubscribe", "symbols": ["AAPL"]}')
        assert ws.receive_json()["data"]["symbols"] == ["MSFT"]
        fanout.publish({"symbol": "AAPL", "price": 2.0, "trade_id": 3})
        fanout.publish({"symbol": "MSFT", "price": 3.0, "trade_id": 4})
        assert ws.receive_json()["data"]["trade_id"] == 4
    wait_for(lambda: fanout.stats().subscribers == 0, 5, "the subscription to be released")


def test_the_openapi_document_lists_the_stock_routes(desk) -> None:
    _, api = desk
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/bars/latest", "/bars/{symbol}", "/bars/{symbol}/range", "/health"} <= set(paths)
    params = {p["name"] for p in paths["/bars/{symbol}/range"]["get"]["parameters"]}
    assert params == {"symbol", "start", "end", "timeframe", "limit"}
    assert api.get("/docs").status_code == 200
