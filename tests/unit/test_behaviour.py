"""The behaviour rules on hand-built journals: each fires on its scenario, not on a near miss."""

from __future__ import annotations

import random
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest

import pipeline.journal.behaviour_rules as behaviour
import pipeline.journal.behaviour_settings as behaviour_settings
from pipeline.errors import ConfigError
from pipeline.journal.behaviour_book import Finding, Row, alert_id
from pipeline.journal.behaviour_rules import detect
from pipeline.journal.behaviour_settings import BehaviourRules, rules_from_env
from pipeline.messages import EnrichedTrade
from pipeline.stages.behaviour import row_of

USER = "u-behaviour"
MIN = 60_000
T = int(datetime(2024, 3, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)  # a Monday, 10:00 UTC
RULES = BehaviourRules()


def lot(tid: str, minute: float, size: float = 1000.0, symbol: str = "BTCUSDT") -> Row:
    """An entry (the opening fill of a lot) ``minute`` minutes after T."""
    return Row(USER, tid, "lot", symbol, "BUY", tid, T + int(minute * MIN), None, size, None, None)


def trip(
    tid: str, minute: float, pnl: float, lot_id: str = "lot-x", size: float = 1000.0, symbol: str = "BTCUSDT"
) -> Row:
    """A round trip closed ``minute`` minutes after T."""
    return Row(
        USER,
        tid,
        "round_trip",
        symbol,
        "BUY",
        lot_id,
        T - 600 * MIN,
        T + int(minute * MIN),
        size,
        pnl,
        pnl / size * 100,
    )


def trade(
    tid: str, entry: float, exit: float | None, pnl: float | None, size: float = 1000.0, symbol: str = "BTCUSDT"
) -> Row:
    """A whole trade entered and (maybe) exited ``entry``/``exit`` minutes after T."""
    return Row(
        USER,
        tid,
        "trade",
        symbol,
        "BUY",
        tid,
        T + int(entry * MIN),
        None if exit is None else T + int(exit * MIN),
        size,
        pnl,
        None if pnl is None else pnl / size * 100,
    )


def of_type(findings: list[Finding], alert_type: str) -> list[Finding]:
    return [f for f in findings if f.alert_type == alert_type]


# --------------------------------------------------------------------------- revenge


def revenge_journal(
    loss: float = -812.40, entry_minute: float = 6, size: float = 1400.0, symbol: str = "SOLUSDT"
) -> tuple[list[Row], Row, Row]:
    baseline = [lot(f"e{i}", -60 + 10 * i, symbol="ETHUSDT") for i in range(3)]
    loss_trade = trade("L", -30, 0, loss, size=20_000.0, symbol="SOLUSDT")
    revenge = lot("R", entry_minute, size=size, symbol=symbol)
    return baseline, loss_trade, revenge


def test_revenge_entry_after_a_big_loss_names_the_loss_and_the_entry_in_numbers() -> None:
    baseline, loss, revenge = revenge_journal()
    rows = [*baseline, loss, revenge]
    [alert] = of_type(detect(rows, [revenge], RULES), "revenge_trading")
    assert alert.trade_ids == ("L", "R")
    assert alert.timestamp == revenge.entry_time
    # average of the 4 entries before the loss: (3 * 1000 + 20000) / 4 = 5750; 1400 is no size up
    assert alert.message == "Entered SOLUSDT 6 min after a -812.40 loss on SOLUSDT"
    assert alert.severity == "medium"
    assert alert.details["entries"][0]["conditions"] == ["quick", "same_symbol"]
    assert alert.details["loss_pnl"] == -812.40


def test_revenge_size_up_is_measured_on_the_pre_loss_average() -> None:
    baseline = [lot(f"e{i}", -60 + 10 * i) for i in range(4)]
    loss = trip("L", 0, -40.0, lot_id="e3", size=1000.0, symbol="SOLUSDT")  # 4 % of its notional
    revenge = lot("R", 6, size=1400.0, symbol="SOLUSDT")
    [alert] = of_type(detect([*baseline, loss, revenge], [revenge], RULES), "revenge_trading")
    assert alert.message == "Entered SOLUSDT 6 min after a -40.00 loss on SOLUSDT, size +40% over your average"
    assert alert.severity == "high"  # quick, same symbol and size up
    assert alert.details["average_size"] == 1000.0


def test_revenge_burst_counts_as_a_condition_with_another_symbol() -> None:
    baseline, loss, _ = revenge_journal()
    burst = [lot(f"b{i}", 2 + 2 * i, symbol="XRPUSDT") for i in range(3)]
    [alert] = of_type(detect([*baseline, loss, *burst], burst, RULES), "revenge_trading")
    assert alert.trade_ids == ("L", "b0", "b1", "b2")
    assert alert.details["entries"][0]["conditions"] == ["burst", "quick"]
    assert "3 entries within 10 min" in alert.message
    two = burst[:2]  # a near miss: two entries are no burst, quick alone is one condition
    assert of_type(detect([*baseline, loss, *two], two, RULES), "revenge_trading") == []


def test_revenge_examines_at_most_max_entries_after_the_loss() -> None:
    baseline, loss, _ = revenge_journal()
    entries = [lot(f"q{i}", 1 + i, symbol="SOLUSDT") for i in range(5)]
    rules = BehaviourRules(revenge_max_entries=3)
    [alert] = of_type(detect([*baseline, loss, *entries], entries[:1], rules), "revenge_trading")
    assert alert.trade_ids == ("L", "q0", "q1", "q2")
    assert of_type(detect([*baseline, loss, *entries], entries[3:], rules), "revenge_trading") == []


@pytest.mark.parametrize(
    ("loss", "minute", "symbol", "why"),
    [
        (-499.0, 6, "SOLUSDT", "loss under 500 and under 3 % of 20,000"),
        (-812.40, 20, "SOLUSDT", "only the same symbol: not quick, no burst, no size up"),
        (-812.40, 6, "XRPUSDT", "only quick"),
        (-812.40, 121, "SOLUSDT", "after the 120 min window"),
    ],
)
def test_revenge_does_not_fire_on_a_near_miss(loss: float, minute: float, symbol: str, why: str) -> None:
    baseline, loss_trade, revenge = revenge_journal(loss=loss, entry_minute=minute, symbol=symbol)
    assert of_type(detect([*baseline, loss_trade, revenge], [revenge, loss_trade], RULES), "revenge_trading") == [], why


def test_a_late_loss_finds_the_entries_after_it_with_the_same_alert() -> None:
    baseline, loss, revenge = revenge_journal()
    forward = of_type(detect([*baseline, loss, revenge], [revenge], RULES), "revenge_trading")
    backward = of_type(detect([*baseline, revenge, loss], [loss], RULES), "revenge_trading")
    assert forward == backward and len(forward) == 1


def test_a_late_baseline_entry_reevaluates_the_loss_it_precedes() -> None:
    baseline = [lot(f"e{i}", -60 + 10 * i) for i in range(3)]
    loss = trip("L", 0, -40.0, lot_id="e2", symbol="SOLUSDT")
    revenge = lot("R", 20, size=1400.0, symbol="SOLUSDT")  # not quick: same symbol and size up only
    assert detect([loss, revenge], [revenge], RULES) == []  # no baseline yet: one condition
    [alert] = of_type(detect([*baseline, loss, revenge], baseline[-1:], RULES), "revenge_trading")
    assert alert.trade_ids == ("L", "R") and alert.details["entries"][0]["conditions"] == ["size_up", "same_symbol"]


def test_only_findings_that_involve_the_new_rows_are_returned() -> None:
    baseline, loss, revenge = revenge_journal()
    later = lot("later", 300, symbol="ETHUSDT")
    assert detect([*baseline, loss, revenge, later], [later], RULES) == []


# --------------------------------------------------------------------------- overtrading


def days_of_entries(counts: list[int]) -> list[Row]:
    """Entries on consecutive days ending today (T's day): ``counts[-1]`` today."""
    rows = []
    for day, n in enumerate(counts):
        back = len(counts) - 1 - day
        rows += [lot(f"d{back}-{i}", -back * 1440 + i, symbol="ETHUSDT") for i in range(n)]
    return rows


def test_overtrading_against_the_median_of_earlier_active_days() -> None:
    rows = days_of_entries([3, 3, 0, 3, 3, 4, 7])  # median 3 over 5 active days: limit 6
    today = [r for r in rows if r.trade_id.startswith("d0-")]
    [alert] = of_type(detect(rows, today[-1:], RULES), "overtrading")
    assert alert.trade_ids == ("d0-6",) and alert.timestamp == today[6].entry_time
    assert alert.details == {
        "day": "2024-03-04",
        "entries": 7,
        "limit": 6.0,
        "median": 3.0,
        "history_days": 5,
        "timezone": "UTC",
    }
    assert alert.message == "7 entries on Mon 2024-03-04, 2.3x your median of 3 over 5 earlier active days (limit 6)"
    near = days_of_entries([3, 3, 0, 3, 3, 4, 6])
    assert of_type(detect(near, near[-1:], RULES), "overtrading") == []


def test_overtrading_needs_history_else_an_absolute_limit() -> None:
    rows = days_of_entries([1, 1, 1, 1, 21])  # four earlier days: not enough for the median rule
    [alert] = of_type(detect(rows, rows[-1:], RULES), "overtrading")
    assert alert.details["limit"] == 20.0 and alert.details["median"] is None
    assert alert.trade_ids == ("d0-20",)
    near = days_of_entries([1, 1, 1, 1, 20])
    assert of_type(detect(near, near[-1:], RULES), "overtrading") == []


def test_overtrading_min_trades_guards_quiet_traders() -> None:
    rows = days_of_entries([1, 1, 1, 1, 1, 5])  # 5 > 2 x median 1 but fewer than 6 entries
    assert of_type(detect(rows, rows[-1:], RULES), "overtrading") == []
    rows = days_of_entries([1, 1, 1, 1, 1, 6])
    assert [f.trade_ids for f in of_type(detect(rows, rows[-1:], RULES), "overtrading")] == [("d0-5",)]


# --------------------------------------------------------------------------- size escalation


def escalation_journal(pnls: list[float], size: float) -> tuple[list[Row], Row]:
    entries = [lot(f"e{i}", -100 + i) for i in range(10)]
    closes = [trip(f"c{i}", -50 + 10 * i, pnl, lot_id=f"e{i}") for i, pnl in enumerate(pnls)]
    return [*entries, *closes], lot("big", 0, size=size)


@pytest.mark.parametrize(
    ("pnls", "size", "fires"),
    [
        ([-10.0, -20.0], 1500.0, True),  # two losses then +50 %
        ([-10.0, -20.0], 1490.0, False),  # +49 %
        ([5.0, -20.0], 2000.0, False),  # only one loss in a row
        ([5.0, 6.0, 7.0], 1500.0, True),  # three wins
        ([-5.0, 6.0, 7.0], 1500.0, False),  # two wins
    ],
)
def test_size_escalation_after_a_streak(pnls: list[float], size: float, fires: bool) -> None:
    rows, big = escalation_journal(pnls, size)
    found = of_type(detect([*rows, big], [big], RULES), "size_escalation")
    assert bool(found) is fires
    if fires:
        assert found[0].trade_ids[0] == "big" and found[0].details["average_size"] == 1000.0
        assert found[0].trade_ids[1:] == tuple(f"c{i}" for i in range(len(pnls)))[-found[0].details["streak_length"] :]


def test_a_late_streak_makes_the_entry_after_it_an_escalation() -> None:
    rows, big = escalation_journal([-10.0, -20.0], 1500.0)
    entries = [r for r in rows if r.kind == "lot"]
    assert of_type(detect([*entries, big], [big], RULES), "size_escalation") == []  # no closes yet
    [alert] = of_type(detect([*rows, big], [r for r in rows if r.trade_id == "c0"], RULES), "size_escalation")
    assert alert.trade_ids == ("big", "c0", "c1")


def test_size_escalation_needs_the_streak_to_be_recent() -> None:
    rows, big = escalation_journal([-10.0, -20.0], 1500.0)
    late = big._replace(entry_time=T + 61 * MIN)  # last loss at -40 min, window 60 min
    assert of_type(detect([*rows, late], [late], RULES), "size_escalation") == []


# --------------------------------------------------------------------------- loss streak


def test_loss_streak_of_three_closes_fires_once_and_grows() -> None:
    closes = [trip("c1", 0, -10.0), trip("c2", 10, -5.0), trip("c3", 20, -1.0)]
    [alert] = of_type(detect(closes, closes[-1:], RULES), "loss_streak")
    assert alert.trade_ids == ("c1", "c2", "c3") and alert.timestamp == closes[-1].exit_time
    assert alert.details["total_pnl"] == -16.0
    more = [*closes, trip("c4", 30, -2.0)]
    [grown] = of_type(detect(more, more[-1:], RULES), "loss_streak")
    assert grown.alert_id == alert.alert_id and grown.trade_ids == ("c1", "c2", "c3", "c4")


def test_a_late_first_loss_moves_the_streak_alert_and_retracts_the_later_one() -> None:
    closes = [trip("c2", 10, -5.0), trip("c3", 20, -1.0), trip("c4", 30, -2.0)]
    [before] = of_type(detect(closes, closes[-1:], RULES), "loss_streak")
    late = trip("c1", 0, -10.0)
    found = of_type(detect([late, *closes], [late], RULES), "loss_streak")
    [now] = [f for f in found if not f.void]
    assert now.trade_ids == ("c1", "c2", "c3", "c4") and now.alert_id != before.alert_id
    [gone] = [f for f in found if f.void]
    assert gone.alert_id == before.alert_id and gone.details == {"superseded_by": now.alert_id}
    # The streak growing forward keeps its anchor and retracts nothing.
    more = [late, *closes, trip("c5", 40, -1.0)]
    assert [(f.alert_id, f.void) for f in of_type(detect(more, more[-1:], RULES), "loss_streak")] == [
        (now.alert_id, False)
    ]


def test_loss_streak_near_misses() -> None:
    broken = [trip("c1", 0, -10.0), trip("c2", 10, -5.0), trip("w", 15, 3.0), trip("c3", 20, -1.0)]
    assert of_type(detect(broken, broken, RULES), "loss_streak") == []
    one_fill = [trip(f"c{i}", 0, -10.0, lot_id=f"lot-{i}") for i in range(3)]  # one sell closing three lots
    assert of_type(detect(one_fill, one_fill, RULES), "loss_streak") == []


# --------------------------------------------------------------------------- outside hours


def at(iso: str, tid: str = "x") -> Row:
    ms = int(datetime.fromisoformat(iso).timestamp() * 1000)
    return Row(USER, tid, "trade", "BTCUSDT", "BUY", tid, ms, None, 1000.0, None, None)


@pytest.mark.parametrize(
    ("iso", "outside"),
    [
        ("2024-03-04T07:30:00+00:00", False),  # Monday 08:30 in Berlin (CET), though 07:30 in UTC
        ("2024-03-04T06:59:00+00:00", True),  # 07:59 Berlin
        ("2024-03-04T16:00:00+00:00", True),  # 17:00 Berlin: the end is exclusive
        ("2024-07-01T06:30:00+00:00", False),  # 08:30 in summer time (CEST)
        ("2024-07-01T15:30:00+00:00", True),  # 17:30 CEST
        ("2024-03-09T10:00:00+00:00", True),  # Saturday
    ],
)
def test_outside_hours_in_the_traders_time_zone(iso: str, outside: bool) -> None:
    rules = rules_from_env(
        {
            "BEHAVIOUR_TRADING_HOURS": "08:00-17:00",
            "BEHAVIOUR_TRADING_DAYS": "0-4",
            "BEHAVIOUR_TIMEZONE": "Europe/Berlin",
        }
    )
    row = at(iso)
    found = of_type(detect([row], [row], rules), "outside_hours")
    assert bool(found) is outside
    if outside:
        assert found[0].trade_ids == ("x",) and "Europe/Berlin" in found[0].message
    assert of_type(detect([row], [row], RULES), "outside_hours") == []  # off by default


def test_an_overnight_session_belongs_to_the_day_it_starts() -> None:
    rules = BehaviourRules(trading_hours=((22, 0), (6, 0)), trading_days=(0, 1, 2, 3, 4))
    assert not behaviour.outside_hours(at("2024-03-09T03:00:00+00:00").entry_time, rules)  # Fri night session
    assert behaviour.outside_hours(at("2024-03-10T03:00:00+00:00").entry_time, rules)  # Sat night: no session
    assert behaviour.outside_hours(at("2024-03-05T12:00:00+00:00").entry_time, rules)


# --------------------------------------------------------------------------- ids under replay and reordering


def journals() -> dict[str, list[Row]]:
    """One journal per rule, each firing once when evaluated whole."""
    baseline, loss, revenge = revenge_journal()
    escalation, big = escalation_journal([-10.0, -20.0], 1500.0)
    # Longer than the threshold: a late first loss moves the alert and retracts the later anchor.
    streak = [
        trip("w", 30, 3.0),
        trip("s1", 40, -10.0),
        trip("s2", 50, -5.0),
        trip("s3", 55, -1.0),
        trip("s4", 57, -1.0),
    ]
    return {
        "revenge_trading": [*baseline, loss, revenge, lot("R2", 8, symbol="SOLUSDT"), lot("x", 50)],
        "size_escalation": [*escalation, big, lot("after", 5, size=1200.0)],
        "loss_streak": [*streak, trip("w2", 60, 3.0)],
        "overtrading": days_of_entries([3, 3, 0, 3, 3, 4, 8]),
    }


@pytest.mark.parametrize("alert_type", ["revenge_trading", "size_escalation", "loss_streak", "overtrading"])
def test_alert_ids_are_stable_under_replay_and_reordering(alert_type: str) -> None:
    rows = journals()[alert_type]
    whole = detect(rows, rows, RULES)
    assert [f.alert_type for f in whole] == [alert_type]
    assert detect(rows, rows, RULES) == whole  # a replay gives the same findings
    for seed in range(8):
        order = rows[:]
        random.Random(seed).shuffle(order)
        seen: dict[str, Finding] = {}  # the alerts as the journal store keeps them
        for i, row in enumerate(order):  # one record at a time, at least once: some twice
            for _ in range(1 + (i % 2)):
                for f in detect(order[: i + 1], [row], RULES):
                    if f.void:
                        seen.pop(f.alert_id, None)
                    else:
                        seen[f.alert_id] = f
        assert list(seen) == [whole[0].alert_id], seed
        assert seen[whole[0].alert_id].trade_ids == whole[0].trade_ids, seed


def test_alert_ids_depend_on_user_type_and_anchor() -> None:
    ids = {alert_id(u, t, a) for u in ("a", "b") for t in ("loss_streak", "overtrading") for a in ("1", "2")}
    assert len(ids) == 8 and alert_id("a", "loss_streak", "1") in ids


# --------------------------------------------------------------------------- rows and rules


def test_rows_from_journal_records_key_round_trips_by_their_lot() -> None:
    common: dict[str, Any] = dict(
        user_id=USER, symbol="SOLUSDT", side="SELL", entry_price=100.0, quantity=2.0, entry_time=T, source="csv"
    )
    rt = row_of(
        EnrichedTrade(
            trade_id="rt-1", kind="round_trip", lot_id="lot-1", exit_price=110.0, exit_time=T + MIN, pnl=-21.0, **common
        )
    )
    assert (rt.entry_key, rt.notional, rt.pnl, rt.pnl_pct, rt.is_entry, rt.is_result) == (
        "lot-1",
        200.0,
        -21.0,
        -10.5,
        False,
        True,
    )
    manual = row_of(EnrichedTrade(trade_id="t-1", exit_price=110.0, exit_time=T + MIN, **common))
    assert manual.pnl == -20.0 and manual.is_entry and manual.is_result  # a short closed higher, pnl missing


def test_thresholds_come_from_the_environment() -> None:
    rules = rules_from_env(
        {
            "BEHAVIOUR_LOSS_STREAK": "4",
            "BEHAVIOUR_REVENGE_WINDOW_MIN": "30",
            "BEHAVIOUR_OVERTRADING_MULTIPLIER": "2.5",
            "BEHAVIOUR_TRADING_DAYS": "mon,wed-fri",
            "BEHAVIOUR_TRADING_HOURS": "08:00-17:30",
            "BEHAVIOUR_REVENGE_MIN_LOSS": "",
        }
    )
    assert (rules.loss_streak, rules.revenge_window_min, rules.overtrading_multiplier) == (4, 30, 2.5)
    assert rules.trading_days == (0, 2, 3, 4) and rules.trading_hours == ((8, 0), (17, 30))
    assert rules.revenge_min_loss == 500.0  # empty means the default
    closes = [trip("c1", 0, -10.0), trip("c2", 10, -5.0), trip("c3", 20, -1.0)]
    assert of_type(detect(closes, closes, rules), "loss_streak") == []
    assert rules_from_env({}) == BehaviourRules()


@pytest.mark.parametrize(
    ("var", "value", "rule"),
    [
        ("BEHAVIOUR_LOSS_STREAK", "three", "a whole number >= 2"),
        ("BEHAVIOUR_LOSS_STREAK", "1", "a whole number >= 2"),
        ("BEHAVIOUR_REVENGE_MIN_LOSS_PCT", "nan", "a number >= 0"),
        ("BEHAVIOUR_REVENGE_MIN_CONDITIONS", "5", "<= 4"),
        ("BEHAVIOUR_TRADING_HOURS", "8-17", "HH:MM-HH:MM"),
        ("BEHAVIOUR_TRADING_HOURS", "09:00-09:00", "different start and end"),
        ("BEHAVIOUR_TRADING_DAYS", "0-7", "weekdays 0-6"),
        ("BEHAVIOUR_TIMEZONE", "Mars/Olympus", "zoneinfo time zone name"),
    ],
)
def test_a_bad_environment_value_names_variable_value_and_rule(var: str, value: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        rules_from_env({var: value})
    assert str(info.value).startswith(f"{var}={value!r} breaks rule: ") and rule in str(info.value)


def test_rules_built_in_code_are_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"BehaviourRules\.escalation_lookback=0"):
        BehaviourRules(escalation_lookback=0)


def test_every_variable_is_documented() -> None:
    doc = behaviour_settings.__doc__ or ""
    missing = [f.name for f in fields(BehaviourRules) if f"BEHAVIOUR_{f.name.upper()} " not in doc]
    assert missing == []
