"""behaviour: keeps each user's recent journal records in ``behaviour_trades`` and publishes
behavioural alerts (the rules are in ``pipeline.journal.behaviour_rules``).

Per batch: one write transaction (upserts, voids), then per affected user one context query, one
query of entries per trader day for overtrading, and one of a day's entries when that day is over
its limit. The queries on exit time want an index on ``behaviour_trades (user_id, exit_time)``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal, cast
from zoneinfo import ZoneInfo

from pipeline.journal.behaviour_book import MINUTE_MS, Finding, Row
from pipeline.journal.behaviour_rules import detect
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.messages import BehavioralAlert, EnrichedTrade, Message, Trade
from pipeline.runner import Stage
from pipeline.topics import ENRICHED_TRADES
from storage import behaviour
from storage.db import Database

# Funding payments and booked P&L are money, not trades: no behaviour rule reads them.
PAYMENTS = frozenset({"funding", "realized_pnl"})


def row_of(t: Trade) -> Row:
    """Return the rules' row of a journal record; a closed trade without pnl gets its gross pnl."""
    notional = t.entry_price * t.quantity
    pnl = t.pnl
    if pnl is None and t.kind != "lot" and t.exit_price is not None:
        pnl = (t.exit_price - t.entry_price) * t.quantity * (1.0 if t.side == "BUY" else -1.0)
    key = t.lot_id if t.kind == "round_trip" and t.lot_id else t.trade_id
    return Row(
        t.user_id,
        t.trade_id,
        cast(Literal["trade", "lot", "round_trip"], t.kind),  # payments never get here (PAYMENTS)
        t.symbol,
        t.side,
        key,
        t.entry_time,
        t.exit_time,
        notional,
        pnl,
        None if pnl is None or notional <= 0 else pnl / notional * 100.0,
    )


def _fresh(conn: Any, rows: list[Row]) -> set[str]:
    """The ids of ``rows`` not stored yet, or stored with another exit or P&L (a rebuilt FIFO)."""
    stored = behaviour.stored_results(conn, [r.trade_id for r in rows])
    return {r.trade_id for r in rows if stored.get(r.trade_id) != (r.exit_time, r.pnl)}


def alert_of(f: Finding) -> BehavioralAlert:
    """Return the ``behavioral-alerts`` message of a finding."""
    return BehavioralAlert(
        alert_id=f.alert_id,
        user_id=f.user_id,
        alert_type=f.alert_type,
        severity=f.severity,
        timestamp=f.timestamp,
        trade_ids=list(f.trade_ids),
        message=f.message,
        details=f.details,
        void=f.void,
    )


def _day_start(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


class BehaviourStage(Stage):
    """Keeps each user's recent records in ``behaviour_trades`` and publishes behavioural alerts.

    ``process_batch`` runs on the runner's thread: it writes through the database's writer thread
    (one transaction per batch) and reads the context on this thread's own connection.
    """

    name: ClassVar[str] = "behaviour"
    inputs: ClassVar[tuple[str, ...]] = (ENRICHED_TRADES,)
    input_model: ClassVar[type[Message] | None] = EnrichedTrade

    def __init__(self, db: Database, rules: BehaviourRules) -> None:
        self.db = db
        self.rules = rules

    def process_batch(self, messages: list[Message]) -> list[Message]:
        latest: dict[str, Row | None] = {}  # the last state of each id in the batch; None = voided
        for m in messages:
            if isinstance(m, Trade) and m.kind not in PAYMENTS:
                latest[m.trade_id] = None if m.void else row_of(m)
        if not latest:
            return []
        voided = [tid for tid, row in latest.items() if row is None]
        rows = [row for row in latest.values() if row is not None]
        conn = self.db.reader().conn
        fresh = _fresh(conn, rows)

        self.db.write(lambda db: behaviour.store(db.conn, rows, voided))
        by_user: dict[str, list[Row]] = {}
        for r in rows:
            by_user.setdefault(r.user_id, []).append(r)
        out: list[Message] = []
        for user, focus in by_user.items():
            out.extend(alert_of(f) for f in self._detect(conn, user, focus, fresh))
        return out

    def _detect(self, conn: Any, user: str, focus: list[Row], fresh: set[str]) -> list[Finding]:
        r = self.rules
        times = [f.entry_time for f in focus if f.is_entry] + [
            f.exit_time for f in focus if f.is_result and f.exit_time is not None
        ]
        if not times:
            return []
        f0, f1 = min(times), max(times)
        window = max(r.revenge_window_min, r.escalation_window_min) * MINUTE_MS
        hist = f0 - (r.overtrading_history_days + 1) * 86_400_000
        params = {
            "u": user,
            "f0": f0,
            "hi": f1 + window,
            "lo": f0 - r.revenge_window_min * MINUTE_MS,
            "hist": hist,
            "min_loss": r.revenge_min_loss,
            "min_pct": r.revenge_min_loss_pct,
            "closes": 2 * max(r.loss_streak, r.escalation_after_losses, r.escalation_after_wins) + 20,
            "k": max(r.revenge_size_lookback, r.escalation_lookback) + r.revenge_max_entries,
        }
        context = list(map(Row._make, behaviour.context(conn, params)))
        entries = [f for f in focus if f.is_entry]
        if not entries:
            return detect(context, focus, r, fresh=fresh)
        zone = r.zone
        first = datetime.fromtimestamp(min(e.entry_time for e in entries) / 1000, zone).date()
        last = datetime.fromtimestamp(max(e.entry_time for e in entries) / 1000, zone).date()
        days = [
            first - timedelta(days=r.overtrading_history_days) + timedelta(days=i)
            for i in range((last - first).days + 2 * r.overtrading_history_days + 2)
        ]
        starts = [_day_start(d, zone) for d in days]
        counts: Counter[date] = Counter()
        for q, n in behaviour.day_counts(conn, user, starts[0], starts[-1]):
            counts[days[bisect.bisect_right(starts, q * behaviour.BUCKET_MS) - 1]] += n

        def day_entries(day: date, offset: int, limit: int) -> list[tuple[str, int]]:
            lo, hi = _day_start(day, zone), _day_start(day + timedelta(days=1), zone)
            return behaviour.day_entries(conn, user, lo, hi, limit, offset)

        return detect(context, focus, r, day_counts=counts, day_entries=day_entries, fresh=fresh)
