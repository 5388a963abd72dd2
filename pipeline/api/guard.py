"""The API's gate: one ASGI middleware in front of every route and WebSocket, present and future.

For every HTTP request and WebSocket handshake, in this order:

1. ``Host`` must name this machine as the API knows it (loopback names, the address it binds,
   ``API_ALLOWED_HOSTS``), so a web page cannot reach it through DNS rebinding (403);
2. ``Origin``, when a browser sends one, must be in ``API_ALLOWED_ORIGINS`` (none by default), so a
   page the trader visits cannot drive the API from the browser, simple requests included (403);
3. ``Authorization: Bearer <token>`` must carry a token of ``DATA_DIR/api-tokens.json`` (401); the
   token's user is put in the request's state (``user_of``) and routes act for that user only;
4. a request body may not exceed its cap (about 1 MB for JSON, the upload limit for imports): a
   larger ``Content-Length`` is refused before anything is read, and a body streamed without one is
   cut off at the cap (413).

Only the API's own description (``/docs``, ``/openapi.json``) is served without a token: it holds no
data, and Swagger's Authorize button then takes the token. Every refusal is JSON that names the
rule and never echoes a secret. Cost: a few header comparisons and one ``stat`` per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import HTTPConnection

from pipeline.api.tokens import TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class GuardSettings:
    """What the gate admits; ``hosts`` None admits any Host (``API_ALLOWED_HOSTS=*``)."""

    hosts: frozenset[str] | None
    origins: frozenset[str]
    max_body: int
    max_upload: int


def is_loopback(host: str) -> bool:
    """Say whether ``host`` (a name or an address) is this machine's loopback."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str, extra: tuple[str, ...]) -> frozenset[str] | None:
    """The Host names the API answers to: loopback names, the bound address, and ``extra``."""
    if "*" in extra:
        return None
    names = set(LOOPBACK_NAMES) | {h.lower() for h in extra}
    if bind_host not in ("0.0.0.0", "::", ""):
        names.add(bind_host.lower())
    return frozenset(names)


def wide_bind_notice(bind_host: str) -> str | None:
    """What to say at start when the API listens beyond this machine (None on loopback)."""
    if is_loopback(bind_host):
        return None
    return (
        f"the trades API listens on {bind_host}, reachable from other machines: every request needs the "
        "bearer token (python -m pipeline token prints it), and clients must use a Host name in "
        "API_ALLOWED_HOSTS; prefer API_HOST=127.0.0.1 unless other machines need it"
    )


def user_of(connection: HTTPConnection) -> str:
    """The user the request's token acts for (set by ``Guard``)."""
    return str(connection.scope["state"]["user_id"])


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes its cap."""


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """The ASGI middleware; ``pipeline.api.app.create_app`` puts it in front of everything."""

    def __init__(self, app: ASGIApp, *, tokens: TokenStore, settings: GuardSettings) -> None:
        self.app, self.tokens, self.settings = app, tokens, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, detail = refusal
            await self._refuse(scope, send, status, detail)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        cap = self.settings.max_upload if scope["path"].endswith("/import") else self.settings.max_body
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await self._refuse(scope, send, 413, f"the request body is larger than the limit of {cap} bytes")
            return
        started = False
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, 413, f"the request body is larger than the limit of {cap} bytes")

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        hosts = self.settings.hosts
        if hosts is not None and _host_name(headers.get("host", "")) not in hosts:
            return 403, "the Host header does not name this API (set API_ALLOWED_HOSTS to add a name)"
        origin = headers.get("origin")
        if origin is not None and origin not in self.settings.origins:
            return 403, "requests from web pages are refused (set API_ALLOWED_ORIGINS to allow an origin)"
        if scope["path"] in OPEN_PATHS and scope["type"] == "http":
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        user = self.tokens.user_of(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if user is None:
            return 401, "a bearer token is required: Authorization: Bearer <token> (python -m pipeline token prints it)"
        scope["state"] = {**scope.get("state", {}), "user_id": user}  # a dict of this request alone
        return None

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            # Refusing the handshake: the server answers HTTP 403 and no socket opens.
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        body = orjson.dumps({"detail": detail})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
