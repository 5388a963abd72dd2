"""The behaviour stage: on both buses through the runner, and on a real SQLite file across batches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from pipeline.bus.base import Bus
from pipeline.journal.behaviour_rules import detect
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.messages import BehavioralAlert, EnrichedTrade, Message, TradeKind, encode
from pipeline.runner import StageRunner
from pipeline.stages.behaviour import BehaviourStage, alert_of, row_of
from pipeline.topics import BEHAVIORAL_ALERTS, CATALOG, ENRICHED_TRADES
from storage.db import Database

MIN = 60_000
T = int(datetime(2024, 3, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)


def record(
    user: str,
    tid: str,
    minute: float,
    *,
    size: float = 1000.0,
    symbol: str = "SOLUSDT",
    kind: TradeKind = "lot",
    exit_minute: float | None = None,
    pnl: float | None = None,
    void: bool = False,
) -> EnrichedTrade:
    """A journal record of ``user``; its trade id is prefixed with the user (ids are global)."""
    closed = exit_minute is not None
    return EnrichedTrade(
        trade_id=f"{user}:{tid}",
        user_id=user,
        symbol=symbol,
        side="BUY",
        entry_price=100.0,
        quantity=size / 100.0,
        entry_time=T + int(minute * MIN),
        source="test",
        kind=kind,
        exit_price=100.0 + (pnl or 0) / (size / 100.0) if closed else None,
        exit_time=T + int(exit_minute * MIN) if exit_minute is not None else None,
        pnl=pnl,
        lot_id=f"{user}:{tid}" if kind == "lot" else None,
        void=void,
    )


def revenge_records(user: str) -> tuple[list[EnrichedTrade], EnrichedTrade, EnrichedTrade]:
    """Three entries, then a -812.40 loss on SOLUSDT, then a SOLUSDT entry 6 minutes later."""
    baseline = [record(user, f"e{i}", -60 + 10 * i, symbol="ETHUSDT") for i in range(3)]
    loss = record(user, "L", -30, size=20_000.0, kind="trade", exit_minute=0, pnl=-812.40)
    revenge = record(user, "R", 6, size=1400.0)
    return baseline, loss, revenge


def alerts_of(messages: list[Message], alert_type: str | None = None) -> list[BehavioralAlert]:
    return [m for m in messages if isinstance(m, BehavioralAlert) and alert_type in (None, m.alert_type)]


# --------------------------------------------------------------------------- through the runner


def test_revenge_alert_through_the_runner_and_the_same_ids_on_replay(
    bus: Bus, tmp_path: Path, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    user = f"trader-{uuid.uuid4().hex[:10]}"  # the broker is shared: only this test's user counts

    class Behaviour(BehaviourStage):
        name: ClassVar[str] = f"behaviour-test-{uuid.uuid4().hex[:10]}"

    runner = StageRunner(Behaviour(db, BehaviourRules()), bus, poll_timeout=0.2)
    reader = bus.consumer(group_name("alerts"), [BEHAVIORAL_ALERTS])
    producer = bus.producer()
    baseline, loss, revenge = revenge_records(user)
    records = [*baseline, loss, revenge]
    received: list[dict] = []

    def publish() -> None:
        for r in records:
            producer.produce(ENRICHED_TRADES, encode(r), key=user.encode())
        assert producer.flush(30) == 0

    def collect_until(done: Callable[[], bool], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"alerts so far: {received}; health: {runner.health.snapshot()}"
            for rec in reader.poll(500, 0.2):
                alert = orjson.loads(rec.value or b"")
                if alert["user_id"] == user:
                    received.append(alert)

    def settle(seconds: float = 1.0) -> None:
        end = time.monotonic() + seconds
        collect_until(lambda: time.monotonic() > end)

    runner.start()
    try:
        publish()
        collect_until(lambda: any(a["alert_type"] == "revenge_trading" for a in received))
        settle()  # and whatever else this round gives
        first = list(received)
        publish()  # the same records again (a replay, or at-least-once delivery)
        collect_until(lambda: any(a["alert_type"] == "revenge_trading" for a in received[len(first) :]))
        settle()
    finally:
        runner.stop()
    [revenge_alert] = {a["alert_id"]: a for a in first if a["alert_type"] == "revenge_trading"}.values()
    assert revenge_alert["trade_ids"] == [loss.trade_id, revenge.trade_id]
    assert revenge_alert["message"] == "Entered SOLUSDT 6 min after a -812.40 loss on SOLUSDT"
    assert revenge_alert["timestamp"] == revenge.entry_time and revenge_alert["severity"] == "medium"
    again = received[len(first) :]
    assert {a["alert_id"] for a in again} == {a["alert_id"] for a in first} == {revenge_alert["alert_id"]}
    assert [a for a in again if a["alert_id"] == revenge_alert["alert_id"]][-1] == revenge_alert
    stored = db.query(
        "SELECT trade_id, entry_key, notional, pnl FROM behaviour_trades WHERE user_id = ? ORDER BY entry_time", (user,)
    )
    assert [r["trade_id"] for r in stored] == [r.trade_id for r in records]
    assert stored[3] == {"trade_id": loss.trade_id, "entry_key": loss.trade_id, "notional": 20_000.0, "pnl": -812.40}
    assert runner.health.snapshot().dead_lettered == 0
    db.close()


# --------------------------------------------------------------------------- on SQLite, batch by batch


@pytest.fixture
def stage(tmp_path: Path):
    db = Database(tmp_path / "desk.db")
    yield BehaviourStage(db, BehaviourRules())
    db.close()


def test_a_loss_in_an_earlier_batch_and_a_late_loss_give_the_same_alert(stage: BehaviourStage) -> None:
    forward, backward = "fwd", "bwd"
    baseline, loss, revenge = revenge_records(forward)
    assert alerts_of(stage.process_batch([*baseline, loss])) == []
    [ahead] = alerts_of(stage.process_batch([revenge]))  # the loss comes from the database
    baseline, loss_b, revenge_b = revenge_records(backward)
    assert alerts_of(stage.process_batch([*baseline, revenge_b])) == []
    [late] = alerts_of(stage.process_batch([loss_b]))  # the entries after it come from the database
    assert ahead.trade_ids == [loss.trade_id, revenge.trade_id]
    assert late.trade_ids == [loss_b.trade_id, revenge_b.trade_id]
    assert (ahead.message, ahead.details) == (
        late.message,
        {**late.details, "loss_trade_ids": [loss.trade_id], "entries": ahead.details["entries"]},
    )
    # a replay of both batches updates the same alerts
    replayed = alerts_of(stage.process_batch([*revenge_records(forward)[0], loss, revenge]))
    assert [a.alert_id for a in replayed] == [ahead.alert_id]


def test_a_voided_loss_is_deleted_and_raises_no_alert(stage: BehaviourStage) -> None:
    baseline, loss, revenge = revenge_records("void")
    stage.process_batch([*baseline, loss])
    stage.process_batch([loss.model_copy(update={"void": True})])
    assert alerts_of(stage.process_batch([revenge])) == []
    stored = stage.db.query("SELECT trade_id FROM behaviour_trades WHERE user_id = 'void'")
    assert loss.trade_id not in {r["trade_id"] for r in stored} and len(stored) == 4


def test_overtrading_counts_trader_days_in_the_time_zone_from_the_database(tmp_path: Path) -> None:
    rules = BehaviourRules(timezone="America/New_York")
    db = Database(tmp_path / "desk.db")
    stage = BehaviourStage(db, rules)
    ny_day = datetime(2024, 3, 1, 0, 0, tzinfo=UTC).timestamp() * 1000 + 5 * 60 * MIN  # 00:00 EST
    history = [
        record("ny", f"h{d}-{i}", (ny_day - T) / MIN - d * 1440 + m, symbol="ETHUSDT")
        for d in range(1, 6)
        for i, m in enumerate((10, 720, 1430))
    ]  # 00:10, 12:00, 23:50 local
    # Seven entries from 17:00 to 23:00 New York time: one trader day, but two days in UTC.
    today = [record("ny", f"t{i}", (ny_day - T) / MIN + 17 * 60 + 60 * i, symbol="ETHUSDT") for i in range(7)]
    assert alerts_of(stage.process_batch([*history])) == []
    assert alerts_of(stage.process_batch([*today[:6]])) == []
    [alert] = alerts_of(stage.process_batch([*today[6:]]), "overtrading")
    assert alert.details == {
        "day": "2024-03-01",
        "entries": 7,
        "limit": 6.0,
        "median": 3.0,
        "history_days": 5,
        "timezone": "America/New_York",
    }
    assert alert.trade_ids == [today[6].trade_id]
    rows = [row_of(r) for r in history + today]
    expected = [alert_of(f) for f in detect(rows, [row_of(today[6])], rules) if f.alert_type == "overtrading"]
    assert [alert] == expected
    in_utc = BehaviourStage(Database(tmp_path / "utc.db"), BehaviourRules())
    in_utc.process_batch([*history])
    assert alerts_of(in_utc.process_batch([*today]), "overtrading") == []
    in_utc.db.close()
    db.close()


def test_a_burst_spread_over_batches_is_counted_from_the_database(stage: BehaviourStage) -> None:
    baseline, loss, _ = revenge_records("burst")
    burst = [record("burst", f"b{i:02d}", 0.5 + 0.25 * i, symbol="XRPUSDT") for i in range(12)]
    [first] = alerts_of(stage.process_batch([*baseline, loss, *burst]), "revenge_trading")
    late = record("burst", "b12", 7.0, symbol="XRPUSDT")
    [grown] = alerts_of(stage.process_batch([late]), "revenge_trading")
    assert grown.alert_id == first.alert_id
    assert grown.trade_ids == [loss.trade_id, *(b.trade_id for b in burst), late.trade_id]
    assert grown.details["burst_entries"] == 13 and "13 entries within 10 min" in grown.message
