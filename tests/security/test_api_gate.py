"""The API's gate over a real runtime (embedded bus, SQLite): no token, a wrong or another user's
token, cross-origin and rebinding requests, oversized bodies and hostile user ids are all refused,
on every route and WebSocket, and refused requests publish nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pipeline.api.app import create_app
from pipeline.api.guard import OPEN_PATHS, wide_bind_notice
from pipeline.api.tokens import TokenStore
from pipeline.bus.base import read_to_end
from pipeline.config import load_config
from pipeline.topics import RAW_TRADES
from pipeline.wiring import Runtime, build_runtime

pytestmark = pytest.mark.timeout(120)

TRADE = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "entry_price": 90000.0,
    "quantity": 0.1,
    "entry_time": 1731750000000,
    "notes": "a note",
}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(load_config({"DATA_DIR": str(tmp_path), "STAGES": "", "USER_ID": "alice"}))
    yield rt
    rt.stop()


def client(rt: Runtime, user: str | None = "alice", **headers: str) -> TestClient:
    ctx = rt.api_context()
    if user is not None:
        headers["Authorization"] = f"Bearer {ctx.tokens.token_for(user)}"
    return TestClient(create_app(ctx), base_url="http://127.0.0.1", headers=headers)


def published(rt: Runtime) -> int:
    return len(read_to_end(rt.bus, RAW_TRADES, "security-reader"))


def every_route(rt: Runtime) -> list[tuple[str, str]]:
    app = create_app(rt.api_context())
    out: list[tuple[str, str]] = []
    for r in app.routes:
        methods = getattr(r, "methods", None) or {"WS"}
        path = r.path.replace("{user_id}", "alice")  # type: ignore[attr-defined]
        out.extend((m, path) for m in methods if m != "HEAD")
    return out


def test_every_route_and_socket_needs_a_token_and_a_wrong_one_gets_nothing(runtime: Runtime) -> None:
    routes = every_route(runtime)
    assert ("POST", "/api/trades") in routes and ("WS", "/ws/trades/alice") in routes
    for token in (None, "not-a-token", "Bearer", ""):
        headers = {} if token is None else {"Authorization": token if token in ("", "Bearer") else f"Bearer {token}"}
        c = client(runtime, None, **headers)
        for method, path in routes:
            if path in OPEN_PATHS:
                continue
            if method == "WS":
                with pytest.raises(WebSocketDisconnect) as info, c.websocket_connect(f"ws://127.0.0.1{path}"):
                    pass
                assert info.value.code == 1008
                continue
            response = c.request(method, path, json=TRADE)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["detail"]
    assert published(runtime) == 0
    # the description holds no data and is open, with the bearer scheme for the docs page
    schema = client(runtime, None).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_token_acts_for_its_own_user_only(runtime: Runtime) -> None:
    alice, bob = client(runtime, "alice"), client(runtime, "bob")
    assert bob.post("/api/trades", json={**TRADE, "notes": "bob's secret plan"}).status_code == 201
    for response in (
        alice.get("/api/trades", params={"user_id": "bob"}),
        alice.get("/api/journal/summary", params={"user_id": "bob"}),
        alice.get("/api/alerts", params={"user_id": "bob"}),
        alice.post("/api/trades", json={**TRADE, "user_id": "bob"}),
        alice.post("/api/trades/import", params={"user_id": "bob"}, files={"file": ("a.csv", b"a,b\n1,2\n")}),
    ):
        assert response.status_code == 403, response.text
        assert "bob's secret plan" not in response.text and "acts for 'alice' only" in response.json()["detail"]
    with pytest.raises(WebSocketDisconnect) as info, alice.websocket_connect("ws://127.0.0.1/ws/trades/bob"):
        pass
    assert info.value.code == 1008
    assert published(runtime) == 1  # bob's one trade, nothing from alice's attempts


@pytest.mark.parametrize("user_id", ["x" * 1_000_000, "alice\x00", "alice\nbob", "", 42, None, ["alice"]])
def test_a_hostile_user_id_is_refused_and_never_stored(runtime: Runtime, user_id: object) -> None:
    response = client(runtime).post("/api/trades", json={**TRADE, "user_id": user_id})
    if user_id is None:
        assert response.status_code == 201  # no user named: the token's
        return
    assert response.status_code in (403, 413), response.text
    assert len(response.text) < 2000
    assert published(runtime) == 0


def test_a_source_label_is_checked(runtime: Runtime) -> None:
    c = client(runtime)
    assert c.post("/api/trades", json={**TRADE, "source": "my-script"}).status_code == 201
    bad = c.post("/api/trades", json={**TRADE, "source": "manual\nimport"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "source"


def test_web_pages_cannot_drive_the_api_through_the_browser(runtime: Runtime) -> None:
    c = client(runtime)
    # a simple request (no preflight) from a page the trader visits, token or not
    evil = c.post(
        "/api/trades",
        content=b'{"symbol":"BTCUSDT","side":"BUY","entry_price":1,"quantity":1,"entry_time":1731750000000}',
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert evil.status_code == 403 and "web pages" in evil.json()["detail"]
    assert c.get("/api/trades", headers={"Origin": "null"}).status_code == 403
    # DNS rebinding: the page's own name resolving to 127.0.0.1
    assert c.get("/api/trades", headers={"Host": "evil.example"}).status_code == 403
    assert c.get("/api/trades", headers={"Host": "evil.example:8000"}).status_code == 403
    with (
        pytest.raises(WebSocketDisconnect),
        c.websocket_connect("ws://127.0.0.1/ws/trades/alice", headers={"Origin": "http://evil.example"}),
    ):
        pass
    assert published(runtime) == 0
    # loopback names, with or without a port, are this API
    assert c.get("/api/alerts", headers={"Host": "localhost:8000"}).status_code == 200


def test_an_allowed_origin_and_host_are_admitted(tmp_path: Path) -> None:
    env = {
        "DATA_DIR": str(tmp_path),
        "STAGES": "",
        "API_ALLOWED_ORIGINS": "http://127.0.0.1:8501",
        "API_ALLOWED_HOSTS": "desk.lan",
    }
    rt = build_runtime(load_config(env))
    try:
        c = client(rt, "trader")
        assert c.get("/api/alerts", headers={"Origin": "http://127.0.0.1:8501"}).status_code == 200
        assert c.get("/api/alerts", headers={"Host": "desk.lan:8000"}).status_code == 200
        assert c.get("/api/alerts", headers={"Origin": "http://127.0.0.1:9999"}).status_code == 403
    finally:
        rt.stop()


def test_bodies_over_their_cap_are_refused_before_they_are_read(runtime: Runtime) -> None:
    c = client(runtime)
    huge = {**TRADE, "notes": "n" * (2 * 1024 * 1024)}
    response = c.post("/api/trades", json=huge)
    assert response.status_code == 413 and "limit of 1048576 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams, cut at the cap
        yield b'{"notes": "'
        for _ in range(300):
            yield b"x" * 8192
        yield b'"}'

    streamed = c.post("/api/trades", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    lying = c.post("/api/trades", content=b"{}", headers={"Content-Length": "99999999999"})
    assert lying.status_code == 413
    assert published(runtime) == 0


def test_long_fields_are_refused_by_name(runtime: Runtime) -> None:
    c = client(runtime)
    for field, value in (
        ("notes", "n" * 20_001),
        ("tags", ["t"] * 51),
        ("setup", "s" * 201),
        ("trade_id", "i" * 129),
        ("symbol", "B" * 41),
    ):
        response = c.post("/api/trades", json={**TRADE, field: value})
        assert response.status_code == 422, (field, response.text)
        assert field in {d["field"] for d in response.json()["detail"]}, response.text
    assert published(runtime) == 0


def test_the_token_file_is_the_owners_alone(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.token_for("alice")
    path = tmp_path / "api-tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 40
    assert store.token_for("alice") == token and store.token_for("bob") != token
    os.chmod(path, 0o644)
    fresh = TokenStore(tmp_path)
    assert fresh.user_of(token) == "alice" and fresh.user_of(token + "x") is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "desk.lan"])
def test_binding_beyond_loopback_says_the_token_is_needed(host: str) -> None:
    notice = wide_bind_notice(host)
    assert notice and host in notice and "bearer token" in notice and "API_ALLOWED_HOSTS" in notice


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_binding_needs_no_notice(host: str) -> None:
    assert wide_bind_notice(host) is None
