"""Live own fills: the exchanges' private streams into ``raw-trades`` as they happen.

* ``BinanceUserStream``: a listen key (``POST /api/v3/userDataStream``, the API key alone) kept
  alive (``PUT`` every ``keepalive_s``, 30 minutes by default, as Binance asks), then
  ``<ws_url>/ws/<listenKey>``; every ``executionReport`` whose execution type is ``TRADE`` is a
  fill (format ``binance-stream``); ``listenKeyExpired`` makes it take a new key.
* ``BybitExecutionStream``: ``<ws_url>/v5/private``, authenticated with ``op: auth``
  (``HMAC-SHA256("GET/realtime" + expires)``), subscribed to the ``execution`` topic, pinged every
  ``ping_s``; every item of an ``execution`` message with ``execType`` ``Trade`` is a fill, in the
  same shape as the REST execution list (format ``bybit-api``).

Each fill is published at once (one flush per message: a fill is in ``raw-trades`` milliseconds
after its frame) exactly as received, with the raw id the REST sync gives the same trade (the
exchange's trade id under the venue's name), so a fill seen both ways is one fill.

After a disconnect (a closed or silent connection, an expired key) the stream reconnects with
exponential backoff and, once the new connection is open, back-fills over REST
(``history.fetch(symbol, since)``) from the last fill it saw (or the moment the previous connection
opened) minus ``overlap_ms``: whatever happened between the drop and the reconnect is published
then, and what both roads bring is published once (the ids published recently are remembered).
Rejected keys stop the stream (``ConfigError``); frames it cannot read are dead-lettered. Runs on
its own thread; ``connected``, ``reconnects`` and ``backfilled`` may be read from any thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, ConfigError, TransientError, Violation
from pipeline.journal.fills import fill_fingerprint, normalize_symbol
from pipeline.journal.payloads import BINANCE_API, BINANCE_STREAM, BYBIT_API, PARSERS
from pipeline.messages import DeadLetter, RawTrade, encode
from pipeline.runner import Worker
from pipeline.sources.exchange_api import TradeHistoryClient
from pipeline.topics import RAW_TRADES, dlq_name

log = logging.getLogger(__name__)

REMEMBERED_IDS = 10_000
Item = tuple[str, int, str, dict[str, Any]]  # (raw id, fill time, format, payload as received)


class SilentStreamError(Exception):
    """The stream delivered nothing for longer than the receive timeout."""


class _PrivateStream(Worker):
    """The loop both private streams share; subclasses speak the exchange's protocol."""

    kind = "source"
    venue = ""
    rest_format = ""

    def __init__(
        self,
        name: str,
        producer: Producer,
        history: TradeHistoryClient,
        *,
        user_id: str,
        symbols: Sequence[str],
        ws_url: str,
        recv_timeout_s: float,
        backoff_s: float,
        backoff_max_s: float,
        overlap_ms: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(name)
        self.producer, self.history, self.user_id = producer, history, user_id
        self.symbols = tuple(normalize_symbol(s) for s in symbols)
        self.ws_url = ws_url.rstrip("/")
        self.recv_timeout_s = recv_timeout_s
        self.backoff_s, self.backoff_max_s, self.overlap_ms = backoff_s, backoff_max_s, overlap_ms
        self.clock = clock
        self.parse_rest = PARSERS[self.rest_format]
        self.connected = False
        self.reconnects = 0
        self.backfilled = 0
        self._published: deque[str] = deque(maxlen=REMEMBERED_IDS)
        self._published_set: set[str] = set()
        self._last_fill_ms: int | None = None

    # -- what a subclass says ---------------------------------------------------------------------

    def _url(self) -> str:
        """Return the URL of a new connection (asking for a new key where the exchange needs one)."""
        raise NotImplementedError

    def _on_open(self, ws: ClientConnection) -> None:
        """Authenticate and subscribe on a fresh connection."""

    def _tick(self, ws: ClientConnection, now: float) -> None:
        """Keep the connection (or its key) alive; called every ``poll`` while connected."""

    def _items(self, event: dict[str, Any]) -> list[Item] | None:
        """Return the fills in one event; None when the connection must be renewed."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        gap_since: int | None = None
        while not self._stop.is_set():
            opened_ms: int | None = None
            try:
                with connect(self._url(), open_timeout=10, close_timeout=1.0) as ws:
                    self._on_open(ws)
                    opened_ms = int(self.clock() * 1000)
                    self.connected = True
                    failures = 0
                    if gap_since is not None:
                        self._backfill(gap_since)
                    self._session(ws)
                reason = "connection ended"
            except ConfigError as exc:
                self.health.error(f"{self.name}: {exc}; not retrying")
                log.error("%s stopped: %s", self.name, exc)
                return
            except InvalidURI as exc:
                self.health.error(f"{self.name}: bad URL ({exc}); not retrying")
                return
            except (OSError, TimeoutError, WebSocketException, InvalidStatus, SilentStreamError, TransientError) as exc:
                reason = f"{type(exc).__name__}: {exc}".strip()
            except Exception as exc:  # a bug or a bus hiccup: show it, back off, keep the stream alive
                log.exception("%s: unexpected failure; reconnecting", self.name)
                reason = f"unexpected {type(exc).__name__}: {exc}"
            self.connected = False
            if self._stop.is_set():
                return
            seen = [t for t in (self._last_fill_ms, opened_ms, gap_since) if t is not None]
            gap_since = (max(seen) if seen else int(self.clock() * 1000)) - self.overlap_ms
            delay = min(self.backoff_max_s, self.backoff_s * 2**failures)
            failures += 1
            self.reconnects += 1
            self.health.error(f"{self.name}: {reason}; reconnecting in {delay:.2f} s")
            log.warning("%s: %s; reconnecting in %.2f s", self.name, reason, delay)
            self._stop.wait(delay)

    def _session(self, ws: ClientConnection) -> None:
        last_rx = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            self._tick(ws, now)
            if now - last_rx >= self.recv_timeout_s:
                raise SilentStreamError(f"no frame for {self.recv_timeout_s:g} s")
            try:
                frame = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            last_rx = time.monotonic()
            with self.health.lock:
                self.health.processed += 1
                self.health.last_activity_at = time.time()
            if self._on_frame(frame):
                return  # the key expired: a new one on the next connection

    def _on_frame(self, frame: str | bytes) -> bool:
        """Publish the fills of a frame; return True when the connection must be renewed."""
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self._dead(frame, "a JSON event")
            return False
        if not isinstance(event, dict):
            return False
        try:
            items = self._items(event)
        except BadMessageError as exc:
            self._dead(frame, str(exc))
            return False
        if items is None:
            return True
        if items:
            self._publish(items)
        return False

    def _backfill(self, since_ms: int) -> None:
        """Publish the fills of every symbol since ``since_ms`` that the stream did not bring."""
        found: list[Item] = []
        for symbol in self.symbols:
            for raw in self.history.fetch(symbol, since_ms):
                try:
                    fill = self.parse_rest(raw)
                except BadMessageError as exc:
                    self.health.error(f"{symbol}: skipped a back-filled trade: {exc}")
                    continue
                found.append(
                    (fill_fingerprint(self.user_id, fill, 0, venue=self.venue), fill.time, self.rest_format, raw)
                )
        found.sort(key=lambda f: f[1])
        self.backfilled += self._publish(found)

    def _publish(self, items: list[Item]) -> int:
        now_ms = int(self.clock() * 1000)
        key = self.user_id.encode()
        sent = 0
        for raw_id, when, fmt, payload in items:
            if raw_id in self._published_set:
                continue
            message = RawTrade(
                raw_id=raw_id, user_id=self.user_id, source=self.venue, format=fmt, received_at=now_ms, payload=payload
            )
            self.producer.produce(RAW_TRADES, encode(message), key=key)
            self._remember(raw_id)
            self._last_fill_ms = max(self._last_fill_ms or 0, when)
            sent += 1
        if sent:
            if self.producer.flush(10.0):
                raise TransientError(f"{self.name}: fills not delivered to {RAW_TRADES}")
            with self.health.lock:
                self.health.produced += sent
        return sent

    def _remember(self, raw_id: str) -> None:
        if len(self._published) == self._published.maxlen:
            self._published_set.discard(self._published[0])
        self._published.append(raw_id)
        self._published_set.add(raw_id)

    def _dead(self, frame: str | bytes, reason: str) -> None:
        """Send a frame it cannot read to ``raw-trades``' dead-letter topic, and go on."""
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        letter = DeadLetter(
            source_topic=RAW_TRADES,
            source_partition=-1,
            source_offset=-1,
            source_key=self.user_id,
            value=text[:10_000],
            reason=reason,
            violations=[],
            stage=self.name,
            retry_count=0,
            failed_at=int(time.time() * 1000),
        )
        self.producer.produce(dlq_name(RAW_TRADES), encode(letter), key=self.user_id.encode())
        self.producer.flush(10.0)
        with self.health.lock:
            self.health.dead_lettered += 1
        log.warning("%s: cannot read %.200r: %s", self.name, frame, reason)


class BinanceUserStream(_PrivateStream):
    """One Binance account's own fills, live. ``history`` back-fills gaps over REST."""

    venue = "binance"
    rest_format = BINANCE_API

    def __init__(
        self,
        producer: Producer,
        history: TradeHistoryClient,
        *,
        api_key: str,
        user_id: str,
        symbols: Sequence[str],
        rest_url: str = "https://api.binance.com",
        ws_url: str = "wss://stream.binance.com:9443",
        keepalive_s: float = 1800.0,
        recv_timeout_s: float = 120.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        overlap_ms: int = 60_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ConfigError("the Binance user stream needs BINANCE_API_KEY")
        super().__init__(
            "binance-user-stream",
            producer,
            history,
            user_id=user_id,
            symbols=symbols,
            ws_url=ws_url,
            recv_timeout_s=recv_timeout_s,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            overlap_ms=overlap_ms,
            clock=clock,
        )
        self._api_key = api_key
        self.rest_url = rest_url.rstrip("/")
        self.keepalive_s = keepalive_s
        self.parse = PARSERS[BINANCE_STREAM]
        self._listen_key = ""
        self._next_keepalive = 0.0

    def _url(self) -> str:
        self._listen_key = self._key_request("POST")
        self._next_keepalive = time.monotonic() + self.keepalive_s
        return f"{self.ws_url}/ws/{self._listen_key}"

    def _tick(self, ws: ClientConnection, now: float) -> None:
        if now >= self._next_keepalive:
            self._key_request("PUT", self._listen_key)
            self._next_keepalive = now + self.keepalive_s

    def _items(self, event: dict[str, Any]) -> list[Item] | None:
        if event.get("e") == "listenKeyExpired":
            return None
        if event.get("e") != "executionReport" or event.get("x") != "TRADE":
            return []  # order updates, balance updates: not fills
        fill = self.parse(event)
        return [(fill_fingerprint(self.user_id, fill, 0, venue=self.venue), fill.time, BINANCE_STREAM, event)]

    def _key_request(self, method: str, listen_key: str | None = None) -> str:
        url = f"{self.rest_url}/api/v3/userDataStream"
        if listen_key:
            url += f"?listenKey={listen_key}"
        request = urllib.request.Request(url, method=method, headers={"X-MBX-APIKEY": self._api_key})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                body = orjson.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")[:200].replace(self._api_key, "***")
            if exc.code in (401, 403) or '"code":-2015' in text or '"code":-2014' in text:
                raise ConfigError(f"binance rejected the API key for the user stream: {text}") from None
            raise TransientError(f"binance userDataStream {method}: HTTP {exc.code} {text}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(f"binance userDataStream {method}: {exc}") from None
        return str(body.get("listenKey", "")) if isinstance(body, dict) else ""


class BybitExecutionStream(_PrivateStream):
    """One Bybit account's own fills from the v5 private ``execution`` topic, live."""

    venue = "bybit"
    rest_format = BYBIT_API

    def __init__(
        self,
        producer: Producer,
        history: TradeHistoryClient,
        *,
        api_key: str,
        api_secret: str,
        user_id: str,
        symbols: Sequence[str],
        ws_url: str = "wss://stream.bybit.com",
        ping_s: float = 20.0,
        recv_timeout_s: float = 60.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        overlap_ms: int = 60_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key or not api_secret:
            raise ConfigError("the Bybit execution stream needs BYBIT_API_KEY and BYBIT_API_SECRET")
        super().__init__(
            "bybit-execution-stream",
            producer,
            history,
            user_id=user_id,
            symbols=symbols,
            ws_url=ws_url,
            recv_timeout_s=recv_timeout_s,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            overlap_ms=overlap_ms,
            clock=clock,
        )
        self._api_key, self._api_secret = api_key, api_secret
        self.ping_s = ping_s
        self.parse = PARSERS[BYBIT_API]
        self._next_ping = 0.0

    def _url(self) -> str:
        return f"{self.ws_url}/v5/private"

    def _on_open(self, ws: ClientConnection) -> None:
        expires = int(self.clock() * 1000) + 10_000
        signature = hmac.new(self._api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
        ws.send(orjson.dumps({"op": "auth", "args": [self._api_key, expires, signature]}).decode())
        reply = orjson.loads(ws.recv(timeout=10))
        if not (isinstance(reply, dict) and reply.get("success")):
            message = str(reply.get("ret_msg", reply) if isinstance(reply, dict) else reply)
            raise ConfigError(f"bybit rejected the API key for the private stream: {message[:200]}")
        ws.send(orjson.dumps({"op": "subscribe", "args": ["execution"]}).decode())
        self._next_ping = time.monotonic() + self.ping_s

    def _tick(self, ws: ClientConnection, now: float) -> None:
        if now >= self._next_ping:
            ws.send('{"op":"ping"}')
            self._next_ping = now + self.ping_s

    def _items(self, event: dict[str, Any]) -> list[Item] | None:
        if not str(event.get("topic", "")).startswith("execution"):
            return []  # pongs, subscription replies
        data = event.get("data")
        if not isinstance(data, list):
            raise BadMessageError([Violation("data", data, "a list of executions")])
        items: list[Item] = []
        for execution in data:
            if not isinstance(execution, dict) or execution.get("execType", "Trade") != "Trade":
                continue  # funding, settlement, ADL: not fills
            fill = self.parse(execution)
            items.append((fill_fingerprint(self.user_id, fill, 0, venue=self.venue), fill.time, BYBIT_API, execution))
        return items
