"""The reconnecting WebSocket loop the live market sources share, and their trade-to-tick logic.

``WebSocketSource._run`` connects to ``_connect_url()``, lets the subclass subscribe
(``_on_open``), then reads frames and hands each to ``_on_frame`` until the connection closes,
stays silent for ``recv_timeout_s`` (a dead connection that never said so), or the source is
stopped. Then it waits and connects again: exponential backoff from ``backoff_s`` doubling up to
``backoff_max_s``, each wait shortened by a random share of up to ``jitter`` so many clients do
not reconnect in step, and back to ``backoff_s`` once a connection stayed up ``healthy_after_s``.
``heartbeat_s`` calls ``_heartbeat`` that often while connected (an exchange's application ping).
``_silence_origin`` lets a feed that is quiet by design (stocks out of session) move the silence's start.
A ``ConfigError`` (rejected credentials) ends the loop: retrying cannot fix it.

Trades become ticks here: ``_trade`` turns each trade into one ``MarketData`` with the 24 h
figures of the symbol's latest ``_set_day`` snapshot. Trades that arrive before the first snapshot
of their symbol are held (up to ``max_held``) and published when it comes. Trades of one symbol
with the same millisecond are merged into one tick (last price, summed quantity), because the
market-data rules refuse two ticks of a symbol with the same timestamp; a trade is therefore
published once a later trade of its symbol arrives or ``coalesce_s`` after it arrived.
``_closed_bar`` counts gaps between closed one-minute klines (also across reconnects).

Everything here runs on the source's own thread; ``reconnects``, ``attempts`` and ``gaps`` are
plain counters safe to read from any thread.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.exceptions import InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, ConfigError, Violation
from pipeline.messages import MarketData, build
from pipeline.sources.base import MarketSource

log = logging.getLogger(__name__)

MINUTE_MS = 60_000


class SilentConnectionError(Exception):
    """The connection delivered nothing for longer than the receive timeout."""


@dataclass(frozen=True, slots=True)
class Day:
    """A symbol's 24 h figures from the exchange's latest ticker (or daily bar)."""

    open: float
    high: float
    low: float
    volume: float


@dataclass(slots=True)
class _Trade:
    raw: list[str]
    ts: int
    price: float
    qty: float
    high: float
    low: float
    arrived: float = field(default_factory=time.monotonic)


def number(obj: Any, key: str, name: str | None = None) -> float:
    """Return ``obj[key]`` as a float (exchanges send numbers as strings); raise
    ``BadMessageError`` naming the field when it is missing or not a number."""
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError):
        raise BadMessageError([Violation(name or key, None, f"field {key!r} present")]) from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BadMessageError([Violation(name or key, value, "a number")]) from None
    if not math.isfinite(out):
        raise BadMessageError([Violation(name or key, value, "a finite number")])
    return out


def text(obj: Any, key: str) -> str:
    """Return ``obj[key]`` as a non-empty string or raise ``BadMessageError``."""
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError):
        raise BadMessageError([Violation(key, None, f"field {key!r} present")]) from None
    if not isinstance(value, str) or not value:
        raise BadMessageError([Violation(key, value, "a non-empty string")])
    return value


def parse_json(frame: str) -> Any:
    """Decode a JSON frame or raise ``BadMessageError``."""
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise BadMessageError([Violation("frame", frame[:120], "valid JSON")]) from None


def dump(obj: Any) -> str:
    """Return ``obj`` as compact JSON text (for dead letters of one item of a frame)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return repr(obj)


class WebSocketSource(MarketSource):
    """Base of the WebSocket market sources; subclasses implement the exchange's protocol.

    ``start`` runs ``_run`` on the source's thread, which calls every hook below; ``stop`` ends it
    within about ``poll_s`` plus the close handshake.
    """

    # how long one wait for a frame may block, so stop requests and heartbeats are timely
    poll_s = 0.05
    max_batch = 500  # frames handled before a flush even while more are waiting

    def __init__(
        self,
        name: str,
        producer: Producer,
        symbols: Iterable[str],
        *,
        url: str,
        clock: Callable[[], float] = time.time,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        jitter: float = 0.3,
        healthy_after_s: float = 30.0,
        recv_timeout_s: float = 30.0,
        heartbeat_s: float | None = None,
        open_timeout_s: float = 10.0,
        coalesce_s: float = 0.1,
        max_held: int = 5000,
        rng: random.Random | None = None,
        ws_logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        super().__init__(name, producer, symbols, clock=clock)
        self.url = url.rstrip("/")
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.jitter = min(max(jitter, 0.0), 1.0)
        self.healthy_after_s = healthy_after_s
        self.recv_timeout_s = recv_timeout_s
        self.heartbeat_s = heartbeat_s
        self.open_timeout_s = open_timeout_s
        self.coalesce_s = coalesce_s
        self.max_held = max_held
        self.attempts = 0  # connection attempts, the first one included
        self.reconnects = 0  # attempts after the first
        self.gaps = 0  # gaps between closed one-minute klines
        self.dropped_held = 0  # trades dropped because no 24 h snapshot came in time
        self._rng = rng or random.Random()
        self._ws_logger = ws_logger
        self._days: dict[str, Day] = {}
        self._open_trades: dict[str, _Trade] = {}
        self._held: dict[str, deque[_Trade]] = {}
        self._last_bar: dict[str, int] = {}
        self._dirty = False

    # -- hooks -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {**super().status(), "reconnects": self.reconnects, "gaps": self.gaps}

    def _connect_url(self) -> str:
        """Return the URL to connect to (subscriptions may be part of it)."""
        return self.url

    def _on_open(self, ws: ClientConnection) -> None:
        """Authenticate and subscribe on a fresh connection (runs on every reconnect)."""

    def _on_frame(self, frame: str) -> None:
        """Handle one text frame: call ``_trade``, ``_set_day``, ``_closed_bar``, ``reject``."""
        raise NotImplementedError

    def _heartbeat(self, ws: ClientConnection) -> None:
        """Send the exchange's application-level ping (called every ``heartbeat_s``)."""

    def _silence_origin(self, last_rx: float) -> float:
        """Return the monotonic time silence counts from: the last frame, by default. A feed that is
        quiet by design at times (a stock stream while the market is closed) returns later ones."""
        return last_rx

    # -- the loop ----------------------------------------------------------------------------------

    def backoff(self, failures: int) -> float:
        """Return the wait before the next attempt after ``failures`` consecutive short-lived ones."""
        raw = min(self.backoff_max_s, self.backoff_s * 2 ** min(failures, 32))
        return raw * (1.0 - self.jitter * self._rng.random())

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self.attempts += 1
            if self.attempts > 1:
                self.reconnects += 1
            opened_at: float | None = None
            try:
                with connect(
                    self._connect_url(), open_timeout=self.open_timeout_s, close_timeout=1.0, logger=self._ws_logger
                ) as ws:
                    opened_at = time.monotonic()
                    self._on_open(ws)
                    self._session(ws)
                reason = "closed by the client" if self._stop.is_set() else "connection ended"
            except ConfigError as exc:
                self._finish()
                self.health.error(f"{self.name}: {exc}; not retrying")
                log.error("%s stopped: %s", self.name, exc)
                return
            except InvalidURI as exc:
                self.health.error(f"{self.name}: bad URL ({exc}); not retrying")
                return
            except (OSError, TimeoutError, WebSocketException, SilentConnectionError) as exc:
                reason = f"{type(exc).__name__}: {exc}".strip()
            except Exception as exc:  # a bug or a bus hiccup: show it, back off, keep the feed alive
                log.exception("%s: unexpected failure; reconnecting", self.name)
                reason = f"unexpected {type(exc).__name__}: {exc}"
            self._finish()
            if self._stop.is_set():
                return
            if opened_at is not None and time.monotonic() - opened_at >= self.healthy_after_s:
                failures = 0
            delay = self.backoff(failures)
            failures += 1
            self.health.error(f"{self.name}: {reason}; reconnecting in {delay:.2f} s")
            log.warning("%s: %s; reconnecting in %.2f s", self.name, reason, delay)
            self._stop.wait(delay)

    def _session(self, ws: ClientConnection) -> None:
        now = time.monotonic()
        last_rx = now
        next_beat = now + self.heartbeat_s if self.heartbeat_s else math.inf
        batch = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeat(ws)
                next_beat = now + (self.heartbeat_s or math.inf)
            quiet_since = self._silence_origin(last_rx)
            if now - quiet_since >= self.recv_timeout_s:
                raise SilentConnectionError(f"no frame for {self.recv_timeout_s:g} s")
            busy = batch > 0 and batch < self.max_batch
            wait = 0.0 if busy else min(self.poll_s, next_beat - now, quiet_since + self.recv_timeout_s - now)
            try:
                frame = ws.recv(timeout=max(0.0, wait))
            except TimeoutError:  # nothing waiting: publish what is due and deliver it
                self._release(force=False)
                self._deliver()
                batch = 0
                continue
            last_rx = time.monotonic()
            batch += 1
            with self.health.lock:
                self.health.processed += 1
            self._handle(frame)
            if batch >= self.max_batch:
                self._release(force=False)
                self._deliver()
                batch = 0

    def _handle(self, frame: str | bytes) -> None:
        """Run ``_on_frame``; a frame that cannot be handled is dead-lettered, never fatal."""
        if isinstance(frame, bytes):
            try:
                frame = frame.decode("utf-8")
            except UnicodeDecodeError:
                self.reject(frame, "binary frame that is not UTF-8 text")
                return
        try:
            self._on_frame(frame)
        except ConfigError:
            raise
        except BadMessageError as exc:
            self.reject(frame, exc)
        except Exception as exc:  # a frame shaped unlike the docs must not stop the feed
            log.debug("%s: cannot handle frame %.200s", self.name, frame, exc_info=True)
            self.reject(
                frame,
                BadMessageError(
                    [Violation("frame", None, f"shaped as the exchange documents it ({type(exc).__name__}: {exc})")]
                ),
            )

    def _deliver(self) -> None:
        if self._dirty or self._pending:
            self._dirty = False
            self.flush()

    def _finish(self) -> None:
        """Publish what is still open and deliver it (end of a connection or of the source)."""
        self._release(force=True)
        self._deliver()

    def reject(self, raw: Any, exc: BadMessageError | str, *, key: str | None = None) -> None:
        super().reject(raw, exc, key=key)
        self._dirty = True

    # -- trades, 24 h snapshots, klines -------------------------------------------------------------

    def _known(self, raw: Any, symbol: str) -> bool:
        if not self.symbols or symbol in self.symbols:
            return True
        self.reject(
            raw,
            BadMessageError(
                [Violation("symbol", symbol, f"one of the configured symbols ({', '.join(sorted(self.symbols))})")]
            ),
            key=symbol,
        )
        return False

    def _set_day(
        self, raw: Any, symbol: str, ts: int, *, last: float, open: float, high: float, low: float, volume: float
    ) -> bool:
        """Check and keep a symbol's 24 h snapshot; dead-letter a bad one (the previous one stays)."""
        if not self._known(raw, symbol):
            return False
        try:
            build(
                MarketData,
                symbol=symbol,
                timestamp=ts,
                price=last,
                open=open,
                high=high,
                low=low,
                volume=volume,
                price_change_pct=(last / open - 1) * 100 if open > 0 else 0.0,
            )
        except BadMessageError as exc:
            self.reject(raw, exc, key=symbol)
            return False
        self._days[symbol] = Day(open=open, high=high, low=low, volume=volume)
        held = self._held.pop(symbol, None)
        while held:
            self._publish(symbol, held.popleft())
        return True

    def _trade(self, raw: str, symbol: str, ts: int, price: float, qty: float) -> None:
        """Take one trade; it becomes (part of) one tick."""
        if not self._known(raw, symbol):
            return
        open_trade = self._open_trades.get(symbol)
        if open_trade is not None and open_trade.ts == ts:
            open_trade.raw.append(raw)
            open_trade.price = price
            open_trade.qty += qty
            open_trade.high, open_trade.low = max(open_trade.high, price), min(open_trade.low, price)
            return
        if open_trade is not None:
            self._dispatch(symbol, open_trade)
        self._open_trades[symbol] = _Trade([raw], ts, price, qty, price, price)

    def _release(self, *, force: bool) -> None:
        """Publish the open trades that waited ``coalesce_s`` (all of them when ``force``)."""
        if not self._open_trades:
            return
        now = time.monotonic()
        for symbol in list(self._open_trades):
            trade = self._open_trades[symbol]
            if force or now - trade.arrived >= self.coalesce_s:
                del self._open_trades[symbol]
                self._dispatch(symbol, trade)

    def _dispatch(self, symbol: str, trade: _Trade) -> None:
        if symbol in self._days:
            self._publish(symbol, trade)
            return
        held = self._held.setdefault(symbol, deque())
        if len(held) >= self.max_held:
            held.popleft()
            self.dropped_held += 1
            if self.dropped_held % 1000 == 1:
                self.health.error(f"{symbol}: no 24 h ticker yet; dropped {self.dropped_held} held trades so far")
        held.append(trade)

    def _publish(self, symbol: str, trade: _Trade) -> None:
        day = self._days[symbol]
        price = trade.price
        high, low = day.high, day.low
        if trade.low > 0:  # the 24 h range includes the trades just seen
            high, low = max(high, trade.high), min(low, trade.low)
        pct = (price / day.open - 1) * 100 if day.open > 0 and price > 0 else 0.0
        raw = trade.raw[0] if len(trade.raw) == 1 else "\n".join(trade.raw)
        self.emit(
            raw,
            symbol=symbol,
            timestamp=trade.ts,
            price=price,
            open=day.open,
            high=high,
            low=low,
            volume=day.volume,
            price_change_pct=pct,
            tick_volume=trade.qty,
        )

    def _closed_bar(self, symbol: str, open_ms: int, interval_ms: int = MINUTE_MS) -> None:
        """Note a closed kline of ``symbol``; count a gap when klines are missing before it."""
        previous = self._last_bar.get(symbol)
        if previous is not None and open_ms <= previous:
            return  # the same bar again (a resend after reconnecting) or an older one
        self._last_bar[symbol] = open_ms
        if previous is not None and open_ms - previous > interval_ms:
            minutes = (open_ms - previous - interval_ms) / MINUTE_MS
            self.gaps += 1
            self.health.error(
                f"{symbol}: kline gap, {minutes:g} minute{'' if minutes == 1 else 's'} missing "
                f"between the closed klines opened at {previous} and {open_ms}"
            )
