"""What the Discord bot accepts from a trader: symbols, periods, chart windows and order statuses.

Each parser is pure and either returns the value or raises ``BotInputError`` whose message is the
one line the bot answers: it names what was given and what is accepted. Times are Unix
milliseconds (UTC); "now" is passed in, so a replay's past is as good as the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MAX_WINDOW_MS = 7 * DAY_MS
MIN_WINDOW_MS = 15 * MINUTE_MS
DEFAULT_WINDOW = "4h"
STATUSES = ("PENDING", "FILLED", "CLOSED", "CANCELLED")
OrderStatusFilter = Literal["PENDING", "FILLED", "CLOSED", "CANCELLED"]
PERIOD_FORMS = (
    "today, week, month, ytd, all, a number of days like 7d, a date like 2025-01-31 or a range 2025-01-01..2025-01-31"
)
WINDOW_FORMS = "minutes, hours or days like 90m, 4h or 3d, from 15m up to 7d"
_SHOWN_MAX = 40


class BotInputError(ValueError):
    """A command argument the bot cannot use; ``str()`` is the one-line answer."""


def shown(text: str) -> str:
    """Return what a trader typed, cut and quoted for an answer (it never pings: no @ survives)."""
    cleaned = " ".join(text.split()).replace("@", "at ")
    return repr(cleaned if len(cleaned) <= _SHOWN_MAX else cleaned[: _SHOWN_MAX - 1] + "…")


def symbol_of(text: str, known: list[str] | tuple[str, ...]) -> str:
    """Return the known symbol ``text`` names: its own name in any case, or its base asset
    (``btc`` is ``BTCUSDT`` when that is known). ``known`` is every symbol the desk has."""
    wanted = text.strip().upper()
    for candidate in (wanted, wanted + "USDT"):
        if candidate in known:
            return candidate
    listed = ", ".join(sorted(known)[:25]) or "none yet"
    raise BotInputError(f"Unknown symbol {shown(text)}: the desk knows {listed}.")


def status_of(text: str | None) -> OrderStatusFilter | None:
    """Return the order status to filter on, or None for every status."""
    if text is None or not text.strip() or text.strip().lower() == "all":
        return None
    wanted = text.strip().upper()
    if wanted not in STATUSES:
        raise BotInputError(f"Unknown status {shown(text)}: use {', '.join(STATUSES)} or all.")
    return wanted  # type: ignore[return-value]


@dataclass(frozen=True)
class Period:
    """A span of time for the journal: ``since_ms <= t < until_ms`` (None: open-ended), and a label."""

    label: str
    since_ms: int | None
    until_ms: int | None


def _day_start(when: datetime) -> datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _date(text: str, original: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BotInputError(f"Period {shown(original)} not understood: use {PERIOD_FORMS}.") from None


def period_of(text: str | None, now_ms: int) -> Period:
    """Return the journal period ``text`` names (UTC days); no text is the whole journal."""
    raw = (text or "").strip().lower()
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    if raw in ("", "all"):
        return Period("all time", None, None)
    if raw == "today":
        return Period("today (UTC)", _ms(_day_start(now)), None)
    if raw == "week":
        return Period("the last 7 days", now_ms - 7 * DAY_MS, None)
    if raw == "month":
        return Period("the last 30 days", now_ms - 30 * DAY_MS, None)
    if raw == "ytd":
        return Period(f"{now.year} to date", _ms(datetime(now.year, 1, 1, tzinfo=UTC)), None)
    days = re.fullmatch(r"(\d{1,4})\s*d(ays?)?", raw)
    if days and int(days.group(1)) > 0:
        n = int(days.group(1))
        return Period(f"the last {n} day{'s' if n > 1 else ''}", now_ms - n * DAY_MS, None)
    if ".." in raw:
        first, _, last = raw.partition("..")
        start, end = _date(first.strip(), text or ""), _date(last.strip(), text or "")
        if end < start:
            raise BotInputError(f"Period {shown(text or '')} ends before it starts: use {PERIOD_FORMS}.")
        return Period(f"{start:%Y-%m-%d} to {end:%Y-%m-%d}", _ms(start), _ms(end + timedelta(days=1)))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        start = _date(raw, text or "")
        return Period(f"since {start:%Y-%m-%d}", _ms(start), None)
    raise BotInputError(f"Period {shown(text or '')} not understood: use {PERIOD_FORMS}.")


def window_of(text: str | None) -> tuple[int, str]:
    """Return a chart window in milliseconds and its label, e.g. ``"4h"`` -> (14_400_000, "4h")."""
    raw = (text or DEFAULT_WINDOW).strip().lower()
    match = re.fullmatch(r"(\d{1,5})\s*(m|min|h|d)", raw)
    if not match:
        raise BotInputError(f"Window {shown(text or '')} not understood: use {WINDOW_FORMS}.")
    n, unit = int(match.group(1)), match.group(2)
    ms = n * {"m": MINUTE_MS, "min": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}[unit]
    if not MIN_WINDOW_MS <= ms <= MAX_WINDOW_MS:
        raise BotInputError(f"Window {shown(text or '')} is out of range: use {WINDOW_FORMS}.")
    return ms, f"{n}{'m' if unit == 'min' else unit}"


def order_id_of(text: str, pending: list[str]) -> str:
    """Return ``text`` if it is one of the ``pending`` order ids (exactly, after trimming)."""
    wanted = text.strip()
    if wanted in pending:
        return wanted
    listed = ", ".join(pending[:10]) + (f" and {len(pending) - 10} more" if len(pending) > 10 else "")
    return _no_pending(text, listed)


def _no_pending(text: str, listed: str) -> str:
    if listed:
        raise BotInputError(f"No pending order {shown(text)}: the pending orders are {listed}.")
    raise BotInputError(f"No pending order {shown(text)}: there is no pending order to cancel.")
