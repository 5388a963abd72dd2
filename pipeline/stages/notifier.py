"""notifier: sends orders, fills, closes and high-priority alerts to a Discord webhook and a generic JSON webhook.

The stage only picks what notifies and enqueues it. Formatting is ``pipeline.notify.formatting``;
each webhook has a ``pipeline.notify.senders.WebhookSender`` that posts from its own daemon
thread through a bounded queue, so a webhook that is slow, failing or down never holds up the
pipeline.

What notifies: an order's status change, once per (order_id, status) (the exchange re-publishes
FILLED whenever a trailing stop moves); a behavioural alert of severity "high"; a seed-003 alert of
priority "high" or "critical". Replayed messages never notify: a replay is history, not news.

A Discord webhook URL holds a secret token in its path, so errors and logs name only the
webhook's scheme://host:port.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, ClassVar

from pipeline.bus.base import OffsetReset, Record
from pipeline.errors import ConfigError
from pipeline.messages import Alert, BehavioralAlert, Message, Order
from pipeline.notify.formatting import (
    Notification,
    alert_notification,
    behavioral_notification,
    order_notification,
)
from pipeline.notify.senders import WebhookSender, check_webhook_url
from pipeline.runner import FEED_HEADER, REPLAY, Stage
from pipeline.topics import ALERTS, BEHAVIORAL_ALERTS, ORDERS

log = logging.getLogger(__name__)

DISCORD = "discord"
WEBHOOK = "webhook"
ORDERS_REMEMBERED = 10_000


class Notifier(Stage):
    """Consumer stage; formats on the runner's thread and leaves all network I/O to its senders.

    A sender named "discord" gets Discord's payload (content + one embed); any other the generic
    ``{"kind", "title", "text", "data"}``.
    """

    name: ClassVar[str] = "notifier"
    inputs: ClassVar[tuple[str, ...]] = (ORDERS, BEHAVIORAL_ALERTS, ALERTS)
    offset_reset: ClassVar[OffsetReset] = "latest"  # notify about now, not the topic's history

    def __init__(
        self,
        *,
        discord_url: str | None = None,
        webhook_url: str | None = None,
        senders: list[WebhookSender] | None = None,
    ) -> None:
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
            return order_notification(message) if self._first_time(message) else None
        if isinstance(message, BehavioralAlert):
            return behavioral_notification(message) if message.severity == "high" and not message.void else None
        if isinstance(message, Alert):
            return alert_notification(message) if message.priority in ("high", "critical") else None
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
