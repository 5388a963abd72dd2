"""US stock exchange hours: the regular session (09:30-16:00 America/New_York) with the holidays
and early closes of the NYSE calendar (``XNYS``) from the exchange-calendars library, not a
hand-written list.

``MarketHours.status(now)`` says whether the market is open and when it next opens or closes, in
words a page and ``/health`` show as they are ("market closed, opens Mon 1 Dec 09:30 ET"). A closed
market is not an error: feeds stay quiet and no stale-data alarm fires (``stale``).

Cost: loading the calendar takes about 0.15 s and is done once per process (``market_hours``);
``status`` is a few microseconds of index lookups. The library's calendar covers 20 years back
and one year ahead of the day it was built; outside that ``status`` says the hours are unknown.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd

EXCHANGE_TZ = ZoneInfo("America/New_York")
CALENDAR = "XNYS"


@dataclass(frozen=True)
class MarketStatus:
    """Whether the market is open at ``at`` and what happens next (times are aware datetimes)."""

    at: datetime
    open: bool
    next_open: datetime | None
    next_close: datetime | None
    early_close: bool = False  # today's session closes early (e.g. 13:00 the day after Thanksgiving)
    known: bool = True  # False outside the calendar's range
    opened_at: datetime | None = None  # when the session trading now opened

    @property
    def label(self) -> str:
        """One line for a badge: "market open, closes 16:00 ET" or "market closed, opens …"."""
        if not self.known:
            return "market hours unknown for this date"
        if self.open and self.next_close is not None:
            early = " (early close)" if self.early_close else ""
            return f"market open, closes {_et(self.next_close, self.at, day=False)}{early}"
        if self.next_open is not None:
            return f"market closed, opens {_et(self.next_open, self.at, day=True)}"
        return "market closed"

    def to_json(self) -> dict[str, object]:
        return {
            "open": self.open,
            "label": self.label,
            "next_open": self.next_open.isoformat() if self.next_open else None,
            "next_close": self.next_close.isoformat() if self.next_close else None,
            "early_close": self.early_close,
        }


def _et(when: datetime, now: datetime, *, day: bool) -> str:
    local = when.astimezone(EXCHANGE_TZ)
    if day and local.date() != now.astimezone(EXCHANGE_TZ).date():
        return f"{local:%a} {local.day} {local:%b %H:%M} ET"
    return local.strftime("%H:%M ET")


class MarketHours:
    """The NYSE's regular sessions. Thread-safe (the calendar is read-only after it is built)."""

    def __init__(self) -> None:
        import exchange_calendars

        self.calendar = exchange_calendars.get_calendar(CALENDAR)
        self._lock = threading.Lock()

    def _minute(self, now: datetime) -> pd.Timestamp:
        return pd.Timestamp(now.astimezone(UTC)).floor("min")

    def is_open(self, now: datetime) -> bool:
        """Return True while a regular session is trading at ``now``."""
        cal = self.calendar
        minute = self._minute(now)
        if not (cal.first_minute <= minute <= cal.last_minute):
            return False
        return bool(cal.is_open_on_minute(minute))

    def status(self, now: datetime | None = None) -> MarketStatus:
        """Return the market's state at ``now`` (default: the current time)."""
        now = now or datetime.now(UTC)
        cal = self.calendar
        minute = self._minute(now)
        if not (cal.first_minute <= minute < cal.last_minute):
            return MarketStatus(now, False, None, None, known=False)
        with self._lock:
            if cal.is_open_on_minute(minute):
                session = cal.minute_to_session(minute)
                close = cal.session_close(session).to_pydatetime()
                opened = cal.session_open(session).to_pydatetime()
                early = session in cal.early_closes
                return MarketStatus(now, True, None, close, early_close=early, opened_at=opened)
            nxt = cal.next_open(minute)
            session = cal.minute_to_session(nxt)
            close = cal.session_close(session).to_pydatetime()
            return MarketStatus(now, False, nxt.to_pydatetime(), close, early_close=session in cal.early_closes)

    def session_minutes(self, end: datetime, count: int) -> list[int]:
        """Return the starts (Unix ms) of the last ``count`` trading minutes before ``end``, oldest first."""
        cal = self.calendar
        minute = self._minute(end) - pd.Timedelta(minutes=1)
        if minute < cal.first_minute or count <= 0:
            return []
        minute = min(minute, cal.last_minute)
        if not cal.is_open_on_minute(minute):
            minute = cal.previous_close(minute) - pd.Timedelta(minutes=1)
        window = cal.minutes_window(minute, -count)
        return [int(m.value // 1_000_000) for m in window]


def stale(status: MarketStatus, last_activity: float | None, now: float, limit_s: float) -> bool:
    """Return True when a stock feed should have said something by ``now`` (Unix seconds): the
    market is open and nothing came for ``limit_s`` seconds, counted from the later of the last
    activity and the session's open. A closed market is never stale."""
    if not status.open or status.opened_at is None:
        return False
    since = max(last_activity or 0.0, status.opened_at.timestamp())
    return now - since > limit_s


@functools.cache
def market_hours() -> MarketHours:
    """The process's one calendar (built on first use)."""
    return MarketHours()
