"""The behaviour rules' view of a user's journal: rows, closes (results closed by one fill), the book
that indexes them, and the findings the rules make, each with a deterministic alert id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import accumulate
from typing import Any, Literal, NamedTuple

from pipeline.journal.behaviour_settings import BehaviourRules

AlertType = Literal["revenge_trading", "overtrading", "size_escalation", "loss_streak", "outside_hours"]
Severity = Literal["low", "medium", "high"]
MINUTE_MS = 60_000
MAX_IDS = 100  # trade ids listed on one alert; details keep the full counts


class Row(NamedTuple):
    """One journal record of one user as the rules see it; ``entry_key`` names its position (the lot
    of a round trip, else itself), ``notional`` is entry price x quantity."""

    user_id: str
    trade_id: str
    kind: Literal["trade", "lot", "round_trip"]
    symbol: str
    side: str
    entry_key: str
    entry_time: int
    exit_time: int | None
    notional: float
    pnl: float | None
    pnl_pct: float | None

    @property
    def is_entry(self) -> bool:
        return self.kind != "round_trip"

    @property
    def is_result(self) -> bool:
        return self.kind != "lot" and self.exit_time is not None and self.pnl is not None


@dataclass(frozen=True)
class Finding:
    """One behavioural alert: what, how bad, which trades, why (in numbers) and when."""

    alert_id: str
    user_id: str
    alert_type: AlertType
    severity: Severity
    timestamp: int
    trade_ids: tuple[str, ...]
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    # Retracts the alert of this id: a late loss extended a streak backwards, so the streak's
    # alert now has an earlier anchor and the one anchored later is superseded.
    void: bool = False


def alert_id(user_id: str, alert_type: str, anchor: str) -> str:
    """Return the deterministic id of the alert of ``alert_type`` anchored on ``anchor``."""
    digest = hashlib.blake2b(f"{user_id}\x1f{alert_type}\x1f{anchor}".encode(), digest_size=12)
    return "beh-" + digest.hexdigest()


class Close(NamedTuple):
    """The results closed by one fill: same symbol and exit time."""

    symbol: str
    time: int
    pnl: float
    pnl_pct: float
    trade_ids: tuple[str, ...]
    entry_keys: frozenset[str]

    @property
    def key(self) -> str:
        return f"{self.symbol}@{self.time}"

    @property
    def sign(self) -> int:
        return (self.pnl > 0) - (self.pnl < 0)


def group_closes(rows: Iterable[Row]) -> list[Close]:
    """Group results into closes (same symbol and exit time), in exit-time order."""
    groups: dict[tuple[int, str], list[Row]] = {}
    for r in rows:
        if r.is_result:
            groups.setdefault((r.exit_time, r.symbol), []).append(r)  # type: ignore[arg-type]
    out = []
    for (t, symbol), rs in sorted(groups.items()):
        if len(rs) > 1:
            rs.sort(key=lambda r: r.trade_id)
        pnl = float(sum(r.pnl or 0.0 for r in rs))  # results always carry a pnl (``is_result``)
        notional = rs[0].notional if len(rs) == 1 else sum(r.notional for r in rs)
        out.append(
            Close(
                symbol,
                t,
                pnl,
                pnl / notional * 100.0 if notional > 0 else 0.0,
                tuple(r.trade_id for r in rs),
                frozenset(r.entry_key for r in rs),
            )
        )
    return out


class Book:
    """A user's rows indexed for the rules: entries by entry time, closes by exit time."""

    def __init__(self, rows: Iterable[Row], rules: BehaviourRules) -> None:
        rows = list(rows)
        self.rules = rules
        self.entries = sorted((r for r in rows if r.is_entry), key=lambda r: (r.entry_time, r.trade_id))
        self.times = [e.entry_time for e in self.entries]
        self.index = {e.trade_id: i for i, e in enumerate(self.entries)}
        self.cum = list(accumulate((e.notional for e in self.entries), initial=0.0))
        self.closes = group_closes(rows)
        self.close_times = [c.time for c in self.closes]
        self.close_of = {tid: i for i, c in enumerate(self.closes) for tid in c.trade_ids}
        self.run: list[int] = []  # same-sign closes in a row ending at each close
        for i, c in enumerate(self.closes):
            same = i > 0 and c.sign != 0 and self.closes[i - 1].sign == c.sign
            self.run.append(self.run[-1] + 1 if same else (1 if c.sign else 0))

    def average_before(self, i: int, n: int) -> float | None:
        """Average size of the ``n`` entries before position ``i``, if there are enough."""
        lo = max(0, i - n)
        if i - lo < self.rules.baseline_min_entries:
            return None
        return (self.cum[i] - self.cum[lo]) / (i - lo)

    def day(self, ms: int) -> date:
        return datetime.fromtimestamp(ms / 1000, self.rules.zone).date()
