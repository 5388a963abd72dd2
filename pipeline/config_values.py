"""How ``pipeline.config`` reads one setting: numbers within bounds, lists of known names, ids, zones,
currencies and URLs. Each raises ``ConfigError`` naming the setting, the value and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.errors import ConfigError
from pipeline.journal.excursions import setup_risk_from_text

BINANCE_PUBLIC_URL = "https://api.binance.com"


def integer(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def number(
    env: Mapping[str, str], name: str, default: float, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value != value or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = " and ".join(
            b
            for b in (f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else "")
            if b
        )
        raise ConfigError(f"{name}={raw} must be a number {bounds}")
    return value


def listed(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in env.get(name, "").split(",") if s.strip())


def names(env: Mapping[str, str], name: str, default: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(s.strip() for s in env.get(name, ",".join(default)).split(",") if s.strip())
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        raise ConfigError(f"{name} has {unknown or 'nothing'}; known: {', '.join(known)}")
    return values


def choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(allowed)}")
    return value


def redis_url(url: str | None) -> str | None:
    if url and not re.match(r"^(redis|rediss|unix)://", url):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")  # it may hold a password
    return url


def database_url(url: str | None) -> str | None:
    if url and not re.match(r"^postgres(ql)?://", url):
        raise ConfigError("DATABASE_URL must start with postgresql:// or postgres://")  # it may hold a password
    return url


def discord_ids(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    """Discord ids (snowflakes) from a comma-separated setting; the first bad one is a ConfigError."""
    values = [v.strip() for v in env.get(name, "").split(",") if v.strip()]
    bad = next((v for v in values if not v.isdigit() or int(v) <= 0), None)
    if bad is not None:
        raise ConfigError(f"{name} has {bad!r}: Discord ids are positive whole numbers (copy them with Developer Mode)")
    return tuple(dict.fromkeys(int(v) for v in values))


def timezone(value: str) -> str:
    from pipeline.journal.formats.layout import zone_of

    try:
        zone_of(value)
    except ValueError as exc:
        raise ConfigError(f"IMPORT_TIMEZONE: {exc}") from None
    return value


def currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3,5}", value):
        raise ConfigError(f"ACCOUNT_CURRENCY={value!r} must be a currency code like USD or EUR")
    return value.upper()


def setup_risk(text: str) -> tuple[tuple[str, float], ...]:
    try:
        return setup_risk_from_text(text)
    except ValueError as exc:
        raise ConfigError(f"JOURNAL_SETUP_RISK_PCT={text!r} breaks rule: {exc}") from None


def backfill_url(value: str) -> str | None:
    """``BARS_BACKFILL``: off (default), ``binance`` (its public klines), or another base URL."""
    value = value.strip()
    if value.lower() in ("", "off", "none", "0"):
        return None
    if value.lower() == "binance":
        return BINANCE_PUBLIC_URL
    if not re.match(r"https?://[^/\s]+", value):
        raise ConfigError(f"BARS_BACKFILL={value!r} must be off, binance or an http(s) base URL")
    return value.rstrip("/")


def user_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", value):
        raise ConfigError(f"USER_ID={value!r} must be 1-64 letters, digits or _ . @ -")
    return value
