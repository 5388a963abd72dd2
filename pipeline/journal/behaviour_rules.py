"""Behavioural alerts over a trader's journal: revenge trading, overtrading, size escalation,
loss streaks and entries outside the trader's hours.

Entries are records of kind ``trade`` or ``lot``; results are closed ``trade`` records and
``round_trip`` records. Results closed by one fill (same symbol and exit time) count as one close.
Each finding has a deterministic ``alert_id`` (user, type and anchor: the loss close, the first close
of a streak, the entry, or the trader's day), so replays and duplicates update the same alert. A
record that arrives late is judged in both directions (a loss against the entries after it, an
entry as history of the days and sizes after it); a late loss that extends a streak backwards
moves the streak's alert to its new first close and retracts (``void``) the one anchored later.
The thresholds are ``BehaviourRules`` (``pipeline.journal.behaviour_settings``); rows, closes and
findings are ``pipeline.journal.behaviour_book``'s.

Severity: revenge is medium (high when an entry meets three or more conditions); overtrading is
low, medium from 1.5x and high from 2x its limit; size escalation is medium (high at twice the
threshold); a loss streak is medium (high at twice its length); outside hours is low.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta

from pipeline.journal.behaviour_book import (
    MAX_IDS,
    MINUTE_MS,
    Book,
    Close,
    Finding,
    Row,
    Severity,
    alert_id,
)
from pipeline.journal.behaviour_settings import DAY_NAMES, BehaviourRules

DayEntries = Callable[[date, int, int], Sequence[tuple[str, int]]]


def detect(
    rows: Sequence[Row],
    focus: Sequence[Row],
    rules: BehaviourRules,
    *,
    day_counts: Mapping[date, int] | None = None,
    day_entries: DayEntries | None = None,
    fresh: set[str] | None = None,
) -> list[Finding]:
    """Return the findings of one user's ``rows`` that involve the newly arrived ``focus`` rows.

    ``rows`` is the context (it may include the focus rows; a focus row replaces a row of its id).
    ``day_counts`` (entries per trader day, complete for the focus days and the history before them)
    and ``day_entries(day, offset, limit)`` (that day's entries as (trade_id, entry_time) in time
    order) let a caller with only a window of rows judge overtrading; by default both come from rows.
    ``fresh``: the focus ids not seen before (a replay or a rebuilt FIFO sends known rows again);
    by default all of them. Only a fresh loss can have moved a streak's first close.
    """
    if not focus:
        return []
    focus = list({f.trade_id: f for f in focus}.values())
    book = Book({**{r.trade_id: r for r in rows}, **{f.trade_id: f for f in focus}}.values(), rules)
    user = focus[0].user_id
    ids = {f.trade_id for f in focus}
    focus_entries = [f for f in focus if f.is_entry]
    return (
        _revenge(user, book, ids, focus_entries)
        + _escalation(user, book, ids, focus_entries)
        + _overtrading(user, book, focus_entries, day_counts, day_entries)
        + _loss_streaks(user, book, ids, ids if fresh is None else fresh & ids)
        + _outside_hours(user, book, focus_entries)
    )


def _revenge_conditions(e: Row, loss: Close, r: BehaviourRules, *, burst: int, average: float | None) -> list[str]:
    """The revenge conditions an entry after ``loss`` meets (``burst``: entries in the burst window)."""
    met = []
    if burst >= r.revenge_burst_trades and e.entry_time <= loss.time + r.revenge_burst_min * MINUTE_MS:
        met.append("burst")
    if average is not None and e.notional >= average * (1 + r.revenge_size_up_pct / 100):
        met.append("size_up")
    if e.entry_time - loss.time <= r.revenge_quick_min * MINUTE_MS:
        met.append("quick")
    if e.symbol == loss.symbol:
        met.append("same_symbol")
    return met


def _revenge(user: str, book: Book, ids: set[str], focus_entries: list[Row]) -> list[Finding]:
    r = book.rules
    window, burst_ms = r.revenge_window_min * MINUTE_MS, r.revenge_burst_min * MINUTE_MS
    at = sorted(book.index[e.trade_id] for e in focus_entries)
    out = []
    for loss in book.closes:
        if not (loss.pnl < 0 and (-loss.pnl >= r.revenge_min_loss or -loss.pnl_pct >= r.revenge_min_loss_pct)):
            continue
        p = bisect.bisect_left(book.times, loss.time)
        q = min(bisect.bisect_right(book.times, loss.time + window), p + r.revenge_max_entries)
        # Anything that can change this alert re-evaluates it: the loss, its baseline, its entries.
        if not (
            ids.intersection(loss.trade_ids)
            or bisect.bisect_left(at, max(0, p - r.revenge_size_lookback)) < bisect.bisect_left(at, q)
        ):
            continue
        after = [e for e in book.entries[p:q] if e.entry_key not in loss.entry_keys]
        burst = sum(1 for e in after if e.entry_time <= loss.time + burst_ms)
        average = book.average_before(p, r.revenge_size_lookback)
        hits = [
            (e, c)
            for e in after
            if len(c := _revenge_conditions(e, loss, r, burst=burst, average=average)) >= r.revenge_min_conditions
        ]
        if not hits:
            continue
        first, met = hits[0]
        minutes = (first.entry_time - loss.time) / MINUTE_MS
        text = f"Entered {first.symbol} {minutes:.0f} min after a {loss.pnl:.2f} loss on {loss.symbol}"
        if "size_up" in met and average:
            text += f", size {(first.notional / average - 1) * 100:+.0f}% over your average"
        if "burst" in met:
            text += f", {burst} entries within {r.revenge_burst_min} min"
        if len(hits) > 1:
            text += f"; {len(hits)} revenge entries within {r.revenge_window_min} min"
        details = {
            "loss_pnl": round(loss.pnl, 2),
            "loss_pnl_pct": round(loss.pnl_pct, 2),
            "loss_symbol": loss.symbol,
            "loss_time": loss.time,
            "loss_trade_ids": list(loss.trade_ids),
            "burst_entries": burst,
            "average_size": None if average is None else round(average, 2),
            "revenge_entries": len(hits),
            "entries": [
                {
                    "trade_id": e.trade_id,
                    "symbol": e.symbol,
                    "size": round(e.notional, 2),
                    "minutes_after": round((e.entry_time - loss.time) / MINUTE_MS, 1),
                    "conditions": c,
                }
                for e, c in hits[:20]
            ],
        }
        severity: Severity = "high" if any(len(c) >= 3 for _, c in hits) else "medium"
        trade_ids = (loss.trade_ids + tuple(e.trade_id for e, _ in hits))[:MAX_IDS]
        out.append(
            Finding(
                alert_id(user, "revenge_trading", loss.key),
                user,
                "revenge_trading",
                severity,
                first.entry_time,
                trade_ids,
                text,
                details,
            )
        )
    return out


def overtrading_limit(day: date, counts: Mapping[date, int], rules: BehaviourRules) -> tuple[float, float | None, int]:
    """Return (limit, median, earlier active days) of ``day``; more entries than the limit is overtrading."""
    start = day - timedelta(days=rules.overtrading_history_days)
    prior = [n for d, n in counts.items() if start <= d < day and n > 0]
    if len(prior) < rules.overtrading_min_history_days:
        return float(rules.overtrading_max_per_day), None, len(prior)
    median = float(statistics.median(prior))
    return rules.overtrading_multiplier * median, median, len(prior)


def _overtrading(
    user: str,
    book: Book,
    focus_entries: list[Row],
    day_counts: Mapping[date, int] | None,
    day_entries: DayEntries | None,
) -> list[Finding]:
    r = book.rules
    focus_days = {book.day(e.entry_time) for e in focus_entries}
    if not focus_days:
        return []
    if day_counts is None:
        day_counts = Counter(book.day(e.entry_time) for e in book.entries)
    # A late entry is history for the days after it: those are judged again too.
    horizon = timedelta(days=r.overtrading_history_days)
    days = focus_days | {d for d, n in day_counts.items() if n and any(f < d <= f + horizon for f in focus_days)}
    if day_entries is None:
        by_day: dict[date, list[tuple[str, int]]] = {}
        for e in book.entries:
            by_day.setdefault(book.day(e.entry_time), []).append((e.trade_id, e.entry_time))
        day_entries = lambda d, offset, limit: by_day.get(d, [])[offset : offset + limit]  # noqa: E731
    out = []
    for day in sorted(days):
        count = day_counts.get(day, 0)
        limit, median, history = overtrading_limit(day, day_counts, r)
        if count <= limit or count < r.overtrading_min_trades:
            continue
        over = day_entries(day, max(math.floor(limit), r.overtrading_min_trades - 1), MAX_IDS)
        if not over:
            continue
        ratio = count / max(limit, 1.0)
        severity: Severity = "high" if ratio >= 2 else "medium" if ratio >= 1.5 else "low"
        if median is not None:
            text = (
                f"{count} entries on {day:%a %Y-%m-%d}, {count / median:.1f}x your median of {median:g} "
                f"over {history} earlier active days (limit {limit:g})"
            )
        else:
            text = f"{count} entries on {day:%a %Y-%m-%d}, over the limit of {limit:g} a day"
        details = {
            "day": day.isoformat(),
            "entries": count,
            "limit": limit,
            "median": median,
            "history_days": history,
            "timezone": r.timezone,
        }
        out.append(
            Finding(
                alert_id(user, "overtrading", day.isoformat()),
                user,
                "overtrading",
                severity,
                over[0][1],
                tuple(tid for tid, _ in over),
                text,
                details,
            )
        )
    return out


def _escalation(user: str, book: Book, ids: set[str], focus_entries: list[Row]) -> list[Finding]:
    r = book.rules
    window = r.escalation_window_min * MINUTE_MS
    spans = [(book.index[f.trade_id], book.index[f.trade_id] + r.escalation_lookback + 1) for f in focus_entries]
    for j in {book.close_of[tid] for tid in ids.intersection(book.close_of)}:  # a late close
        t = book.closes[j].time
        spans.append((bisect.bisect_left(book.times, t), bisect.bisect_right(book.times, t + window)))
    positions: set[int] = set()
    end = -1
    for lo, hi in sorted(spans):  # a new entry, the entries whose baseline it is, those after a close
        positions.update(range(max(lo, end), hi))
        end = max(end, hi)
    out = []
    for e in (book.entries[i] for i in sorted(positions) if i < len(book.entries)):
        j = bisect.bisect_right(book.close_times, e.entry_time) - 1
        if j < 0:
            continue
        last, run = book.closes[j], book.run[j]
        streaky = run >= (r.escalation_after_losses if last.sign < 0 else r.escalation_after_wins)
        if last.sign == 0 or not streaky or last.time < e.entry_time - window or e.entry_key in last.entry_keys:
            continue
        average = book.average_before(book.index[e.trade_id], r.escalation_lookback)
        if average is None or e.notional < average * (1 + r.escalation_size_pct / 100):
            continue
        streak = book.closes[j - run + 1 : j + 1]
        up = (e.notional / average - 1) * 100
        what = "losses" if last.sign < 0 else "wins"
        text = (
            f"Entered {e.symbol} at size {e.notional:.2f}, {up:+.0f}% over your average of {average:.2f}, "
            f"right after {run} {what} in a row ({sum(c.pnl for c in streak):+.2f})"
        )
        details = {
            "size": round(e.notional, 2),
            "average_size": round(average, 2),
            "size_up_pct": round(up, 1),
            "streak": what,
            "streak_length": run,
            "streak_pnl": round(sum(c.pnl for c in streak), 2),
        }
        severity: Severity = "high" if up >= 2 * r.escalation_size_pct else "medium"
        trade_ids = (e.trade_id, *(t for c in streak for t in c.trade_ids))[:MAX_IDS]
        out.append(
            Finding(
                alert_id(user, "size_escalation", e.trade_id),
                user,
                "size_escalation",
                severity,
                e.entry_time,
                trade_ids,
                text,
                details,
            )
        )
    return out


def _loss_streaks(user: str, book: Book, ids: set[str], fresh: set[str]) -> list[Finding]:
    r = book.rules
    out = []
    for j, c in enumerate(book.closes):
        run = book.run[j]
        ends = j + 1 == len(book.closes) or book.run[j + 1] <= run
        if c.sign >= 0 or run < r.loss_streak or not ends:
            continue
        streak = book.closes[j - run + 1 : j + 1]
        all_ids = [t for s in streak for t in s.trade_ids]
        if not ids.intersection(all_ids):
            continue
        total = sum(s.pnl for s in streak)
        text = (
            f"{run} losing closes in a row, {total:.2f} in total, from {streak[0].symbol} to {c.symbol} "
            f"over {(c.time - streak[0].time) / 3_600_000:.1f} h"
        )
        details = {
            "length": run,
            "total_pnl": round(total, 2),
            "first_exit": streak[0].time,
            "last_exit": c.time,
            "pnls": [round(s.pnl, 2) for s in streak[-20:]],
        }
        anchor = alert_id(user, "loss_streak", streak[0].key)
        out.append(
            Finding(
                anchor,
                user,
                "loss_streak",
                "high" if run >= 2 * r.loss_streak else "medium",
                c.time,
                tuple(all_ids[:MAX_IDS]),
                text,
                details,
            )
        )
        # An alert was anchored on close k of this streak if the close before it is new while the
        # streak's first closes from k were known already: retract it.
        for k in range(1, run - r.loss_streak + 1):
            if fresh.intersection(streak[k - 1].trade_ids) and not any(
                fresh.intersection(s.trade_ids) for s in streak[k : k + r.loss_streak]
            ):
                out.append(
                    Finding(
                        alert_id(user, "loss_streak", streak[k].key),
                        user,
                        "loss_streak",
                        "low",
                        c.time,
                        tuple(t for s in streak[k:] for t in s.trade_ids)[:MAX_IDS],
                        f"superseded by the streak from {streak[0].symbol} at {streak[0].time}",
                        {"superseded_by": anchor},
                        void=True,
                    )
                )
    return out


def outside_hours(ms: int, rules: BehaviourRules) -> bool:
    """Return whether an entry at ``ms`` falls outside the trader's hours and days."""
    if rules.trading_hours is None:
        return False
    local = datetime.fromtimestamp(ms / 1000, rules.zone)
    (h1, m1), (h2, m2) = rules.trading_hours
    start, end, now = h1 * 60 + m1, h2 * 60 + m2, local.hour * 60 + local.minute
    if start < end:
        return local.weekday() not in rules.trading_days or not start <= now < end
    # A session over midnight belongs to the weekday it starts on.
    day = local.weekday() if now >= start else (local.weekday() - 1) % 7
    return day not in rules.trading_days or not (now >= start or now < end)


def _outside_hours(user: str, book: Book, focus_entries: list[Row]) -> list[Finding]:
    r = book.rules
    if r.trading_hours is None:
        return []
    (h1, m1), (h2, m2) = r.trading_hours
    hours = f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"
    days = ",".join(DAY_NAMES[d].title() for d in r.trading_days)
    out = []
    for e in focus_entries:
        if not outside_hours(e.entry_time, r):
            continue
        local = datetime.fromtimestamp(e.entry_time / 1000, r.zone)
        text = f"Entered {e.symbol} at {local:%a %H:%M} {r.timezone}, outside your hours {hours} on {days}"
        details = {
            "local_time": local.isoformat(),
            "weekday": local.weekday(),
            "trading_hours": hours,
            "trading_days": list(r.trading_days),
            "timezone": r.timezone,
        }
        out.append(
            Finding(
                alert_id(user, "outside_hours", e.trade_id),
                user,
                "outside_hours",
                "low",
                e.entry_time,
                (e.trade_id,),
                text,
                details,
            )
        )
    return out
