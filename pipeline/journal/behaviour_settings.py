"""The thresholds of the behavioural rules (``pipeline.journal.behaviour_rules``), read and checked once.

Thresholds, read once by ``rules_from_env`` (empty means the default; a bad value is a ConfigError),
as variable, default, meaning::

    BEHAVIOUR_REVENGE_WINDOW_MIN            120   minutes after a loss in which entries are examined
    BEHAVIOUR_REVENGE_MIN_LOSS              500   a loss this large (quote currency) qualifies ...
    BEHAVIOUR_REVENGE_MIN_LOSS_PCT          3.0   ... or this large in % of the closed notional
    BEHAVIOUR_REVENGE_MIN_CONDITIONS        2     conditions a revenge entry meets (of the next four)
    BEHAVIOUR_REVENGE_BURST_TRADES          3     burst: this many entries ...
    BEHAVIOUR_REVENGE_BURST_MIN             10    ... within this many minutes after the loss
    BEHAVIOUR_REVENGE_SIZE_UP_PCT           25    size up: notional this % over the pre-loss average
    BEHAVIOUR_REVENGE_SIZE_LOOKBACK         10    entries before the loss that make that average
    BEHAVIOUR_REVENGE_QUICK_MIN             15    quick: entry within this many minutes of the loss
    BEHAVIOUR_REVENGE_MAX_ENTRIES           50    entries after a loss examined at most (bounds busy accounts)
    BEHAVIOUR_OVERTRADING_MULTIPLIER        2.0   a day's entries > this x the median of earlier days
    BEHAVIOUR_OVERTRADING_MIN_TRADES        6     ... and at least this many entries that day
    BEHAVIOUR_OVERTRADING_MIN_HISTORY_DAYS  5     earlier active days needed for the median rule
    BEHAVIOUR_OVERTRADING_HISTORY_DAYS      30    how many calendar days back count as earlier days
    BEHAVIOUR_OVERTRADING_MAX_PER_DAY       20    with less history: entries a day above this
    BEHAVIOUR_ESCALATION_SIZE_PCT           50    an entry this % over the average of ...
    BEHAVIOUR_ESCALATION_LOOKBACK           10    ... this many previous entries, right after
    BEHAVIOUR_ESCALATION_AFTER_LOSSES       2     ... this many losing closes in a row or
    BEHAVIOUR_ESCALATION_AFTER_WINS         3     ... this many winning closes in a row,
    BEHAVIOUR_ESCALATION_WINDOW_MIN         60    ... the last of them at most this many minutes ago
    BEHAVIOUR_BASELINE_MIN_ENTRIES          3     fewest earlier entries an average size needs
    BEHAVIOUR_LOSS_STREAK                   3     losing closes in a row (by exit time) for an alert
    BEHAVIOUR_TRADING_HOURS                 off   ``HH:MM-HH:MM`` (may wrap midnight); ``off`` = no rule
    BEHAVIOUR_TRADING_DAYS                  0-6   weekdays (0 = Monday) as ``0-4``, ``0,2,4`` or ``mon-fri``
    BEHAVIOUR_TIMEZONE                      UTC   zoneinfo name for hours, weekdays and trader days
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.errors import ConfigError

Hours = tuple[tuple[int, int], tuple[int, int]]
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _n(default: float, lo: float, hi: float | None = None) -> Any:
    """A numeric threshold with its bounds (checked on construction and when read from the env)."""
    return field(default=default, metadata={"bounds": (lo, hi)})


@dataclass(frozen=True)
class BehaviourRules:
    """The thresholds of every rule (see the module docstring); validated on construction."""

    revenge_window_min: int = _n(120, 1)
    revenge_min_loss: float = _n(500.0, 0)
    revenge_min_loss_pct: float = _n(3.0, 0)
    revenge_min_conditions: int = _n(2, 1, 4)
    revenge_burst_trades: int = _n(3, 2)
    revenge_burst_min: int = _n(10, 1)
    revenge_size_up_pct: float = _n(25.0, 0)
    revenge_size_lookback: int = _n(10, 1)
    revenge_quick_min: int = _n(15, 0)
    revenge_max_entries: int = _n(50, 1)
    overtrading_multiplier: float = _n(2.0, 1)
    overtrading_min_trades: int = _n(6, 1)
    overtrading_min_history_days: int = _n(5, 1)
    overtrading_history_days: int = _n(30, 1, 366)
    overtrading_max_per_day: int = _n(20, 1)
    escalation_size_pct: float = _n(50.0, 0)
    escalation_lookback: int = _n(10, 1)
    escalation_after_losses: int = _n(2, 1)
    escalation_after_wins: int = _n(3, 1)
    escalation_window_min: int = _n(60, 1)
    baseline_min_entries: int = _n(3, 1)
    loss_streak: int = _n(3, 2)
    trading_hours: Hours | None = None
    trading_days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        for f in fields(self):
            rule = _broken_rule(f.name, getattr(self, f.name))
            if rule:
                raise ConfigError(f"BehaviourRules.{f.name}={getattr(self, f.name)!r} breaks rule: {rule}")

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)


_FIELDS = BehaviourRules.__dataclass_fields__


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _broken_rule(name: str, value: Any) -> str | None:
    """Return the rule ``value`` breaks as field ``name``, or None."""
    if "bounds" in _FIELDS[name].metadata:
        lo, hi = _FIELDS[name].metadata["bounds"]
        whole = isinstance(_FIELDS[name].default, int)
        ok = (
            isinstance(value, int if whole else (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= lo
            and (hi is None or value <= hi)
        )
        rule = f"{'a whole number' if whole else 'a number'} >= {lo:g}" + (f" and <= {hi:g}" if hi else "")
        return None if ok else rule
    if name == "trading_hours":
        try:
            (h1, m1), (h2, m2) = value or ((0, 0), (0, 1))
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if 0 <= m1 < 60 and 0 <= m2 < 60 and 0 <= start <= 1440 and 0 <= end <= 1440 and start != end:
                return None
        except (TypeError, ValueError):
            pass
        return "None or HH:MM-HH:MM with different start and end, at most 24:00"
    if name == "trading_days":
        ok = isinstance(value, tuple) and value and all(isinstance(d, int) and 0 <= d <= 6 for d in value)
        return None if ok else "one or more weekdays 0-6 (0 = Monday), as 0-4, 0,2,4 or mon-fri"
    if name == "timezone":
        try:
            _zone(value)
            return None
        except (ValueError, TypeError, OSError, KeyError):
            return "a zoneinfo time zone name such as UTC or Europe/Berlin"
    return None


def _parse(name: str, raw: str) -> Any:
    """Turn the environment string of field ``name`` into its value; raise ValueError if unparsable."""
    default = _FIELDS[name].default
    if name == "trading_hours":
        if raw.strip().lower() in ("off", "none"):
            return None
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", raw) or _fail(raw)
        a, b, c, d = (int(g) for g in m.groups())
        return ((a, b), (c, d))
    if name == "trading_days":
        days: list[int] = []
        for part in raw.lower().replace(" ", "").split(","):
            ends = [int(p) if p.isdigit() else DAY_NAMES.index(p[:3]) for p in part.split("-")]
            if len(ends) == 1:
                days.append(ends[0])
            else:
                days.extend(range(ends[0], ends[1] + 1) if len(ends) == 2 and ends[0] <= ends[1] else _fail(raw))
        return tuple(sorted(set(days)))
    if name == "timezone":
        return raw.strip()
    return int(raw) if isinstance(default, int) else float(raw)


def _fail(raw: str) -> Any:
    raise ValueError(raw)


def rules_from_env(env: Mapping[str, str]) -> BehaviourRules:
    """Read ``BEHAVIOUR_<FIELD>`` settings into rules; raise ``ConfigError`` naming a bad one."""
    values: dict[str, Any] = {}
    for f in fields(BehaviourRules):
        var = f"BEHAVIOUR_{f.name.upper()}"
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = _parse(f.name, raw)
        except (ValueError, IndexError):
            value = raw
        rule = _broken_rule(f.name, value)
        if rule:
            raise ConfigError(f"{var}={raw!r} breaks rule: {rule}")
        values[f.name] = value
    return BehaviourRules(**values)
