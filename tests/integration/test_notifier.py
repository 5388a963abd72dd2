"""The notifier: through the runner on both buses to real local webhooks, and its senders against
webhooks that fail, rate-limit, hang or are gone. Nothing here may make the pipeline wait on a webhook."""

from __future__ import annotations

import random
import string
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import pytest

from pipeline.bus.base import Bus, Producer, Record
from pipeline.errors import ConfigError
from pipeline.journal.behaviour_book import Severity
from pipeline.messages import Alert, BehavioralAlert, Message, Order, build, encode
from pipeline.notify.formatting import AMBER, GREEN, GREY, RED
from pipeline.notify.senders import WebhookSender
from pipeline.runner import FEED_HEADER, REPLAY, StageRunner
from pipeline.stages.notifier import Notifier
from pipeline.topics import ALERTS, BEHAVIORAL_ALERTS, CATALOG, ORDERS
from tests.fakes.webhook import Answer, Seen, WebhookFake

DISCORD_PATH = "/api/webhooks/1234567890/SECRET-TOKEN-abc"


def now_ms() -> int:
    return int(time.time() * 1000)


def unique_symbol() -> str:
    # The broker is shared across runs: a symbol of this test's own keeps other runs' orders out.
    return "Q" + "".join(random.choices(string.ascii_uppercase, k=5)) + "USDT"


def order(
    order_id: str,
    symbol: str,
    status: str,
    *,
    action: str = "BUY",
    price: float = 68_000.5,
    quantity: float = 0.0123,
    stop: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> Order:
    below, above = price * 0.97, price * 1.05
    stop_loss, take_profit = (stop or below, above) if action == "BUY" else (stop or above, below)
    return build(
        Order,
        order_id=order_id,
        symbol=symbol,
        timestamp=now_ms(),
        action=action,
        order_type="MARKET",
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status=status,
        strategy="ml_signal",
        trigger_signal={"model": "random_forest", "confidence": 0.72, "expected_change_pct": 2.1},
        risk_management={
            "stop_loss": stop_loss,
            "take_profit": take_profit,
            "stop_loss_pct": 3.0,
            "take_profit_pct": 5.0,
        },
        metadata=metadata or {},
    )  # type: ignore[return-value]  # build(Order, ...) makes an Order


def behavioral(
    user: str, severity: Severity, *, alert_type: str = "revenge_trading", message: str = ""
) -> BehavioralAlert:
    return BehavioralAlert(
        alert_id=uuid.uuid4().hex,
        user_id=user,
        alert_type=alert_type,
        severity=severity,
        timestamp=now_ms(),
        trade_ids=[f"{user}:t1", f"{user}:t2"],
        message=message or "Entered SOLUSDT 6 min after a -812.40 USDT loss",
    )


def seed_alert(
    symbol: str,
    priority: Literal["low", "medium", "high", "critical"],
    *,
    timestamp: str = "2024-03-04T10:00:00Z",
    message: str = "",
) -> Alert:
    return Alert(
        alert_id=uuid.uuid4().hex,
        symbol=symbol,
        alert_type="risk_alert",
        priority=priority,
        timestamp=timestamp,
        message=message or "RSI 84 and volume spike",
    )


def sender(name: str, url: str, **kwargs: Any) -> WebhookSender:
    """A started sender with test-sized timeouts."""
    options = {"timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.02} | kwargs
    s = WebhookSender(name, url, **options)
    s.start()
    return s


class Capture(WebhookSender):
    """A sender that keeps what it is given instead of posting it."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "http://127.0.0.1:9/unused")
        self.payloads: list[dict[str, Any]] = []

    def send(self, payload: dict[str, Any]) -> bool:
        self.payloads.append(payload)
        return True


def wait(condition: Callable[[], bool], timeout: float, what: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


# --------------------------------------------------------------------------- through the runner


def make_stage(group_name: Callable[..., str], senders: list[WebhookSender]) -> Notifier:
    """A notifier with a consumer group of this test's own that records which topics it has seen."""

    class TestNotifier(Notifier):
        name: ClassVar[str] = f"notifier-{group_name('notifier')}"

        def __init__(self) -> None:
            super().__init__(senders=senders)
            self.topics_seen: set[str] = set()

        def process_batch(self, messages: list[Message | None]) -> list[Message]:
            self.topics_seen.update(m.topic for m in messages if m is not None)
            return super().process_batch(messages)

    return TestNotifier()


def warm_up(runner: StageRunner, stage: Notifier, producer: Producer) -> None:
    """The stage starts at the topics' end ("latest"): publish to each input until it has read from
    each, so what is published next is surely read."""
    symbol, user = unique_symbol(), f"warm-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 90
    while stage.topics_seen < {ORDERS, BEHAVIORAL_ALERTS, ALERTS}:  # type: ignore[attr-defined]  # a TestNotifier
        assert time.monotonic() < deadline, runner.health.snapshot()
        for m in (order("warm-up-" + symbol, symbol, "PENDING"), behavioral(user, "low"), seed_alert(symbol, "low")):
            producer.produce(m.topic, encode(m), key=m.key())
        assert producer.flush(30) == 0
        time.sleep(0.3)


def publish(producer: Producer, *messages: Message) -> None:
    for m in messages:
        producer.produce(m.topic, encode(m), key=m.key())
    assert producer.flush(30) == 0


def test_orders_fills_closes_and_high_alerts_reach_both_webhooks_once_each(
    bus: Bus, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    symbol, user, oid = unique_symbol(), f"trader-{uuid.uuid4().hex[:8]}", f"ord-{uuid.uuid4().hex[:10]}"
    fill = {"fill_price": 68_010.25, "fill_fee": 0.42, "filled_at": now_ms()}
    pending = order(oid, symbol, "PENDING")
    filled = order(oid, symbol, "FILLED", metadata=fill)
    trailed = order(oid, symbol, "FILLED", stop=67_500.0, metadata=fill)  # a trailing stop moved
    closed = order(
        oid,
        symbol,
        "CLOSED",
        metadata=fill
        | {
            "exit_price": 71_000.0,
            "exit_fee": 0.44,
            "closed_at": now_ms() + 3_900_000,
            "exit_reason": "take_profit",
            "pnl": 12.34,
            "pnl_pct": 4.9,
        },
    )
    high = behavioral(user, "high")

    def mine(discord: bool) -> Callable[[dict[str, Any]], bool]:
        if discord:
            return lambda body: symbol in body["content"] or user in body["content"]
        return lambda body: body["data"].get("symbol") == symbol or body["data"].get("user_id") == user

    with WebhookFake(path=DISCORD_PATH) as discord, WebhookFake() as generic:
        senders = [sender("discord", discord.url), sender("webhook", generic.url)]
        stage = make_stage(group_name, senders)
        runner = StageRunner(stage, bus, poll_timeout=0.2)
        runner.start()
        producer = bus.producer()

        def received(fake: WebhookFake) -> list[dict[str, Any]]:
            return [b for b in fake.delivered() if mine(fake is discord)(b)]

        def arrived(count: int) -> Callable[[], bool]:
            return lambda: len(received(discord)) >= count and len(received(generic)) >= count

        try:
            warm_up(runner, stage, producer)
            publish(producer, pending, filled, trailed, closed)
            wait(arrived(3), 30, lambda: (received(discord), received(generic), stage.stats()))
            # Only now the alerts: they are on another topic, and the order of arrival is asserted.
            publish(producer, behavioral(user, "low"), high)
            wait(arrived(4), 30, lambda: (received(discord), received(generic), stage.stats()))
            time.sleep(0.5)  # anything wrongly sent would come by now
        finally:
            runner.stop()
            stage.close()
        health = runner.health.snapshot()

    titles = [
        f"BUY 0.0123 {symbol} @ 68,000.50 placed (MARKET)",
        f"BUY 0.0123 {symbol} @ 68,010.25 filled",
        f"{symbol} closed by take_profit: +12.34 USDT (+4.9%)",
        f"High alert: revenge_trading ({user})",
    ]
    bodies = received(generic)
    assert [b["kind"] for b in bodies] == ["order", "fill", "close", "alert"]
    assert [b["title"] for b in bodies] == titles
    assert [b["data"].get("status") for b in bodies[:3]] == ["PENDING", "FILLED", "CLOSED"]
    assert bodies[3]["data"]["alert_id"] == high.alert_id and bodies[3]["data"]["severity"] == "high"
    assert "entry 68,010.25, exit 71,000.00" in bodies[2]["text"] and "Held 1h 5m" in bodies[2]["text"]

    posts = received(discord)
    assert [p["content"] for p in posts] == titles
    embeds = [p["embeds"][0] for p in posts]
    assert [e["title"] for e in embeds] == titles
    assert [e["color"] for e in embeds] == [GREEN, GREEN, GREEN, AMBER]
    assert embeds[1]["timestamp"] == datetime.fromtimestamp(filled.timestamp / 1000, UTC).isoformat(
        timespec="milliseconds"
    )
    assert all(r.path == DISCORD_PATH and r.headers["Content-Type"] == "application/json" for r in discord.requests)
    assert health.dead_lettered == 0 and health.errors == 0, health
    for stats in (senders[0].stats(), senders[1].stats()):
        assert stats["failed"] == 0 and stats["dropped"] == 0, stats


def test_a_webhook_that_is_down_holds_up_neither_the_stage_nor_the_other_webhook(
    bus: Bus, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    with WebhookFake() as gone:
        pass  # closed: its port now refuses connections
    down_url = f"{gone.base_url}/api/webhooks/42/SECRET-TOKEN?wait=true"
    symbol = unique_symbol()
    with WebhookFake(path=DISCORD_PATH) as discord:
        down = sender("webhook", down_url, timeout_s=2.0, max_retries=2, backoff_s=0.02)
        up = sender("discord", discord.url)
        stage = make_stage(group_name, [up, down])

        started = time.monotonic()
        stage.process_batch([order(f"{symbol}-{i}", symbol, "PENDING") for i in range(50)])
        # a batch that waited on the dead webhook would spend at least 50 x (0.02 + 0.04) s = 3 s in
        # its backoff alone; well under that means the batch only queued (no machine is that slow)
        assert time.monotonic() - started < 1.5

        runner = StageRunner(stage, bus, poll_timeout=0.2)
        runner.start()
        producer = bus.producer()
        try:
            warm_up(runner, stage, producer)
            before = runner.health.snapshot().processed
            publish(producer, *(order(f"{symbol}-late-{i}", symbol, "PENDING") for i in range(5)))
            wait(lambda: runner.health.snapshot().processed >= before + 5, 30, runner.health.snapshot)
            wait(lambda: stage.stats()["webhook"]["failed"] >= 55, 30, stage.stats)
            assert discord.wait_until(lambda seen: sum(symbol in r.json()["content"] for r in seen) == 55, 10)
        finally:
            runner.stop()
            stage.close()
    health = runner.health.snapshot()
    assert health.errors == 0 and health.dead_lettered == 0, health
    stats = stage.stats()["webhook"]
    assert stats["sent"] == 0
    error = str(stats["last_error"])
    assert error.startswith(f"{gone.base_url}: ") and "refused" in error, error
    for secret in ("SECRET-TOKEN", "/api/webhooks", "wait=true"):
        assert secret not in error, error
    assert not up.alive and not down.alive


# --------------------------------------------------------------------------- the sender's retries


def test_a_500_is_retried_and_delivered_once() -> None:
    with WebhookFake() as hook:
        hook.answer_next(Answer(500), Answer(503))
        s = sender("webhook", hook.url, max_retries=3)
        try:
            assert s.send({"n": 1})
            assert hook.wait_for(1, 5)
        finally:
            s.stop()
    assert [r.status for r in hook.requests] == [500, 503, 204]
    assert hook.delivered() == [{"n": 1}]
    assert s.stats() == {"sent": 1, "failed": 0, "dropped": 0, "queued": 0, "last_error": None}


def test_a_429_waits_as_long_as_it_says_then_delivers() -> None:
    with WebhookFake() as hook:
        # backoff_s is long: a delivery within a second can only have used the server's wait
        hook.answer_next(
            Answer(429, b'{"message": "You are being rate limited.", "retry_after": 0.3}'),
            Answer(429, headers={"Retry-After": "0.2"}),
        )
        s = sender("discord", hook.url, max_retries=3, backoff_s=20.0)
        try:
            s.send({"content": "hello"})
            assert hook.wait_for(1, 3), hook.requests
        finally:
            s.stop()
    first, second, third = hook.requests
    assert second.at - first.at >= 0.3 and third.at - second.at >= 0.2
    assert third.at - first.at < 2.0
    assert hook.delivered() == [{"content": "hello"}] and s.stats()["sent"] == 1


def test_a_4xx_is_not_retried_and_giving_up_moves_on_to_the_next_payload() -> None:
    with WebhookFake(path=DISCORD_PATH) as hook:
        hook.answer_next(
            Answer(400, b'{"message": "Cannot send an empty message"}'), Answer(500), Answer(500), Answer(500)
        )
        s = sender("discord", hook.url, max_retries=2)
        try:
            for n in range(3):
                s.send({"n": n})
            assert hook.wait_for(1, 5)
        finally:
            s.stop()
    # 400 once; 500 three times (the first try and two retries); then the third payload goes
    assert [(r.json()["n"], r.status) for r in hook.requests] == [(0, 400), (1, 500), (1, 500), (1, 500), (2, 204)]
    stats = s.stats()
    assert (stats["sent"], stats["failed"]) == (1, 2)
    assert stats["last_error"] == f"{hook.base_url}: HTTP 500", stats


def test_a_hung_webhook_fills_the_queue_then_drops_and_stop_is_prompt() -> None:
    with WebhookFake(default=Answer(delay_s=30.0)) as hook:
        s = sender("webhook", hook.url, timeout_s=0.5, max_queue=5, max_retries=2, backoff_s=10.0)
        try:
            assert s.send({"n": 0})
            assert hook.wait_for(1, 5, delivered=False)  # the sender's thread is stuck on it
            started = time.monotonic()
            accepted = [s.send({"n": n}) for n in range(1, 9)]
            assert time.monotonic() - started < 0.05
            assert accepted == [True] * 5 + [False] * 3
            stats = s.stats()
            assert (stats["queued"], stats["dropped"], stats["sent"]) == (5, 3, 0)

            stage = Notifier(senders=[s])
            started = time.monotonic()
            stage.process_batch([behavioral("trader", "high") for _ in range(100)])
            assert time.monotonic() - started < 0.2
            assert s.stats()["dropped"] == 103
        finally:
            started = time.monotonic()
            s.stop(timeout=5.0)
            stopped_in = time.monotonic() - started
    assert stopped_in < 1.0 and not s.alive  # at most the 0.5 s request timeout, never the 10 s backoff
    assert not s.send({"n": 99})  # a stopped sender drops


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "urls",
    [
        {},
        {"discord_url": None, "webhook_url": ""},
        {"webhook_url": "ftp://example.com/hook"},
        {"discord_url": "discord.com/api/webhooks/1/SECRET-TOKEN"},
        {"discord_url": "https://discord.com/api/webhooks/1/SECRET-TOKEN", "webhook_url": "file:///etc/SECRET-TOKEN"},
    ],
)
def test_config_errors(urls: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        Notifier(**urls)
    assert "SECRET-TOKEN" not in str(caught.value)


def test_built_from_urls_it_starts_its_senders_and_close_stops_them() -> None:
    with WebhookFake(path=DISCORD_PATH) as discord, WebhookFake() as generic:
        stage = Notifier(discord_url=discord.url, webhook_url=generic.url)
        try:
            stage.process_batch([seed_alert("AAPL", "low"), seed_alert("AAPL", "critical")])
            assert discord.wait_for(1, 5) and generic.wait_for(1, 5)
        finally:
            stage.close()
        assert [s.alive for s in stage.senders] == [False, False]
    assert [b["content"] for b in discord.delivered()] == ["Critical alert: risk_alert (AAPL)"]
    assert [b["kind"] for b in generic.delivered()] == ["alert"]
    assert set(stage.stats()) == {"discord", "webhook"}


# --------------------------------------------------------------------------- what it says


def notify(*messages: Message) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Discord and generic payloads a fresh notifier makes of ``messages``."""
    discord, generic = Capture("discord"), Capture("webhook")
    Notifier(senders=[discord, generic]).process_batch(list(messages))
    return discord.payloads, generic.payloads


def test_titles_colours_and_kinds() -> None:
    fill = order("o1", "BTCUSDT", "FILLED")
    sell_fill = order("o2", "BTCUSDT", "FILLED", action="SELL", metadata={"closes": "o1", "fill_price": 69_000.0})
    win = order("o1", "BTCUSDT", "CLOSED", metadata={"exit_reason": "take_profit", "pnl": 12.34, "pnl_pct": 4.94})
    loss = order(
        "o3",
        "SOLUSDT",
        "CLOSED",
        price=150.0,
        quantity=2.0,
        metadata={"exit_reason": "stop_loss", "pnl": -5.0, "pnl_pct": -1.67},
    )
    cancel = order("o4", "ETHUSDT", "CANCELLED", price=3_500.0, metadata={"reason": "insufficient cash"})
    tiny = order("o5", "SHIBUSDT", "PENDING", price=0.00001234, quantity=1_500_000.0)
    discord, generic = notify(
        fill,
        sell_fill,
        win,
        loss,
        cancel,
        tiny,
        behavioral("trader", "high"),
        behavioral("trader", "medium"),
        seed_alert("AAPL", "high"),
        seed_alert("AAPL", "medium"),
    )
    assert [g["title"] for g in generic] == [
        "BUY 0.0123 BTCUSDT @ 68,000.50 filled",
        "SELL 0.0123 BTCUSDT @ 69,000.00 filled",
        "BTCUSDT closed by take_profit: +12.34 USDT (+4.9%)",
        "SOLUSDT closed by stop_loss: -5.00 USDT (-1.7%)",
        "ETHUSDT order cancelled: insufficient cash",
        "BUY 1,500,000 SHIBUSDT @ 0.00001234 placed (MARKET)",
        "High alert: revenge_trading (trader)",
        "High alert: risk_alert (AAPL)",
    ]
    assert [g["kind"] for g in generic] == ["fill", "fill", "close", "close", "cancel", "order", "alert", "alert"]
    assert [d["embeds"][0]["color"] for d in discord] == [GREEN, RED, GREEN, RED, GREY, GREEN, AMBER, AMBER]
    assert "Closes o1" in generic[1]["text"]
    assert discord[7]["embeds"][0]["timestamp"] == "2024-03-04T10:00:00.000+00:00"
    assert generic[4]["data"]["metadata"] == {"reason": "insufficient cash"}
    assert all(d["allowed_mentions"] == {"parse": []} for d in discord)


def test_an_order_status_notifies_once_even_when_republished_or_late() -> None:
    m = {"fill_price": 100.0}
    messages = [
        order("o1", "SOLUSDT", "PENDING", price=100.0),
        order("o1", "SOLUSDT", "FILLED", price=100.0, metadata=m),
        order("o1", "SOLUSDT", "FILLED", price=100.0, stop=97.0, metadata=m),
        order("o1", "SOLUSDT", "CLOSED", price=100.0, metadata=m),
        order("o1", "SOLUSDT", "FILLED", price=100.0, stop=98.0, metadata=m),  # late re-publish
        order("o2", "SOLUSDT", "FILLED", price=100.0, metadata=m),
    ]
    _, generic = notify(*messages)
    assert [(g["data"]["order_id"], g["kind"]) for g in generic] == [
        ("o1", "order"),
        ("o1", "fill"),
        ("o1", "close"),
        ("o2", "fill"),
    ]


def test_discord_limits_and_odd_metadata() -> None:
    # Alert validates its time now; an alert stored before that rule can still carry one Discord
    # cannot read, so the formatter is checked on a message built without validation
    long_alert = seed_alert("AAPL", "critical", message="x" * 10_000).model_copy(update={"timestamp": "not a time"})
    long_title = behavioral("t" * 3_000, "high")
    odd = order("o9", "BTCUSDT", "CLOSED", metadata={"pnl": "n/a", "exit_price": True, "exit_reason": None})
    discord, generic = notify(long_alert, long_title, odd)
    for d in discord:
        embed = d["embeds"][0]
        assert len(d["content"]) <= 2000 and len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
    assert "timestamp" not in discord[0]["embeds"][0]  # Discord rejects a time it cannot read
    assert len(generic[0]["text"]) == 10_000  # the generic webhook gets it whole
    assert generic[2]["title"] == "BTCUSDT closed" and discord[2]["embeds"][0]["color"] == GREY


def test_replayed_messages_do_not_notify() -> None:
    stage = Notifier(senders=[Capture("webhook")])
    message = behavioral("trader", "high")
    live = Record(BEHAVIORAL_ALERTS, 0, 1, None, encode(message), now_ms())
    replayed = Record(BEHAVIORAL_ALERTS, 0, 2, None, encode(message), now_ms(), ((FEED_HEADER, REPLAY),))
    assert stage.prepare_record(message, live) is message
    assert stage.prepare_record(message, replayed) is None
    stage.process_batch([None, stage.prepare_record(message, live)])
    assert [p["kind"] for p in stage.senders[0].payloads] == ["alert"]  # type: ignore[attr-defined]  # a Capture sender


def test_the_fake_refuses_anything_but_post() -> None:
    # so nothing but the sender's POSTs can count as delivered
    with WebhookFake() as hook:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(hook.url, timeout=2)
        assert caught.value.code == 405
    assert isinstance(hook.requests[0], Seen) and hook.delivered() == []
