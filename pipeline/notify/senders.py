"""Webhook senders: each posts from its own daemon thread through a bounded queue.

A webhook that is slow, failing or down never holds up the caller: while it is down notifications
are retried with backoff, and once its queue is full new ones are dropped and counted. A Discord
webhook URL holds a secret token in its path, so errors and logs name only the webhook's
scheme://host:port.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

import orjson

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0  # the longest a sender waits before a retry, whatever the server asks for


def check_webhook_url(name: str, url: str) -> None:
    """Raise ``ConfigError`` unless ``url`` is an absolute http(s) URL (the message never shows the URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"the {name} webhook URL must be an absolute http(s) URL "
            f"(got scheme {parts.scheme!r}{'' if parts.hostname else ' and no host'})"
        )


def origin_of(url: str) -> str:
    """Return scheme://host:port of ``url``: what may be shown of a webhook URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


@dataclass(frozen=True)
class _Outcome:
    """How one POST went: delivered, worth retrying (after ``wait_s`` if the server said), or not."""

    ok: bool
    retry: bool = False
    error: str = ""
    wait_s: float | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302 of a POST as a GET without the body: treat it as a failure instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    """Posts JSON to one URL from its own daemon thread, through a bounded queue."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_queue: int = 1000,
        max_retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        check_webhook_url(name, url)
        self.name = name
        self.origin = origin_of(url)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._url = url
        parts = urlsplit(url)
        self._secrets = [s for s in (url, parts.path, parts.query) if len(s) > 1]
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._last_error: str | None = None

    def send(self, payload: dict[str, Any]) -> bool:
        """Enqueue ``payload``; never blocks. False (counted as dropped) when the queue is full or the
        sender is stopped."""
        if not self._stop.is_set():
            try:
                self._queue.put_nowait(payload)
                return True
            except queue.Full:
                pass
        with self._lock:
            self._dropped += 1
        return False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"webhook:{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; what is still queued is not sent. A POST in flight ends within ``timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, int | str | None]:
        with self._lock:
            return {
                "sent": self._sent,
                "failed": self._failed,
                "dropped": self._dropped,
                "queued": self._queue.qsize(),
                "last_error": self._last_error,
            }

    # -- the sender's thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._deliver(payload)
            except Exception as exc:  # a bug here must not end the thread and leave the queue to fill
                log.exception("webhook %s (%s): unexpected error", self.name, self.origin)
                self._count_failure(f"{type(exc).__name__}: {self._scrub(str(exc))}")

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        for attempt in range(self.max_retries + 1):
            outcome = self._post(body)
            if outcome.ok:
                with self._lock:
                    self._sent += 1
                return
            if not outcome.retry or attempt == self.max_retries:
                break
            wait = outcome.wait_s if outcome.wait_s is not None else self.backoff_s * 2**attempt
            log.info("webhook %s: %s; retry %d in %.2f s", self.name, outcome.error, attempt + 1, wait)
            if self._stop.wait(min(MAX_WAIT_S, max(0.0, wait))):
                return  # stopping: give up on this payload rather than hold up the shutdown
        log.warning("webhook %s: notification not delivered: %s", self.name, outcome.error)
        self._count_failure(outcome.error)

    def _post(self, body: bytes) -> _Outcome:
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                # Discord's edge refuses urllib's default User-Agent.
                "User-Agent": "traders-desk-notifier/1.0",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()
            return _Outcome(ok=True)
        except urllib.error.HTTPError as exc:
            return self._http_error(exc)
        except (urllib.error.URLError, HTTPException, OSError) as exc:  # refused, reset, timed out
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return _Outcome(ok=False, retry=True, error=self._describe(f"{type(reason).__name__}: {reason}"))

    def _http_error(self, exc: urllib.error.HTTPError) -> _Outcome:
        try:
            body = exc.read(65_536)
        except (OSError, HTTPException):
            body = b""
        finally:
            exc.close()
        error = self._describe(f"HTTP {exc.code}")
        if exc.code == 429:
            return _Outcome(ok=False, retry=True, error=error, wait_s=retry_after(body, exc.headers.get("Retry-After")))
        return _Outcome(ok=False, retry=exc.code >= 500, error=error)

    def _describe(self, what: str) -> str:
        return f"{self.origin}: {self._scrub(what)}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "…")
        return text

    def _count_failure(self, error: str) -> None:
        with self._lock:
            self._failed += 1
            self._last_error = error


def retry_after(body: bytes, header: str | None) -> float | None:
    """Seconds a 429 asks to wait: Discord's JSON ``retry_after``, else the ``Retry-After`` header."""
    try:
        value = orjson.loads(body).get("retry_after") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        value = None
    for candidate in (value, header):
        try:
            seconds = float(candidate)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # absent, or an HTTP date: fall back to the backoff
            continue
        if math.isfinite(seconds):
            return min(MAX_WAIT_S, max(0.0, seconds))
    return None
