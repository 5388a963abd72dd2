"""Runs the pre-trade check (``pipeline.journal.pretrade``) for the API and the Journal page: reads
the trader's recent rows, entries per day and alerts (``storage.behaviour``, ``storage.journal``),
the market's last price (``storage.market``) and the models' latest signals (``storage.signals``),
and places the entry on the paper account when the check allows it.

Cost: about five indexed reads on the calling thread's connection (a few milliseconds), whatever
the journal's size (``bench.pretrade``).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, PipelineError, Violation
from pipeline.journal.behaviour_book import MINUTE_MS, Row
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.pretrade import PlannedTrade, Verdict, check, planned_from
from pipeline.trading.manual import entry_request, publish
from storage import behaviour, journal, market
from storage import signals as signal_store
from storage.db import Database

DAY_MS = 86_400_000


@dataclass(frozen=True)
class PretradeSettings:
    """What the check needs of the desk's configuration."""

    rules: BehaviourRules
    cooldown_min: int = 0
    models: tuple[str, ...] = ()


class EntryRefused(PipelineError):
    """The paper account refuses an entry while the cooldown is on and a rule is tripped: nothing is
    placed; the message lists the rules."""


def _day_start(day: date, rules: BehaviourRules) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=rules.zone).timestamp() * 1000)


def _day_counts(db: Database, user: str, now_ms: int, rules: BehaviourRules) -> Counter[date]:
    """Entries per trader day over the overtrading history before now (as the behaviour stage counts them)."""
    today = datetime.fromtimestamp(now_ms / 1000, rules.zone).date()
    days = [
        today - timedelta(days=rules.overtrading_history_days) + timedelta(days=i)
        for i in range(rules.overtrading_history_days + 2)
    ]
    starts = [_day_start(d, rules) for d in days]
    counts: Counter[date] = Counter()
    for q, n in behaviour.day_counts(db.reader().conn, user, starts[0], now_ms + 1):
        counts[days[bisect.bisect_right(starts, q * behaviour.BUCKET_MS) - 1]] += n
    return counts


def _rows(db: Database, user: str, now_ms: int, rules: BehaviourRules) -> list[Row]:
    window = max(rules.revenge_window_min, rules.escalation_window_min) * MINUTE_MS
    params = {
        "u": user,
        "f0": now_ms,
        "hi": now_ms + window,
        "lo": now_ms - rules.revenge_window_min * MINUTE_MS,
        "hist": now_ms - (rules.overtrading_history_days + 1) * DAY_MS,
        "min_loss": rules.revenge_min_loss,
        "min_pct": rules.revenge_min_loss_pct,
        "closes": 2 * max(rules.loss_streak, rules.escalation_after_losses, rules.escalation_after_wins) + 20,
        "k": max(rules.revenge_size_lookback, rules.escalation_lookback) + rules.revenge_max_entries,
    }
    return list(map(Row._make, behaviour.context(db.reader().conn, params)))


def _price(db: Database, plan: PlannedTrade) -> tuple[float, str]:
    if plan.price is not None:
        return plan.price, "given"
    ticks = market.latest_ticks(db)
    mine = ticks[ticks["symbol"] == plan.symbol]
    if mine.empty:
        raise BadMessageError([Violation("price", None, f"is required: the desk has no market price of {plan.symbol}")])
    return float(mine["price"].iloc[0]), "last tick"


def run_check(
    db: Database,
    user: str,
    body: Mapping[str, object],
    settings: PretradeSettings,
    *,
    now_ms: int | None = None,
) -> Verdict:
    """Check the planned trade in ``body`` (``planned_from``'s fields) for ``user`` now; raise
    ``BadMessageError`` naming each bad field."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    plan = planned_from(body)
    price, source = _price(db, plan)
    rules = settings.rules
    alerts: Sequence[Mapping[str, object]] = journal.alerts(db, user, limit=20) if settings.cooldown_min else []
    models = [
        {k: s[k] for k in ("model", "signal", "confidence", "expected_change_pct", "timestamp", "current_price")}
        for s in signal_store.latest_of(db, plan.symbol, settings.models)
    ]
    return check(
        plan,
        user_id=user,
        price=price,
        price_source=source,
        now_ms=now,
        rows=_rows(db, user, now, rules),
        day_counts=_day_counts(db, user, now, rules),
        alerts=alerts,
        rules=rules,
        cooldown_min=settings.cooldown_min,
        models=models,
    )


def place_paper_entry(producer: Producer, verdict: Verdict, stop: float, *, now_ms: int | None = None) -> str:
    """Place the checked trade on the paper account as a market BUY with its stop; return the order id.

    Raises ``EntryRefused`` while the cooldown is on and a rule is tripped, and ``BadMessageError``
    for a SELL (the paper account is long only)."""
    if not verdict.allowed:
        raise EntryRefused(
            "the paper account refuses this entry while the cooldown is on: "
            + "; ".join(f"{t.rule} ({t.message})" for t in verdict.trips)
        )
    if verdict.side != "BUY":
        raise BadMessageError([Violation("side", verdict.side, "is BUY: the paper account is long only")])
    now = int(time.time() * 1000) if now_ms is None else now_ms
    order = entry_request(verdict.symbol, verdict.quantity, verdict.price, stop, now_ms=now)
    publish(producer, order)
    return order.order_id
