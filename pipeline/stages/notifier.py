"""notifier: sends orders, fills, closes and high-priority alerts to a Discord webhook and a generic JSON webhook.

The stage only formats and enqueues. Each webhook has a ``WebhookSender`` that posts from its own
daemon thread through a bounded queue, so a webhook that is slow, failing or down never holds up
the pipeline: while it is down notifications are retried with backoff, and once its queue is full
new ones are dropped and counted.

What notifies: an order's status change, once per (order_id, status) (the exchange re-publishes
FILLED whenever a trailing stop moves); a behavioural alert of severity "high"; a seed-003 alert of
priority "high" or "critical". Replayed messages never notify: a replay is history, not news.

A Discord webhook URL holds a secret token in its path, so errors and logs name only the
webhook's scheme://host:port.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from http.client import HTTPException
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from pipeline.bus.base import OffsetReset, Record
from pipeline.errors import ConfigError
from pipeline.messages import Alert, BehavioralAlert, Message, Order
from pipeline.runner import FEED_HEADER, REPLAY, Stage
from pipeline.topics import ALERTS, BEHAVIORAL_ALERTS, ORDERS

log = logging.getLogger(__name__)

DISCORD = "discord"
WEBHOOK = "webhook"

MAX_WAIT_S = 30.0  # the longest a sender waits before a retry, whatever the server asks for
ORDERS_REMEMBERED = 10_000
DISCORD_CONTENT_MAX = 2000
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096

GREEN = 0x2ECC71
RED = 0xE74C3C
AMBER = 0xF5A623
GREY = 0x95A5A6

KIND_OF_STATUS = {"PENDING": "order", "FILLED": "fill", "CLOSED": "close", "CANCELLED": "cancel"}


# --------------------------------------------------------------------------- sending


def check_webhook_url(name: str, url: str) -> None:
    """Raise ``ConfigError`` unless ``url`` is an absolute http(s) URL (the message never shows the URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the {name} webhook URL must be an absolute http(s) URL "
                          f"(got scheme {parts.scheme!r}{'' if parts.hostname else ' and no host'})")


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

    def __init__(self, name: str, url: str, *, timeout_s: float = 5.0, max_queue: int = 1000,
                 max_retries: int = 3, backoff_s: float = 1.0) -> None:
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
            return {"sent": self._sent, "failed": self._failed, "dropped": self._dropped,
                    "queued": self._queue.qsize(), "last_error": self._last_error}

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
            wait = outcome.wait_s if outcome.wait_s is not None else self.backoff_s * 2 ** attempt
            log.info("webhook %s: %s; retry %d in %.2f s", self.name, outcome.error, attempt + 1, wait)
            if self._stop.wait(min(MAX_WAIT_S, max(0.0, wait))):
                return  # stopping: give up on this payload rather than hold up the shutdown
        log.warning("webhook %s: notification not delivered: %s", self.name, outcome.error)
        self._count_failure(outcome.error)

    def _post(self, body: bytes) -> _Outcome:
        request = urllib.request.Request(self._url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            # Discord's edge refuses urllib's default User-Agent.
            "User-Agent": "traders-desk-notifier/1.0"})
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


# --------------------------------------------------------------------------- formatting


@dataclass(frozen=True)
class Notification:
    """One thing to tell the trader, in a form each webhook's payload is built from."""

    kind: str
    title: str
    text: str
    color: int
    timestamp: str | None  # ISO-8601 UTC
    data: dict[str, Any]

    def generic(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "text": self.text, "data": self.data}

    def discord(self) -> dict[str, Any]:
        embed: dict[str, Any] = {"title": _cut(self.title, DISCORD_TITLE_MAX),
                                 "description": _cut(self.text, DISCORD_DESCRIPTION_MAX), "color": self.color}
        if self.timestamp is not None:
            embed["timestamp"] = self.timestamp
        # allowed_mentions: an alert's text must not be able to ping @everyone.
        return {"content": _cut(self.title, DISCORD_CONTENT_MAX), "embeds": [embed],
                "allowed_mentions": {"parse": []}}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def fmt_price(value: float) -> str:
    """68,000.50; 2.3456; 0.00001234: four significant digits at least, thousands separated."""
    if abs(value) >= 100 or value == 0:
        return f"{value:,.2f}"
    if abs(value) >= 1:
        return f"{value:,.4f}"
    decimals = 3 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


def fmt_qty(value: float) -> str:
    text = f"{value:,.8f}".rstrip("0").rstrip(".")
    return text or "0"


def fmt_usdt(value: float, *, sign: bool = False) -> str:
    return f"{value:{'+' if sign else ''},.2f} USDT"


def _num(metadata: dict[str, Any], key: str) -> float | None:
    """A number from order metadata, which the exchange fills loosely: None if absent or not a number."""
    value = metadata.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    return str(value) if value not in (None, "") else None


def iso_of_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def iso_of_text(text: str) -> str | None:
    """Normalise a seed-003 ISO time to UTC; None if it cannot be read (Discord rejects a bad one)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _duration(ms: float) -> str:
    minutes = int(ms // 60_000)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m"]
    return " ".join(p for p in parts if p)


def _risk_line(order: Order, price: float) -> str | None:
    rm = order.risk_management
    parts = [f"{label} {fmt_price(level)} ({(level / price - 1) * 100:+.1f}%)"
             for label, level in (("stop loss", rm.stop_loss), ("take profit", rm.take_profit)) if level is not None]
    return "Risk: " + ", ".join(parts) if parts else None


def _signal_line(order: Order) -> str:
    s = order.trigger_signal
    return (f"Strategy {order.strategy}: {s.model} at {s.confidence:.0%} confidence, "
            f"expected {s.expected_change_pct:+.2f}%")


def _order_notification(order: Order) -> Notification:
    meta = order.metadata
    side_color = GREEN if order.action == "BUY" else RED
    closes = _text(meta, "closes")
    if order.status == "PENDING":
        title = f"{order.action} {fmt_qty(order.quantity)} {order.symbol} @ {fmt_price(order.price)} placed " \
                f"({order.order_type}{f', closes {closes}' if closes else ''})"
        lines = [f"Value: {fmt_usdt(order.total_value)}", _risk_line(order, order.price), _signal_line(order)]
        color = side_color
    elif order.status == "FILLED":
        price = _num(meta, "fill_price") or order.price
        fee = _num(meta, "fill_fee")
        title = f"{order.action} {fmt_qty(order.quantity)} {order.symbol} @ {fmt_price(price)} filled"
        lines = [f"Value: {fmt_usdt(order.quantity * price)}" + (f", fee {fmt_usdt(fee)}" if fee is not None else ""),
                 _risk_line(order, price), f"Closes {closes}" if closes else None, _signal_line(order)]
        color = side_color
    elif order.status == "CLOSED":
        title, lines, color = _close_parts(order)
    else:
        reason = _text(meta, "reason")
        title = f"{order.symbol} order cancelled" + (f": {reason}" if reason else "")
        lines = [f"{order.action} {fmt_qty(order.quantity)} {order.symbol} @ {fmt_price(order.price)} "
                 f"({order.order_type})", _signal_line(order)]
        color = GREY
    lines.append(f"Order {order.order_id}")
    return Notification(kind=KIND_OF_STATUS[order.status], title=title, text="\n".join(x for x in lines if x),
                        color=color, timestamp=iso_of_ms(order.timestamp), data=order.model_dump(mode="json"))


def _close_parts(order: Order) -> tuple[str, list[str | None], int]:
    meta = order.metadata
    reason, pnl, pnl_pct = _text(meta, "exit_reason"), _num(meta, "pnl"), _num(meta, "pnl_pct")
    entry, exit_ = _num(meta, "fill_price") or order.price, _num(meta, "exit_price")
    title = f"{order.symbol} closed" + (f" by {reason}" if reason else "")
    if pnl is not None:
        title += f": {fmt_usdt(pnl, sign=True)}" + (f" ({pnl_pct:+.1f}%)" if pnl_pct is not None else "")
    elif exit_ is not None:
        title += f" @ {fmt_price(exit_)}"
    fees = [f for f in (_num(meta, "fill_fee"), _num(meta, "exit_fee")) if f is not None]
    filled_at, closed_at = _num(meta, "filled_at"), _num(meta, "closed_at")
    lines: list[str | None] = [
        f"{order.action} {fmt_qty(order.quantity)} {order.symbol}: entry {fmt_price(entry)}"
        + (f", exit {fmt_price(exit_)}" if exit_ is not None else ""),
        f"Fees: {fmt_usdt(sum(fees))}" if fees else None,
        f"Held {_duration(closed_at - filled_at)}" if filled_at and closed_at and closed_at >= filled_at else None,
        f"Strategy {order.strategy}"]
    color = GREEN if pnl is not None and pnl > 0 else RED if pnl is not None and pnl < 0 else GREY
    return title, lines, color


def _behavioral_notification(alert: BehavioralAlert) -> Notification:
    trades = ", ".join(alert.trade_ids[:10]) + (f" and {len(alert.trade_ids) - 10} more"
                                                if len(alert.trade_ids) > 10 else "")
    return Notification(kind="alert", title=f"{alert.severity.title()} alert: {alert.alert_type} ({alert.user_id})",
                        text=f"{alert.message}\nTrades: {trades}", color=AMBER, timestamp=iso_of_ms(alert.timestamp),
                        data=alert.model_dump(mode="json"))


def _alert_notification(alert: Alert) -> Notification:
    return Notification(kind="alert", title=f"{alert.priority.title()} alert: {alert.alert_type} ({alert.symbol})",
                        text=alert.message, color=AMBER, timestamp=iso_of_text(alert.timestamp),
                        data=alert.model_dump(mode="json"))


# --------------------------------------------------------------------------- the stage


class Notifier(Stage):
    """Consumer stage; formats on the runner's thread and leaves all network I/O to its senders.

    A sender named "discord" gets Discord's payload (content + one embed); any other the generic
    ``{"kind", "title", "text", "data"}``.
    """

    name: ClassVar[str] = "notifier"
    inputs: ClassVar[tuple[str, ...]] = (ORDERS, BEHAVIORAL_ALERTS, ALERTS)
    offset_reset: ClassVar[OffsetReset] = "latest"  # notify about now, not the topic's history

    def __init__(self, *, discord_url: str | None = None, webhook_url: str | None = None,
                 senders: list[WebhookSender] | None = None) -> None:
        if senders is None:
            senders = self._build(discord_url, webhook_url)
        if not senders:
            raise ConfigError("the notifier needs a Discord or a generic webhook URL")
        self.senders = senders
        # order_id -> statuses notified, newest order last; bounded so a long run cannot grow it.
        self._notified: OrderedDict[str, set[str]] = OrderedDict()

    @staticmethod
    def _build(discord_url: str | None, webhook_url: str | None) -> list[WebhookSender]:
        urls = [(n, u) for n, u in ((DISCORD, discord_url), (WEBHOOK, webhook_url)) if u]
        for name, url in urls:
            check_webhook_url(name, url)  # all checked before any thread starts
        senders = [WebhookSender(name, url) for name, url in urls]
        for sender in senders:
            sender.start()
            log.info("notifier: sending to the %s webhook at %s", sender.name, sender.origin)
        return senders

    def prepare_record(self, message: Message, record: Record) -> Message | None:
        return None if record.header(FEED_HEADER) == REPLAY else message

    def process_batch(self, messages: list[Message | None]) -> list[Message]:
        for message in messages:
            if message is None:
                continue
            try:
                notification = self.notification_of(message)
            except Exception:  # a message we cannot describe must not be dead-lettered off the orders topic
                log.exception("notifier: cannot format %s message", message.topic)
                continue
            if notification is not None:
                self._send(notification)
        return []

    def notification_of(self, message: Message) -> Notification | None:
        """What ``message`` notifies, or None; remembers which order statuses were notified."""
        if isinstance(message, Order):
            return _order_notification(message) if self._first_time(message) else None
        if isinstance(message, BehavioralAlert):
            return _behavioral_notification(message) if message.severity == "high" and not message.void else None
        if isinstance(message, Alert):
            return _alert_notification(message) if message.priority in ("high", "critical") else None
        return None

    def _first_time(self, order: Order) -> bool:
        statuses = self._notified.setdefault(order.order_id, set())
        self._notified.move_to_end(order.order_id)
        if order.status in statuses:
            return False
        statuses.add(order.status)
        while len(self._notified) > ORDERS_REMEMBERED:
            self._notified.popitem(last=False)
        return True

    def _send(self, notification: Notification) -> None:
        for sender in self.senders:
            sender.send(notification.discord() if sender.name == DISCORD else notification.generic())

    def close(self) -> None:
        for sender in self.senders:  # signal all first, so two hung webhooks cost one timeout, not two
            sender.stop(timeout=0)
        for sender in self.senders:
            sender.stop()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {sender.name: sender.stats() for sender in self.senders}
