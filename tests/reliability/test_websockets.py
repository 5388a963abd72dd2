"""Live-trade WebSockets against the real server (uvicorn on loopback, embedded bus): sockets opened
and closed leave threads and consumer-group members where they started, the number open at once is
capped, and a closed socket's consumer is gone within a poll.

``DESK_WS_SOCKETS`` sets how many are opened and closed (200 by default; the closing figure of the
security work used 1000)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from pipeline.api.app import create_app
from pipeline.api.server import ApiServer
from pipeline.config import load_config
from pipeline.wiring import Runtime, build_runtime

pytestmark = pytest.mark.timeout(300)

SOCKETS = int(os.environ.get("DESK_WS_SOCKETS", "200"))
AT_ONCE = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Runtime, str, str]]:
    cap = getattr(request, "param", 64)  # more than the sockets a cycle leaves closing at once
    rt = build_runtime(
        load_config({"DATA_DIR": str(tmp_path), "STAGES": "", "USER_ID": "alice", "API_MAX_WEBSOCKETS": str(cap)})
    )
    ctx = rt.api_context()
    port = free_port()
    server = ApiServer(create_app(ctx), "127.0.0.1", port)
    server.start()
    assert server.wait_started(15)
    try:
        yield rt, f"ws://127.0.0.1:{port}/ws/trades/alice", ctx.tokens.token_for("alice")
    finally:
        server.stop()
        rt.stop()


def open_socket(url: str, token: str) -> ClientConnection:
    ws = connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30, legacy=True)
    assert '"ready"' in str(ws.recv(timeout=30))
    return ws


def members(rt: Runtime) -> int:
    return sum(g.members for g in rt.bus.describe_groups() if g.group_id.startswith("ws-"))


def settle(probe: object, want: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    value = probe()  # type: ignore[operator]
    while value > want and time.monotonic() < deadline:
        time.sleep(0.1)
        value = probe()  # type: ignore[operator]
    return int(value)


def cycle(url: str, token: str, n: int) -> None:
    """Open and close ``n`` sockets, ``AT_ONCE`` at a time."""

    def one(_: int) -> None:
        open_socket(url, token).close()

    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(pool.map(one, range(n)))


def test_sockets_opened_and_closed_leave_no_thread_member_or_group_behind(served: tuple[Runtime, str, str]) -> None:
    rt, url, token = served
    cycle(url, token, AT_ONCE * 2)  # warm the server's own pools first
    threads_before = settle(threading.active_count, 0, timeout=2.0)
    threads_before = settle(threading.active_count, threads_before)
    groups_before = [g.group_id for g in rt.bus.describe_groups() if g.group_id.startswith("ws-")]
    started = time.monotonic()
    cycle(url, token, SOCKETS)
    took = time.monotonic() - started
    assert settle(lambda: members(rt), 0) == 0
    assert settle(threading.active_count, threads_before) <= threads_before, (threading.enumerate(), took)
    groups_after = [g.group_id for g in rt.bus.describe_groups() if g.group_id.startswith("ws-")]
    assert len(groups_after) <= len(groups_before)  # each socket's group is deleted with it
    print(
        f"{SOCKETS} sockets opened and closed in {took:.1f} s; threads {threads_before} -> {threading.active_count()}"
    )


@pytest.mark.parametrize("served", [16], indirect=True)
def test_the_number_of_open_sockets_is_capped_and_a_freed_slot_is_reused(served: tuple[Runtime, str, str]) -> None:
    rt, url, token = served
    opened = [open_socket(url, token) for _ in range(16)]
    try:
        assert members(rt) == 16
        with pytest.raises(InvalidStatus):  # the 17th is refused at the handshake
            open_socket(url, token)
        opened.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the slot is free once the server has seen the close
            try:
                opened.append(open_socket(url, token))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        for ws in opened:
            ws.close()
    assert settle(lambda: members(rt), 0) == 0


def test_a_socket_without_the_token_or_from_a_web_page_is_refused(served: tuple[Runtime, str, str]) -> None:
    _, url, token = served
    with pytest.raises(InvalidStatus):
        connect(url, open_timeout=10)
    with pytest.raises(InvalidStatus):
        connect(url, additional_headers={"Authorization": f"Bearer {token}", "Origin": "http://evil.example"})
    with pytest.raises(InvalidStatus):
        connect(url.replace("/alice", "/bob"), additional_headers={"Authorization": f"Bearer {token}"})
