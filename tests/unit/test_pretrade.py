"""The pre-trade check's rules at their thresholds (the behaviour rules' own defaults), the planned
position's R, the cooldown, and requests with missing or impossible values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.errors import BadMessageError
from pipeline.journal.behaviour_book import Row
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.pretrade import PlannedTrade, Verdict, check, planned_from, position_risk

MIN = 60_000
NOW = int(datetime(2024, 11, 20, 12, 0, tzinfo=UTC).timestamp() * 1000)  # a Wednesday, noon UTC
RULES = BehaviourRules()
PLAN = PlannedTrade("BTCUSDT", "BUY", 0.1, 9_800.0, 10_000.0)  # 1,000 notional, 200 risk


def closed(tid: str, *, minutes_ago: float, pnl: float, notional: float = 20_000.0) -> Row:
    """A whole trade entered an hour before it closed ``minutes_ago`` (the rules take its loss in
    percent as pnl over notional)."""
    exit_at = NOW - int(minutes_ago * MIN)
    return Row("u", tid, "trade", "BTCUSDT", "BUY", tid, exit_at - 60 * MIN, exit_at, notional, pnl, None)


def result(tid: str, *, minutes_ago: float, pnl: float) -> Row:
    """A round trip (a result only, no entry of its own) of an old lot, on another symbol."""
    exit_at = NOW - int(minutes_ago * MIN)
    return Row("u", tid, "round_trip", "ETHUSDT", "BUY", "lot-old", NOW - 600 * MIN, exit_at, 1_000.0, pnl, -0.1)


def entry(tid: str, *, minutes_ago: float, notional: float) -> Row:
    at = NOW - int(minutes_ago * MIN)
    return Row("u", tid, "lot", "XRPUSDT", "BUY", tid, at, None, notional, None, None)


def run(rows: list[Row], plan: PlannedTrade = PLAN, **over: Any) -> Verdict:
    kwargs: dict[str, Any] = {"day_counts": {}, "alerts": [], "rules": RULES, "cooldown_min": 0}
    kwargs.update(over)
    return check(plan, user_id="u", price=plan.price or 0.0, price_source="given", now_ms=NOW, rows=rows, **kwargs)


def tripped(verdict: Verdict) -> set[str]:
    return {t.rule for t in verdict.trips}


def test_revenge_after_a_qualifying_loss_within_the_quick_window() -> None:
    loss = closed("loss", minutes_ago=15, pnl=-500.0)  # exactly the 500 minimum (2.5 %), 15 min ago
    verdict = run([loss])
    assert tripped(verdict) == {"revenge"}  # quick (<= 15 min) and same symbol: two conditions
    (trip,) = verdict.trips
    assert trip.severity == "medium" and trip.details["loss_pnl"] == -500.0
    assert trip.message == "Entered BTCUSDT 15 min after a -500.00 loss on BTCUSDT"
    assert "revenge" not in tripped(run([closed("loss", minutes_ago=15.001, pnl=-500.0)]))  # one condition
    assert "revenge" not in tripped(run([closed("small", minutes_ago=1, pnl=-499.99)]))  # 2.49995 %: no
    assert "revenge" in tripped(run([closed("pct", minutes_ago=1, pnl=-60.0, notional=2_000.0)]))  # 3 % is


def test_overtrading_over_the_daily_limit() -> None:
    today = datetime.fromtimestamp(NOW / 1000, UTC).date()
    assert "overtrading" not in tripped(run([], day_counts={today: 19}))  # the 20th entry is at the limit
    verdict = run([], day_counts={today: 20})
    assert tripped(verdict) == {"overtrading"}
    assert verdict.trips[0].details == {"entries_today": 21, "limit": 20.0, "median": None, "history_days": 0}


def test_size_far_above_the_norm() -> None:
    history = [entry(f"e{i}", minutes_ago=300 + i, notional=1_000.0 / 1.5) for i in range(3)]  # average 666.67
    assert tripped(run(history)) == {"size_above_norm"}  # 1,000 is exactly 50 % over
    assert run(history).trips[0].details["size_up_pct"] == pytest.approx(50.0)
    assert tripped(run([entry(f"e{i}", minutes_ago=300 + i, notional=667.0) for i in range(3)])) == set()
    assert tripped(run(history[:2])) == set()  # two entries make no average


def test_trading_during_a_loss_streak_and_size_escalation() -> None:
    two = [result("r1", minutes_ago=50, pnl=-10.0), result("r2", minutes_ago=40, pnl=-10.0)]
    assert tripped(run(two)) == set()
    three = [*two, result("r3", minutes_ago=30, pnl=-10.0)]
    verdict = run(three)
    assert tripped(verdict) == {"loss_streak"}
    assert verdict.trips[0].details == {"length": 3, "total_pnl": -30.0}
    assert "loss_streak" not in tripped(run([*three, result("r4", minutes_ago=20, pnl=5.0)]))
    # Two losses in a row within the hour, then an entry 50 % over the average: size escalation too.
    sized = [entry(f"e{i}", minutes_ago=300 + i, notional=1_000.0 / 1.5) for i in range(3)]
    assert tripped(run([*sized, *two])) == {"size_escalation", "size_above_norm"}


def test_outside_the_traders_hours() -> None:
    rules = BehaviourRules(trading_hours=((8, 0), (12, 0)))
    assert tripped(run([], rules=rules)) == {"outside_hours"}  # noon is the end: outside
    assert tripped(run([], rules=BehaviourRules(trading_hours=((8, 0), (12, 1))))) == set()


def test_the_cooldown_trips_after_an_alert_and_makes_the_paper_account_refuse() -> None:
    alert = {"alert_id": "a", "alert_type": "loss_streak", "severity": "medium", "timestamp": NOW - 29 * MIN}
    verdict = run([], alerts=[alert], cooldown_min=30)
    assert tripped(verdict) == {"cooldown"} and not verdict.allowed
    assert verdict.trips[0].details["until"] == NOW + MIN
    assert run([], alerts=[{**alert, "timestamp": NOW - 31 * MIN}], cooldown_min=30).allowed
    assert run([], alerts=[{**alert, "severity": "low"}], cooldown_min=30).allowed
    # Without a cooldown a tripped rule is said, and the entry is still allowed.
    loss = closed("loss", minutes_ago=5, pnl=-600.0)
    assert run([loss], alerts=[alert]).allowed and not run([loss], cooldown_min=30).allowed


def test_the_positions_r() -> None:
    risk = position_risk(PlannedTrade("BTCUSDT", "BUY", 3.0, 98.0), 100.0)
    assert (risk["per_unit"], risk["amount"], risk["pct"], risk["notional"]) == (2.0, 6.0, 2.0, 300.0)
    assert risk["targets"] == {"1R": 102.0, "2R": 104.0, "3R": 106.0}
    short = position_risk(PlannedTrade("BTCUSDT", "SELL", 1.0, 105.0), 100.0)
    assert short["targets"] == {"1R": 95.0, "2R": 90.0, "3R": 85.0}
    with pytest.raises(BadMessageError) as bad:
        position_risk(PlannedTrade("BTCUSDT", "BUY", 1.0, 101.0), 100.0)
    assert [(v.field, v.value, v.rule) for v in bad.value.violations] == [
        ("stop", 101.0, "is below the entry price 100 for a BUY")
    ]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"side": "BUY", "quantity": 1, "stop": 90}, "symbol", "is a symbol such as BTCUSDT"),
        ({"symbol": "BTCUSDT", "side": "HOLD", "quantity": 1, "stop": 90}, "side", "is BUY or SELL"),
        ({"symbol": "BTCUSDT", "side": "BUY", "size": 0, "stop": 90}, "size", "is a number > 0"),
        ({"symbol": "BTCUSDT", "side": "BUY", "quantity": -1, "stop": 90}, "quantity", "is a number > 0"),
        ({"symbol": "BTCUSDT", "side": "BUY", "quantity": 1}, "stop", "is required"),
        ({"symbol": "BTCUSDT", "side": "BUY", "quantity": 1, "stop": "x"}, "stop", "is a number > 0"),
    ],
)
def test_a_bad_request_names_the_field(body: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(BadMessageError) as bad:
        planned_from(body)
    assert (field, rule) in [(v.field, v.rule) for v in bad.value.violations]


def test_a_good_request_reads_size_as_quantity() -> None:
    plan = planned_from({"symbol": "btc/usdt", "side": "buy", "size": "0.5", "stop": 60000})
    assert plan == PlannedTrade("BTCUSDT", "BUY", 0.5, 60_000.0, None)
