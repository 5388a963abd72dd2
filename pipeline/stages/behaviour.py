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
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pipeline.journal.behaviour_rules import MINUTE_MS, Finding, Row, detect
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.messages import BehavioralAlert, EnrichedTrade, Message, Trade
from pipeline.runner import Stage
from pipeline.topics import ENRICHED_TRADES
from storage.db import Database

_COLS = "user_id, trade_id, kind, symbol, side, entry_key, entry_time, exit_time, notional, pnl, pnl_pct"
_T = f"SELECT {_COLS} FROM behaviour_trades WHERE user_id = :u"
_LAST_ENTRIES = f"""SELECT * FROM ({_T} AND kind != 'round_trip' AND entry_time < :f0
    ORDER BY entry_time DESC LIMIT :k)"""
# The context of a batch (f0 = its earliest entry or exit): rows entered in [f0, hi]; results closed
# in [f0, hi]; the last closes before f0 (streaks); the last entries before f0 (size baselines, and
# the entries after a big loss before f0) and the big losses among them (revenge).
_CONTEXT = f"""{_T} AND entry_time BETWEEN :f0 AND :hi
UNION {_T} AND exit_time BETWEEN :f0 AND :hi AND pnl IS NOT NULL AND entry_time BETWEEN :hist AND :hi
UNION SELECT * FROM ({_T} AND exit_time < :f0 AND pnl IS NOT NULL AND entry_time BETWEEN :hist AND :hi
    ORDER BY exit_time DESC LIMIT :closes)
UNION {_LAST_ENTRIES}
UNION {_T} AND exit_time >= max(:lo, coalesce((SELECT min(entry_time) FROM ({_LAST_ENTRIES})), 0)) AND exit_time < :f0
    AND pnl < 0 AND (pnl <= -:min_loss OR pnl_pct <= -:min_pct) AND entry_time BETWEEN :hist AND :hi"""
_BUCKET_MS = 15 * MINUTE_MS  # every UTC offset is a whole number of quarter hours
_DAY_COUNTS = f"""SELECT entry_time / {_BUCKET_MS} AS q, count(*) FROM behaviour_trades
WHERE user_id = ? AND kind != 'round_trip' AND entry_time >= ? AND entry_time < ? GROUP BY q"""
_DAY_ENTRIES = """SELECT trade_id, entry_time FROM behaviour_trades WHERE user_id = ? AND kind != 'round_trip'
AND entry_time >= ? AND entry_time < ? ORDER BY entry_time, trade_id LIMIT ? OFFSET ?"""
_UPSERT = f"INSERT OR REPLACE INTO behaviour_trades ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def row_of(t: Trade) -> Row:
    """Return the rules' row of a journal record; a closed trade without pnl gets its gross pnl."""
    notional = t.entry_price * t.quantity
    pnl = t.pnl
    if pnl is None and t.kind != "lot" and t.exit_price is not None:
        pnl = (t.exit_price - t.entry_price) * t.quantity * (1.0 if t.side == "BUY" else -1.0)
    key = t.lot_id if t.kind == "round_trip" and t.lot_id else t.trade_id
    return Row(t.user_id, t.trade_id, t.kind, t.symbol, t.side, key, t.entry_time, t.exit_time, notional, pnl,
               None if pnl is None or notional <= 0 else pnl / notional * 100.0)


def _fresh(conn: Any, rows: list[Row]) -> set[str]:
    """The ids of ``rows`` not stored yet, or stored with another exit or P&L (a rebuilt FIFO)."""
    stored: dict[str, tuple[Any, Any]] = {}
    ids = [r.trade_id for r in rows]
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        stored.update((t, (x, p)) for t, x, p in conn.execute(
            f"SELECT trade_id, exit_time, pnl FROM behaviour_trades WHERE trade_id IN ({','.join('?' * len(chunk))})",
            chunk))
    return {r.trade_id for r in rows if stored.get(r.trade_id) != (r.exit_time, r.pnl)}


def alert_of(f: Finding) -> BehavioralAlert:
    """Return the ``behavioral-alerts`` message of a finding."""
    return BehavioralAlert(alert_id=f.alert_id, user_id=f.user_id, alert_type=f.alert_type, severity=f.severity,
                           timestamp=f.timestamp, trade_ids=list(f.trade_ids), message=f.message, details=f.details,
                           void=f.void)


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
            if isinstance(m, Trade):
                latest[m.trade_id] = None if m.void else row_of(m)
        if not latest:
            return []
        voided = [(tid,) for tid, row in latest.items() if row is None]
        rows = [row for row in latest.values() if row is not None]
        conn = self.db.reader().conn
        fresh = _fresh(conn, rows)

        def store(db: Any) -> None:
            db.conn.executemany("DELETE FROM behaviour_trades WHERE trade_id = ?", voided)
            db.conn.executemany(_UPSERT, [(r.user_id, r.trade_id, r.kind, r.symbol, r.side, r.entry_key, r.entry_time,
                                           r.exit_time, r.notional, r.pnl, r.pnl_pct) for r in rows])

        self.db.write(store)
        by_user: dict[str, list[Row]] = {}
        for r in rows:
            by_user.setdefault(r.user_id, []).append(r)
        out: list[Message] = []
        for user, focus in by_user.items():
            out.extend(alert_of(f) for f in self._detect(conn, user, focus, fresh))
        return out

    def _detect(self, conn: Any, user: str, focus: list[Row], fresh: set[str]) -> list[Finding]:
        r = self.rules
        times = [f.entry_time for f in focus if f.is_entry] + [f.exit_time for f in focus if f.is_result]
        if not times:
            return []
        f0, f1 = min(times), max(times)
        window = max(r.revenge_window_min, r.escalation_window_min) * MINUTE_MS
        hist = f0 - (r.overtrading_history_days + 1) * 86_400_000
        params = {"u": user, "f0": f0, "hi": f1 + window, "lo": f0 - r.revenge_window_min * MINUTE_MS, "hist": hist,
                  "min_loss": r.revenge_min_loss, "min_pct": r.revenge_min_loss_pct,
                  "closes": 2 * max(r.loss_streak, r.escalation_after_losses, r.escalation_after_wins) + 20,
                  "k": max(r.revenge_size_lookback, r.escalation_lookback) + r.revenge_max_entries}
        context = list(map(Row._make, conn.execute(_CONTEXT, params)))
        entries = [f for f in focus if f.is_entry]
        if not entries:
            return detect(context, focus, r, fresh=fresh)
        zone = r.zone
        first = datetime.fromtimestamp(min(e.entry_time for e in entries) / 1000, zone).date()
        last = datetime.fromtimestamp(max(e.entry_time for e in entries) / 1000, zone).date()
        days = [first - timedelta(days=r.overtrading_history_days) + timedelta(days=i)
                for i in range((last - first).days + 2 * r.overtrading_history_days + 2)]
        starts = [_day_start(d, zone) for d in days]
        counts: Counter[date] = Counter()
        for q, n in conn.execute(_DAY_COUNTS, (user, starts[0], starts[-1])):
            counts[days[bisect.bisect_right(starts, q * _BUCKET_MS) - 1]] += n

        def day_entries(day: date, offset: int, limit: int) -> list[tuple[str, int]]:
            lo, hi = _day_start(day, zone), _day_start(day + timedelta(days=1), zone)
            return conn.execute(_DAY_ENTRIES, (user, lo, hi, limit, offset)).fetchall()

        return detect(context, focus, r, day_counts=counts, day_entries=day_entries, fresh=fresh)
