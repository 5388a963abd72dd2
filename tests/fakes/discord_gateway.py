"""A local Discord: the REST API and the gateway a bot uses, on 127.0.0.1, speaking Discord's wire format.

Discord cannot be reached from here, and dpytest (0.7) fakes discord.py's internals for prefix
commands only: it has no interactions, so no slash commands, buttons or autocomplete. This fake
instead serves the real protocol to the real discord.py client: JSON over HTTP (API v10) and the
gateway's JSON frames over a WebSocket (HELLO, IDENTIFY, READY, HEARTBEAT/ACK, RESUME/RESUMED,
INVALID_SESSION, RECONNECT, DISPATCH). A test plays the Discord user: ``command`` sends an
``INTERACTION_CREATE`` of a slash command, ``click`` one of a button on a message the bot sent;
``reply_to`` waits for what the bot answered (the interaction callback, or an edit of the
original response), as Discord would receive it, JSON and attached files included.

Served (under ``/api/v10``): ``GET /users/@me``, ``GET /oauth2/applications/@me``, ``GET
/gateway[/bot]``, ``PUT /applications/{app}[/guilds/{guild}]/commands``, ``POST
/interactions/{id}/{token}/callback`` (JSON or multipart with ``payload_json`` and ``files[n]``),
``PATCH``/``GET /webhooks/{app}/{token}/messages/@original`` and ``POST /webhooks/{app}/{token}``.
A request without the right ``Authorization: Bot <token>`` gets Discord's 401. The gateway is
``/gateway``; ``drop()`` closes the connection as a network fault would, so the client resumes.

The server runs on an event loop of its own thread; every public method is thread-safe.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

APP_ID = 900_000_000_000_000_001
BOT_ID = 900_000_000_000_000_002
SESSION = "fake-session"


@dataclass(frozen=True)
class Seen:
    """One answer the bot gave to an interaction."""

    interaction_id: int
    kind: str  # "callback", "edit" (of the original response) or "followup"
    callback_type: int | None  # 4 message, 5 deferred, 6 deferred update, 7 update message, 8 autocomplete
    payload: dict[str, Any]
    files: dict[str, bytes]
    at: float  # time.perf_counter() when it arrived
    message: dict[str, Any]  # the message as Discord would now show it


@dataclass
class _Interaction:
    id: int
    token: str
    sent_at: float
    message_id: int
    channel_id: int
    ephemeral: bool = False
    message: dict[str, Any] = field(default_factory=dict)
    clicked: dict[str, Any] | None = None  # the message whose button made this interaction


class FakeDiscord:
    """The fake; use as a context manager. ``token`` is the bot token it accepts."""

    def __init__(self, token: str, guild_id: int, *, heartbeat_ms: int = 41_250) -> None:
        self.token, self.guild_id, self.heartbeat_ms = token, guild_id, heartbeat_ms
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api/v10"
        self.gateway_url = f"ws://127.0.0.1:{self.port}/gateway"
        self.commands: dict[tuple[int | None, str], dict[str, Any]] = {}
        self.identifies = 0
        self.resumes = 0
        self.connections = 0
        self.bad_auth = 0
        self._ids = itertools.count(1_000_000_000_000_000_000)
        self._seq = 0
        self._ws: web.WebSocketResponse | None = None
        self._interactions: dict[int, _Interaction] = {}
        self._by_token: dict[str, _Interaction] = {}
        self._seen: list[Seen] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-discord", daemon=True)

    # -- lifecycle

    def __enter__(self) -> FakeDiscord:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        api = "/api/v10"
        app.router.add_get(api + "/users/@me", self._me)
        app.router.add_get(api + "/oauth2/applications/@me", self._application)
        app.router.add_get(api + "/gateway", self._gateway_url)
        app.router.add_get(api + "/gateway/bot", self._gateway_url)
        app.router.add_put(api + "/applications/{app}/guilds/{guild}/commands", self._sync)
        app.router.add_put(api + "/applications/{app}/commands", self._sync)
        app.router.add_post(api + "/interactions/{id}/{token}/callback", self._callback)
        app.router.add_patch(api + "/webhooks/{app}/{token}/messages/@original", self._edit_original)
        app.router.add_get(api + "/webhooks/{app}/{token}/messages/@original", self._get_original)
        app.router.add_post(api + "/webhooks/{app}/{token}", self._followup)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _shutdown(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what a test does

    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def wait_connected(self, timeout: float = 20.0, *, identifies: int = 1) -> None:
        """Wait until the bot has identified ``identifies`` times (or resumed) and is connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected() and self.identifies >= identifies and self.commands:
                return
            time.sleep(0.02)
        raise TimeoutError(f"the bot did not connect in {timeout} s (identifies={self.identifies})")

    def command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user_id: int,
        roles: tuple[int, ...] = (),
        channel_id: int,
        guild_id: int | None = None,
        kind: int = 2,
        focused: str | None = None,
    ) -> int:
        """Send the slash command ``/name`` as ``user_id`` in ``channel_id``; return the interaction id.
        ``kind`` 4 with ``focused`` is an autocomplete request for that option instead."""
        guild = self.guild_id if guild_id is None else guild_id
        registered = self.commands.get((self.guild_id, name)) or self.commands.get((None, name))
        data: dict[str, Any] = {
            "id": str(registered["id"]) if registered else str(next(self._ids)),
            "name": name,
            "type": 1,
            "options": [
                {"name": k, "type": 3, "value": v, **({"focused": True} if k == focused else {})}
                for k, v in (options or {}).items()
            ],
        }
        if registered and registered.get("guild_id"):
            data["guild_id"] = str(registered["guild_id"])
        return self._interact(kind, data, user_id=user_id, roles=roles, channel_id=channel_id, guild_id=guild)

    def click(self, seen: Seen, custom_id: str, *, user_id: int, roles: tuple[int, ...] = (), channel_id: int) -> int:
        """Press the button ``custom_id`` of the message ``seen`` shows; return the interaction id."""
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interact(
            3, data, user_id=user_id, roles=roles, channel_id=channel_id, guild_id=self.guild_id, message=seen.message
        )

    def reply_to(self, interaction_id: int, timeout: float = 10.0, *, nth: int = 1) -> Seen:
        """Wait for the ``nth`` answer to ``interaction_id`` and return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [s for s in self._seen if s.interaction_id == interaction_id]
                if len(got) >= nth:
                    return got[nth - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer {nth} to interaction {interaction_id} in {timeout} s")
                self._cond.wait(left)

    def answers(self, interaction_id: int) -> list[Seen]:
        with self._cond:
            return [s for s in self._seen if s.interaction_id == interaction_id]

    def sent_at(self, interaction_id: int) -> float:
        return self._interactions[interaction_id].sent_at

    def drop(self, code: int = 4000) -> None:
        """Close the gateway connection as Discord does when a session breaks (the bot resumes)."""
        self._call(self._close_ws(code))

    # -- the gateway

    async def _close_ws(self, code: int) -> None:
        if self._ws is not None:
            await self._ws.close(code=code)

    async def _send(self, payload: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ConnectionError("the bot is not connected to the fake gateway")
        await self._ws.send_str(json.dumps(payload))

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await self._send({"op": 0, "t": event, "s": self._seq, "d": data})

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        self.connections += 1
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            op, d = frame.get("op"), frame.get("d")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                if d.get("token") != self.token:
                    self.bad_auth += 1
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self.identifies += 1
                await self._dispatch(
                    "READY",
                    {
                        "v": 10,
                        "user": _user(BOT_ID, "desk-bot", bot=True),
                        "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                        "session_id": SESSION,
                        "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                        "application": {"id": str(APP_ID), "flags": 0},
                        "shard": [0, 1],
                    },
                )
                if d.get("intents", 0) & 1:  # GUILDS: the guild follows READY, as Discord sends it
                    await self._dispatch("GUILD_CREATE", _guild(self.guild_id))
            elif op == 6:
                if d.get("token") != self.token or d.get("session_id") != SESSION:
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
                    continue
                self.resumes += 1
                await self._dispatch("RESUMED", {})
        if self._ws is ws:
            self._ws = None
        return ws

    # -- interactions

    def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        user_id: int,
        roles: tuple[int, ...],
        channel_id: int,
        guild_id: int | None,
        message: dict[str, Any] | None = None,
    ) -> int:
        interaction = _Interaction(next(self._ids), f"itoken-{next(self._ids)}", 0.0, next(self._ids), channel_id)
        interaction.clicked = message
        self._interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": interaction.token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 0, "name": "desk", "position": 0, "guild_id": str(guild_id)}
            if guild_id
            else {"id": str(channel_id), "type": 1, "recipients": []},
            "locale": "en-US",
            "app_permissions": "2248473465835073",
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "authorizing_integration_owners": {"0": str(guild_id)} if guild_id else {"1": str(user_id)},
            "context": 0 if guild_id else 1,
        }
        user = _user(user_id, f"user{user_id % 10_000}")
        if guild_id:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["member"] = {
                "user": user,
                "roles": [str(r) for r in roles],
                "joined_at": "2025-01-01T00:00:00.000000+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "2248473465835073",
            }
        else:
            payload["user"] = user
        if message is not None:
            payload["message"] = message
        self._call(self._send_interaction(interaction, payload))
        return interaction.id

    async def _send_interaction(self, interaction: _Interaction, payload: dict[str, Any]) -> None:
        interaction.sent_at = time.perf_counter()
        await self._dispatch("INTERACTION_CREATE", payload)

    def _message(self, interaction: _Interaction, body: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        previous = interaction.message
        merged = {**previous, **{k: v for k, v in body.items() if k in ("content", "embeds", "components")}}
        attachments = [
            {
                "id": str(next(self._ids)),
                "filename": name,
                "size": len(data),
                "url": f"http://127.0.0.1:{self.port}/attachments/{name}",
                "proxy_url": f"http://127.0.0.1:{self.port}/attachments/{name}",
            }
            for name, data in files.items()
        ]
        message = {
            "id": str(interaction.message_id),
            "channel_id": str(interaction.channel_id),
            "type": 20,
            "content": merged.get("content") or "",
            "embeds": merged.get("embeds") or [],
            "components": merged.get("components") or [],
            "attachments": attachments or previous.get("attachments", []),
            "timestamp": "2025-01-01T00:00:00.000000+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "author": _user(BOT_ID, "desk-bot", bot=True),
            "flags": 64 if interaction.ephemeral else 0,
            "application_id": str(APP_ID),
        }
        interaction.message = message
        return message

    def _record(
        self, interaction: _Interaction, kind: str, ctype: int | None, body: dict[str, Any], files: dict[str, bytes]
    ) -> Seen:
        data = body.get("data", body) if kind == "callback" else body
        if kind == "callback" and ctype == 4:
            interaction.ephemeral = bool((data or {}).get("flags", 0) & 64)
        if ctype in (6, 7) and interaction.clicked is not None:  # an update edits the clicked message itself
            interaction.message_id = int(interaction.clicked["id"])
            interaction.message = interaction.message or interaction.clicked
            interaction.ephemeral = bool(interaction.clicked.get("flags", 0) & 64)
        message = self._message(interaction, data or {}, files) if ctype != 8 else {}
        seen = Seen(interaction.id, kind, ctype, body, files, time.perf_counter(), message)
        with self._cond:
            self._seen.append(seen)
            self._cond.notify_all()
        return seen

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        if request.content_type.startswith("multipart/"):
            body: dict[str, Any] = {}
            files: dict[str, bytes] = {}
            reader = await request.multipart()
            async for part in reader:
                assert isinstance(part, BodyPartReader)
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                else:
                    files[part.filename or part.name or "file"] = await part.read()
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else {}), {}

    def _authorized(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization") == f"Bot {self.token}"
        self.bad_auth += 0 if ok else 1
        return ok

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self._interactions.get(int(request.match_info["id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        body, files = await self._body(request)
        seen = self._record(interaction, "callback", body.get("type"), body, files)
        return _json(
            {
                "interaction": {
                    "id": str(interaction.id),
                    "type": 2,
                    "response_message_id": str(interaction.message_id),
                    "response_message_loading": body.get("type") == 5,
                    "response_message_ephemeral": interaction.ephemeral,
                },
                "resource": {"type": body.get("type"), "message": seen.message} if seen.message else None,
            }
        )

    async def _edit_original(self, request: web.Request) -> web.Response:
        interaction = self._by_token.get(request.match_info["token"])
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        body, files = await self._body(request)
        return _json(self._record(interaction, "edit", None, body, files).message)

    async def _get_original(self, request: web.Request) -> web.Response:
        interaction = self._by_token.get(request.match_info["token"])
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        return _json(interaction.message)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._by_token.get(request.match_info["token"])
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        body, files = await self._body(request)
        return _json(self._record(interaction, "followup", None, body, files).message)

    # -- REST

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, 0, "401: Unauthorized")
        return _json(_user(BOT_ID, "desk-bot", bot=True))

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, 0, "401: Unauthorized")
        return _json(
            {
                "id": str(APP_ID),
                "name": "Trader's Desk",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": _user(1, "owner"),
                "verify_key": "0" * 64,
                "flags": 0,
                "summary": "",
                "rpc_origins": [],
            }
        )

    async def _gateway_url(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": f"ws://127.0.0.1:{self.port}/gateway",
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _sync(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, 0, "401: Unauthorized")
        guild = request.match_info.get("guild")
        guild_id = int(guild) if guild else None
        out = []
        for command in await request.json():
            registered = {
                **command,
                "id": str(next(self._ids)),
                "application_id": str(APP_ID),
                "version": "1",
                "default_member_permissions": None,
                "type": command.get("type", 1),
                **({"guild_id": str(guild_id)} if guild_id else {}),
            }
            self.commands[(guild_id, command["name"])] = registered
            out.append(registered)
        return _json(out)


def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def _guild(guild_id: int) -> dict[str, Any]:
    everyone = {"id": str(guild_id), "name": "@everyone", "permissions": "0", "position": 0, "color": 0}
    return {
        "id": str(guild_id),
        "name": "desk",
        "unavailable": False,
        "member_count": 3,
        "roles": [{**everyone, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
        "channels": [],
        "threads": [],
        "members": [],
        "emojis": [],
        "stickers": [],
        "features": [],
        "owner_id": "1",
        "joined_at": "2025-01-01T00:00:00.000000+00:00",
        "large": False,
    }


def _json(value: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", as Discord sends it: discord.py reads anything else as text.
    return web.Response(body=json.dumps(value).encode(), status=status, headers={"Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_discord(token: str, guild_id: int) -> Iterator[FakeDiscord]:
    with FakeDiscord(token, guild_id) as fake:
        yield fake
