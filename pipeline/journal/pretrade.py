"""The pre-trade check: a planned trade (symbol, side, size, stop) judged against the trader's own
recent journal before it is placed (pure; ``pipeline.journal.pretrade_service`` gathers the inputs).

It reuses the behavioural rules and thresholds of the alerts (``behaviour_rules``, ``behaviour_book``,
``behaviour_settings``): the planned entry is a row entered now and the rules are asked what it would
trip. The answer lists every rule tripped:

* ``revenge``: the revenge rule fires on the planned entry (a qualifying loss within the window and
  enough of its conditions: quick, same symbol, size up, a burst);
* ``overtrading``: today's entries plus this one exceed the overtrading limit (``overtrading_limit``);
* ``size_escalation``: the escalation rule fires (a big size right after a run of losses or wins);
* ``size_above_norm``: the size is ``escalation_size_pct`` or more over the average of the last
  ``escalation_lookback`` entries (with at least ``baseline_min_entries`` of them);
* ``loss_streak``: the trader's last closes are a losing streak of ``loss_streak`` or more;
* ``outside_hours``: now is outside the trader's hours and days;
* ``cooldown``: a behavioural alert of medium or high severity came less than the cooldown ago.

It also gives the position's R (the risk from the entry to the stop: per unit, in money, in percent,
and the prices 1, 2 and 3 R away) and the models' latest view of the symbol. With a cooldown set
(``PRETRADE_COOLDOWN_MINUTES``), ``allowed`` is False while any rule is tripped: the paper account
refuses the entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.behaviour_book import MINUTE_MS, Book, Row, alert_id
from pipeline.journal.behaviour_rules import detect, outside_hours, overtrading_limit
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.fills import normalize_symbol
from pipeline.messages import Side

PLANNED = "pretrade"  # the planned entry's id among the trader's rows


@dataclass(frozen=True)
class PlannedTrade:
    """A trade the trader is about to place; ``price`` None means at the market's last price."""

    symbol: str
    side: Side
    quantity: float
    stop: float
    price: float | None = None


@dataclass(frozen=True)
class Trip:
    """One rule the planned trade trips, how bad, why in words and in numbers."""

    rule: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The check's answer (``to_json`` gives plain JSON values)."""

    symbol: str
    side: Side
    quantity: float
    price: float
    price_source: str
    trips: list[Trip]
    risk: dict[str, Any]
    models: list[dict[str, Any]]
    cooldown_minutes: int
    allowed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _number(bad: list[Violation], body: Mapping[str, object], name: str, *, required: bool) -> float | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            bad.append(Violation(name, value, "is required"))
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        bad.append(Violation(name, value, "is a number > 0"))
        return None
    try:
        number = float(value)
    except ValueError:
        bad.append(Violation(name, value, "is a number > 0"))
        return None
    if not math.isfinite(number) or number <= 0:
        bad.append(Violation(name, value, "is a number > 0"))
        return None
    return number


def planned_from(body: Mapping[str, object]) -> PlannedTrade:
    """Read a planned trade from a request or form; raise ``BadMessageError`` naming every bad field.

    ``size`` is accepted for ``quantity``. The stop's side is checked once the price is known."""
    bad: list[Violation] = []
    raw_symbol = body.get("symbol")
    symbol = normalize_symbol(raw_symbol) if isinstance(raw_symbol, str) else ""
    if not symbol:
        bad.append(Violation("symbol", raw_symbol, "is a symbol such as BTCUSDT"))
    side = str(body.get("side") or "").upper()
    if side not in ("BUY", "SELL"):
        bad.append(Violation("side", body.get("side"), "is BUY or SELL"))
    size_field = "quantity" if body.get("quantity") not in (None, "") or "size" not in body else "size"
    quantity = _number(bad, body, size_field, required=True)
    stop = _number(bad, body, "stop", required=True)
    price = _number(bad, body, "price", required=False)
    if bad:
        raise BadMessageError(bad)
    assert quantity is not None and stop is not None
    return PlannedTrade(symbol, "BUY" if side == "BUY" else "SELL", quantity, stop, price)


def position_risk(plan: PlannedTrade, price: float) -> dict[str, Any]:
    """The planned position's R: risk per unit, in money and percent, the R prices; raise
    ``BadMessageError`` when the stop is on the wrong side of the price."""
    direction = 1.0 if plan.side == "BUY" else -1.0
    per_unit = (price - plan.stop) * direction
    if not per_unit > 0:
        where = "below" if plan.side == "BUY" else "above"
        raise BadMessageError([Violation("stop", plan.stop, f"is {where} the entry price {price:g} for a {plan.side}")])
    return {
        "per_unit": per_unit,
        "amount": per_unit * plan.quantity,
        "pct": per_unit / price * 100.0,
        "notional": price * plan.quantity,
        "targets": {f"{k}R": price + direction * k * per_unit for k in (1, 2, 3)},
    }


def check(
    plan: PlannedTrade,
    *,
    user_id: str,
    price: float,
    price_source: str,
    now_ms: int,
    rows: Sequence[Row],
    day_counts: Mapping[date, int],
    alerts: Sequence[Mapping[str, Any]],
    rules: BehaviourRules,
    cooldown_min: int = 0,
    models: Sequence[Mapping[str, Any]] = (),
) -> Verdict:
    """Judge ``plan`` entered at ``now_ms`` against the user's ``rows`` (the behaviour stage's rows:
    recent entries and closes), ``day_counts`` (entries per trader day before now) and recent
    behavioural ``alerts``; see the module docstring."""
    risk = position_risk(plan, price)
    notional = price * plan.quantity
    planned = Row(user_id, PLANNED, "trade", plan.symbol, plan.side, PLANNED, now_ms, None, notional, None, None)
    context = [r for r in rows if r.trade_id != PLANNED and r.entry_time <= now_ms]
    trips: list[Trip] = []
    findings = detect(context, [planned], rules, day_counts={}, day_entries=lambda d, o, n: [], fresh={PLANNED})
    for f in findings:
        if f.alert_type == "revenge_trading" and PLANNED in f.trade_ids:
            trips.append(Trip("revenge", f.severity, f.message, f.details))
        elif f.alert_type == "size_escalation" and f.alert_id == alert_id(user_id, "size_escalation", PLANNED):
            trips.append(Trip("size_escalation", f.severity, f.message, f.details))
    book = Book([*context, planned], rules)
    today = book.day(now_ms)
    counts = dict(day_counts)
    counts[today] = counts.get(today, 0) + 1
    limit, median, history = overtrading_limit(today, counts, rules)
    if counts[today] > limit and counts[today] >= rules.overtrading_min_trades:
        trips.append(
            Trip(
                "overtrading",
                "high" if counts[today] >= 2 * limit else "medium",
                f"This would be entry {counts[today]} today, over your limit of {limit:g}",
                {"entries_today": counts[today], "limit": limit, "median": median, "history_days": history},
            )
        )
    average = book.average_before(book.index[PLANNED], rules.escalation_lookback)
    if average is not None and notional >= average * (1 + rules.escalation_size_pct / 100):
        up = (notional / average - 1) * 100
        trips.append(
            Trip(
                "size_above_norm",
                "high" if up >= 2 * rules.escalation_size_pct else "medium",
                f"Size {notional:,.2f} is {up:+.0f}% over your average of {average:,.2f}",
                {"size": notional, "average_size": average, "size_up_pct": up},
            )
        )
    closes = [c for c in book.closes if c.time <= now_ms]
    if closes and closes[-1].sign < 0:
        run = book.run[len(closes) - 1]
        if run >= rules.loss_streak:
            total = sum(c.pnl for c in closes[-run:])
            trips.append(
                Trip(
                    "loss_streak",
                    "high" if run >= 2 * rules.loss_streak else "medium",
                    f"You are on {run} losing closes in a row ({total:+,.2f})",
                    {"length": run, "total_pnl": total},
                )
            )
    if outside_hours(now_ms, rules):
        trips.append(Trip("outside_hours", "low", "Now is outside your trading hours", {}))
    if cooldown_min > 0:
        since = now_ms - cooldown_min * MINUTE_MS
        recent = [a for a in alerts if a.get("severity") in ("medium", "high") and int(a.get("timestamp", 0)) >= since]
        if recent:
            last = max(recent, key=lambda a: int(a["timestamp"]))
            until = int(last["timestamp"]) + cooldown_min * MINUTE_MS
            trips.append(
                Trip(
                    "cooldown",
                    "high",
                    f"Cooling down for {math.ceil((until - now_ms) / MINUTE_MS)} more min after a "
                    f"{str(last.get('alert_type', 'behaviour')).replace('_', ' ')} alert",
                    {"alert_id": last.get("alert_id"), "until": until},
                )
            )
    return Verdict(
        symbol=plan.symbol,
        side=plan.side,
        quantity=plan.quantity,
        price=price,
        price_source=price_source,
        trips=trips,
        risk={**risk, "vs_average_size": None if average is None else notional / average},
        models=[dict(m) for m in models],
        cooldown_minutes=cooldown_min,
        allowed=not (cooldown_min > 0 and trips),
    )
