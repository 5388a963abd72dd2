"""The Discord bot needs no stage's live objects: it answers as a process of its own, and it reads
the ``alerts`` topic on both buses without joining, or committing for, any stage's group."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from pipeline.bus.base import Bus
from pipeline.config import load_config
from pipeline.messages import Alert, encode
from pipeline.notify.bot_desk import AlertTail
from pipeline.topics import TopicSpec
from pipeline.wiring import build_runtime
from tests.fakes.discord_gateway import FakeDiscord
from tests.integration.discord_desk import GUILD, TOKEN, settings, text_of, wait_for, write_snapshot

pytestmark = pytest.mark.timeout(180)


def test_the_bot_as_a_stage_process_answers_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDiscord(TOKEN, GUILD) as fake:
        env = settings(tmp_path, fake, "discord-bot", STAGE_PROCESSES="discord-bot")
        for name, value in env.items():  # the child reads its settings from the environment, as the app's do
            monkeypatch.setenv(name, value)
        runtime = build_runtime(load_config(env))
        try:
            fake.wait_connected(timeout=90)
            write_snapshot(
                runtime.db,
                {"cash": 10_000.0, "equity": 10_000.0, "starting_balance": 10_000.0, "positions": [], "pending": []},
                int(time.time() * 1000),
            )
            interaction = fake.command("portfolio", user_id=7101, channel_id=7002)
            answer = text_of(fake.reply_to(interaction, timeout=30))
            assert "Cash: 10,000.00 USDT" in answer and "No open position." in answer
            health = text_of(fake.reply_to(fake.command("health", user_id=7101, channel_id=7002), timeout=30))
            assert "**discord-bot** (process)" in health  # the parent's row merged with the child's
        finally:
            runtime.stop()
        log = (tmp_path / "logs" / "discord-bot.log").read_text()
        assert "discord-bot: connected as desk-bot" in log and TOKEN not in log


def read_all(tail: AlertTail) -> bool:
    return tail.read == 5 and tail.rejected == 1


def test_the_alert_tail_keeps_the_newest_alerts_and_never_commits(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    topic, group = topic_name("alerts"), group_name("tail")
    bus.create_topics([TopicSpec(topic, 3, None)])
    producer = bus.producer()
    for i in range(5):
        alert = Alert(
            alert_id=f"S-{i}",
            symbol=f"SYM{i}",
            alert_type="risk_alert",
            priority="high",
            timestamp=f"2025-03-15T12:0{i}:00+00:00",
            message=f"alert {i}",
        )
        producer.produce(topic, encode(alert), key=b"same")  # one key, one partition: their order is kept
    producer.produce(topic, b"not json", key=b"same")
    assert producer.flush(30) == 0

    for _ in range(2):  # a second tail of the same group reads everything again: nothing was committed
        tail = AlertTail(bus, keep=3, group_id=group, topic=topic)
        tail.start()
        try:
            wait_for(partial(read_all, tail), "the tail to read the topic", timeout=60)
            assert [a.alert_id for a in tail.latest(10)] == ["S-4", "S-3", "S-2"]
        finally:
            tail.stop()
    assert all(p.committed is None for g in bus.describe_groups() if g.group_id == group for p in g.partitions)
