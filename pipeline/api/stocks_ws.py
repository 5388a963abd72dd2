"""``WS /ws/stocks``: live stock trades from the low-latency path (the fan-out), per symbol.

Protocol (JSON text frames):

* the server says ``{"type": "ready", "data": {"symbols": [SUBSCRIBED_SYMBOLS]}}`` first;
* the client sends ``{"action": "subscribe", "symbols": ["AAPL", ...]}`` or ``"unsubscribe"`` (a
  single string is taken too); the server answers ``{"type": "subscribed", "data": {"symbols": [...]}}``
  with the symbols now followed, or ``{"type": "error", "detail": [{"field", "value", "rule"}]}``;
* the server pushes ``{"type": "trade", "data": {symbol, timestamp, price, size, trade_id, exchange,
  conditions, tape, collected_at, received_ns}}`` for each trade of a followed symbol, and
  ``{"type": "dropped", "data": {"count": N}}`` when trades were dropped because this client read
  too slowly (the fan-out never waits for a client; N counts since the socket opened).

Each socket holds one fan-out subscription with a bounded buffer (``BUFFER`` trades). It notices a
disconnect while idle or while sending (a task reads the socket the whole time) and then releases
the subscription: nothing is kept for a client that left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import orjson
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from pipeline.api.context import ApiContext
from pipeline.errors import BadMessageError, Violation
from pipeline.fanout import Subscription
from pipeline.messages import STOCK_SYMBOL

log = logging.getLogger(__name__)

BUFFER = 10_000
MAX_FRAME = 16_384


def parse_request(text: str, known: tuple[str, ...]) -> tuple[str, list[str]]:
    """Return (action, symbols) of a client frame; raise ``BadMessageError`` naming what is wrong."""
    if len(text) > MAX_FRAME:
        raise BadMessageError([Violation("frame", len(text), f"at most {MAX_FRAME} characters")])
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadMessageError([Violation("frame", text[:80], "a JSON object")]) from None
    if not isinstance(msg, dict):
        raise BadMessageError([Violation("frame", text[:80], "a JSON object")])
    action = msg.get("action")
    if action not in ("subscribe", "unsubscribe"):
        raise BadMessageError([Violation("action", action, "subscribe or unsubscribe")])
    raw = msg.get("symbols", msg.get("symbol"))
    symbols = [raw] if isinstance(raw, str) else raw
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise BadMessageError([Violation("symbols", raw, "a list of stock symbols")])
    out = [s.strip().upper() for s in symbols]
    bad = [s for s in out if not re.match(STOCK_SYMBOL, s)]
    if bad:
        raise BadMessageError([Violation("symbols", bad, f"each matches {STOCK_SYMBOL}")])
    unknown = [s for s in out if known and s not in known]
    if unknown and action == "subscribe":
        raise BadMessageError([Violation("symbols", unknown, f"one of SUBSCRIBED_SYMBOLS ({', '.join(known)})")])
    return action, out


def add_stock_ws_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``WS /ws/stocks``."""

    @app.websocket("/ws/stocks")
    async def ws_stocks(socket: WebSocket) -> None:
        """Push live trades of the symbols the client subscribes to."""
        await socket.accept()
        fanout = ctx.fanout
        if fanout is None:
            await socket.send_json({"type": "error", "detail": [{"field": "", "value": None, "rule": "no fan-out"}]})
            await socket.close(1011)
            return
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        sub = fanout.subscribe((), maxsize=BUFFER, wake=lambda: loop.call_soon_threadsafe(ready.set))
        try:
            await socket.send_json({"type": "ready", "data": {"symbols": list(ctx.stock_symbols)}})
            reader = asyncio.create_task(_read(socket, sub, ctx.stock_symbols))
            writer = asyncio.create_task(_write(socket, sub, ready))
            done, pending = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await task
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError)):
                    log.warning("ws/stocks: %s", exc)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            fanout.unsubscribe(sub)


async def _read(socket: WebSocket, sub: Subscription, known: tuple[str, ...]) -> None:
    while True:
        text = await socket.receive_text()
        try:
            action, symbols = parse_request(text, known)
        except BadMessageError as exc:
            detail = [{"field": v.field, "value": v.value, "rule": v.rule} for v in exc.violations]
            await socket.send_text(orjson.dumps({"type": "error", "detail": detail}).decode())
            continue
        now = sub.add(symbols) if action == "subscribe" else sub.remove(symbols)
        await socket.send_text(orjson.dumps({"type": "subscribed", "data": {"symbols": sorted(now)}}).decode())


async def _write(socket: WebSocket, sub: Subscription, ready: asyncio.Event) -> None:
    reported = 0
    while True:
        await ready.wait()
        ready.clear()
        trades: list[dict[str, Any]] = sub.drain()
        for trade in trades:
            await socket.send_text(orjson.dumps({"type": "trade", "data": trade}).decode())
        if sub.dropped != reported:
            reported = sub.dropped
            await socket.send_text(orjson.dumps({"type": "dropped", "data": {"count": reported}}).decode())
