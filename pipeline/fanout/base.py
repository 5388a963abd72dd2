"""The fan-out contract: publish never blocks, subscribers get what they asked for or a count of
what they missed, and the last trade of every symbol is at hand.

A trade is a JSON-able dict with at least ``symbol`` (``pipeline.sources.stocks`` builds it: the
``StockTrade`` fields plus ``received_ns``, when the producer received it). ``publish`` is called
on a source's thread; it hands the trade to every subscriber whose symbols include it. Each
subscriber has a bounded buffer: when it is full (a slow WebSocket client) the trade is dropped
for that subscriber only and counted. The fan-out may drop under overload; the durable path (the
bus) never does.

Thread safety: ``publish``, ``subscribe``, ``unsubscribe``, ``latest`` and ``stats`` may be called
from any thread. A ``Subscription`` is drained by one consumer (a thread, or an asyncio task
woken through ``wake``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Trade = dict[str, Any]
DEFAULT_BUFFER = 10_000


@dataclass(frozen=True)
class FanoutStats:
    """What the fan-out did since it started (the page and ``/health`` show it)."""

    kind: str
    published: int
    delivered: int
    dropped: int
    subscribers: int
    connected: bool = True
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Subscription:
    """One subscriber's bounded buffer of trades, for ``symbols`` (None: every symbol).

    ``wake`` is called (on the publishing thread) when the buffer goes from empty to not empty;
    an asyncio consumer passes ``lambda: loop.call_soon_threadsafe(event.set)``.
    """

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        *,
        maxsize: int = DEFAULT_BUFFER,
        wake: Callable[[], Any] | None = None,
    ) -> None:
        self.symbols: frozenset[str] | None = None if symbols is None else frozenset(symbols)
        self.maxsize = maxsize
        self.delivered = 0
        self.dropped = 0
        self._items: deque[Trade] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._wake = wake
        self.closed = False

    def wants(self, symbol: str) -> bool:
        symbols = self.symbols
        return symbols is None or symbol in symbols

    def add(self, symbols: Iterable[str]) -> frozenset[str]:
        """Subscribe to more symbols; return the set now wanted."""
        with self._lock:
            self.symbols = frozenset((self.symbols or frozenset()) | set(symbols))
            return self.symbols

    def remove(self, symbols: Iterable[str]) -> frozenset[str]:
        """Stop wanting ``symbols``; return the set now wanted."""
        with self._lock:
            self.symbols = frozenset((self.symbols or frozenset()) - set(symbols))
            return self.symbols

    def offer(self, trade: Trade) -> bool:
        """Buffer ``trade``; drop and count it when the buffer is full. Never blocks for long."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                self.dropped += 1
                return False
            self._items.append(trade)
            self.delivered += 1
            first = len(self._items) == 1
        if first:
            self._ready.set()
            if self._wake is not None:
                self._wake()
        return True

    def drain(self) -> list[Trade]:
        """Return and remove everything buffered, oldest first."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._ready.clear()
        return items

    def get(self, timeout: float) -> list[Trade]:
        """Wait up to ``timeout`` seconds for trades (threads only); return what was buffered."""
        self._ready.wait(timeout)
        return self.drain()


class TradeFanout:
    """Base of the fan-outs: local subscribers, the last trade per symbol and the counters.

    Subclasses implement ``publish`` (and call ``_dispatch`` for every trade that reaches this
    process). The subscriber list is copied on change, so ``_dispatch`` takes no lock for it.
    """

    kind = "base"

    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._latest: dict[str, Trade] = {}
        self._lock = threading.Lock()
        self.published = 0
        self.dropped_here = 0  # dropped before reaching any subscriber (a full send queue, Redis down)
        self._gone_delivered = 0  # counters of subscriptions that ended
        self._gone_dropped = 0
        self.last_error: str | None = None

    def publish(self, trade: Trade) -> None:
        """Hand ``trade`` to the subscribers (of every process sharing the fan-out). Never blocks."""
        raise NotImplementedError

    def subscribe(
        self,
        symbols: Iterable[str] | None = None,
        *,
        maxsize: int = DEFAULT_BUFFER,
        wake: Callable[[], Any] | None = None,
    ) -> Subscription:
        sub = Subscription(symbols, maxsize=maxsize, wake=wake)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Release ``sub`` (idempotent): it gets nothing more and its buffer is dropped."""
        with self._lock:
            if sub in self._subs:
                self._subs = tuple(s for s in self._subs if s is not sub)
                self._gone_delivered += sub.delivered
                self._gone_dropped += sub.dropped
        sub.closed = True
        sub.drain()

    def _dispatch(self, trade: Trade) -> None:
        symbol = trade.get("symbol")
        if not isinstance(symbol, str):
            return
        self._latest[symbol] = trade
        for sub in self._subs:
            if sub.wants(symbol):
                sub.offer(trade)

    def latest(self) -> dict[str, Trade]:
        """Return the last trade of every symbol seen (a copy)."""
        return dict(self._latest)

    @property
    def connected(self) -> bool:
        return True

    def stats(self) -> FanoutStats:
        subs = self._subs
        return FanoutStats(
            kind=self.kind,
            published=self.published,
            delivered=self._gone_delivered + sum(s.delivered for s in subs),
            dropped=self.dropped_here + self._gone_dropped + sum(s.dropped for s in subs),
            subscribers=len(subs),
            connected=self.connected,
            last_error=self.last_error,
        )

    def ping(self) -> bool:
        """Return True when the fan-out can deliver (Redis answers; always, in process)."""
        return True

    def describe(self) -> str:
        """Where the fan-out goes, for a page or ``/health`` (no secrets)."""
        return "in process"

    def close(self) -> None:
        with self._lock:
            subs, self._subs = self._subs, ()
        for s in subs:
            s.closed = True
