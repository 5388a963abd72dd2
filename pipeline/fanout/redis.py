"""The Redis fan-out (``REDIS_URL`` set): trades go through Redis pub/sub on ``REDIS_CHANNEL_TRADES``
(seed 004's ``stock:trades:pubsub``), one JSON trade per message, so every server process that
subscribes (the app, ``python -m pipeline api``, other tools) sees every source's trades.

Threads: ``publish`` (a source's thread) only encodes and appends to a bounded send queue; a
sender thread empties the queue into one pipelined round trip of ``PUBLISH`` commands; a listener
thread reads the channel and hands each trade to this process's subscribers. So ``publish`` never
waits on Redis: when the queue is full (Redis slow or down) the trade is dropped and counted, and
a batch that Redis refused is counted as dropped too. Both threads reconnect with backoff (0.1 s
doubling to 5 s) and say so in ``stats().last_error``.

The URL may hold a password: ``describe`` shows the host and port only, and errors are reported
by type and host, never by URL.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.parse
from typing import Any

import orjson

from pipeline.fanout.base import Trade, TradeFanout

log = logging.getLogger(__name__)

SEND_QUEUE = 50_000  # trades waiting for the sender before publish drops them
MAX_PIPELINE = 1_000  # PUBLISH commands per round trip


class RedisFanout(TradeFanout):
    """Pub/sub through Redis; ``close`` stops both threads."""

    kind = "redis"

    def __init__(self, url: str, channel: str, *, send_queue: int = SEND_QUEUE) -> None:
        super().__init__()
        import redis

        self.url = url
        self.channel = channel
        self.send_queue = send_queue
        self._redis = redis
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._connected = False
        self._client = self._new_client()
        self._sender = threading.Thread(target=self._send_loop, name="fanout:redis-send", daemon=True)
        self._listener = threading.Thread(target=self._listen_loop, name="fanout:redis-listen", daemon=True)
        self._sender.start()
        self._listener.start()

    def _new_client(self) -> Any:
        return self._redis.Redis.from_url(self.url, socket_connect_timeout=2.0, socket_timeout=5.0)

    def describe(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"redis {parts.hostname or '?'}:{parts.port or 6379} channel {self.channel}"

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_listening(self, timeout: float = 5.0) -> bool:
        """Return True once the listener has subscribed (trades published before are not seen here)."""
        return self._listening.wait(timeout)

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, trade: Trade) -> None:
        self.published += 1
        if self._queue.qsize() >= self.send_queue:
            self.dropped_here += 1
            return
        self._queue.put(orjson.dumps(trade))

    def _send_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_PIPELINE:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._stop.set()
                    break
                batch.append(item)
            try:
                pipe = self._client.pipeline(transaction=False)
                for payload in batch:
                    pipe.publish(self.channel, payload)
                pipe.execute()
                backoff = 0.1
            except self._redis.RedisError as exc:
                self.dropped_here += len(batch)
                self._fail("publish", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- listening -----------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._new_client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self._connected = True
                self._listening.set()
                backoff = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        trade = orjson.loads(message["data"])
                    except orjson.JSONDecodeError:
                        continue  # another publisher's noise on the channel
                    if isinstance(trade, dict):
                        self._dispatch(trade)
            except self._redis.RedisError as exc:
                self._connected = False
                self._fail("listen", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a broken connection may fail in many ways
                        log.debug("closing the pubsub connection failed", exc_info=True)
        self._connected = False

    def _fail(self, what: str, exc: Exception) -> None:
        host = urllib.parse.urlsplit(self.url).hostname or "?"
        self.last_error = f"redis {what} on {host}: {type(exc).__name__}"
        log.warning("fan-out: %s", self.last_error)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except self._redis.RedisError:
            return False

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._sender.join(5.0)
        self._listener.join(5.0)
        try:
            self._client.close()
        except Exception:  # closing a broken connection may fail in many ways
            log.debug("closing the redis client failed", exc_info=True)
        super().close()
