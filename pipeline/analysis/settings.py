"""The stock analysis's settings (seed 003), read and checked once by ``analysis_from_env``.

Variable, default, meaning (docs/configuration.md has the same table)::

    NEWS_FEEDS                     unset    RSS/Atom feed URLs, comma-separated; news-collector runs when set
    NEWS_POLL_SECONDS              300      how often each feed is fetched (ETag/Last-Modified; backoff on errors)
    NEWS_SYMBOL_ALIASES            unset    extra aliases: ``VCB=Vietcombank|Ngoại thương;AAPL=Apple``
    ANALYSIS_SCHEDULE              ``*/15 9-16 * * mon-fri``  cron (New York time) of ``scheduled`` triggers; ``off``
    ANALYSIS_DEBOUNCE_MS           250      bars and news of a symbol within this window make one trigger
    ANALYSIS_BIG_MOVE_PCT          2        a move this large within a trigger's bars raises its priority
    ANALYSIS_WINDOW_MINUTES        240      aggregation combines results at most this old
    ALERT_ENTER_SCORE              0.5      |final score| that enters a BUY or SELL state (and alerts)
    ALERT_EXIT_SCORE               0.2      |final score| under which the state falls back to HOLD
    ALERT_AGREE_SCORE              0.3      technical and sentiment must both reach this, same sign
    ALERT_RISK_MOVE_PCT            3        an adverse move this large over the last bars is a risk alert
    ALERT_NEWS_CLUSTER             3        this many negative items within 6 hours are a risk alert
    LLM_BASE_URL, LLM_MODEL        unset    an OpenAI-compatible endpoint scores news too (both needed)
    LLM_API_KEY                    unset    its key: a secret, never logged or shown
    LLM_TIMEOUT_S                  10       an answer slower than this falls back to the lexicon

Nothing here reads the environment: ``pipeline.config`` passes its mapping in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.errors import ConfigError
from pipeline.messages.stocks import STOCK_SYMBOL

DEFAULT_SCHEDULE = "*/15 9-16 * * mon-fri"


@dataclass(frozen=True)
class AlertThresholds:
    """The aggregation's thresholds (``pipeline.analysis.aggregation``)."""

    enter: float = 0.5
    exit: float = 0.2
    agree: float = 0.3
    risk_move_pct: float = 3.0
    news_cluster: int = 3


@dataclass(frozen=True)
class AnalysisSettings:
    """What the news collector, the triggers, the analyses and the aggregation are told."""

    news_feeds: tuple[str, ...] = ()
    news_poll_s: int = 300
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    schedule: str | None = DEFAULT_SCHEDULE
    debounce_ms: int = 250
    big_move_pct: float = 2.0
    window_minutes: int = 240
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout_s: float = 10.0

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url and self.llm_model)


def _number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw} must be a number >= {lo} and <= {hi}")
    return value


def parse_aliases(spec: str, name: str = "NEWS_SYMBOL_ALIASES") -> dict[str, tuple[str, ...]]:
    """``SYM=alias|alias;SYM=...`` as symbol -> aliases; raise ``ConfigError`` naming a bad entry."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in (e.strip() for e in spec.split(";")):
        if not entry:
            continue
        symbol, sep, names = entry.partition("=")
        symbol = symbol.strip().upper()
        aliases = tuple(a.strip() for a in names.split("|") if a.strip())
        if not sep or not re.fullmatch(STOCK_SYMBOL, symbol) or not aliases:
            raise ConfigError(f"{name} has {entry!r}: write SYMBOL=alias|alias;SYMBOL=alias")
        out[symbol] = out.get(symbol, ()) + aliases
    return out


def _schedule(env: Mapping[str, str]) -> str | None:
    raw = env.get("ANALYSIS_SCHEDULE")
    text = DEFAULT_SCHEDULE if raw is None else raw.strip()
    if text.lower() in ("", "off", "none"):
        return None
    from croniter import croniter

    if not croniter.is_valid(text):
        raise ConfigError(f"ANALYSIS_SCHEDULE={text!r} is not a cron expression (e.g. {DEFAULT_SCHEDULE!r} or off)")
    return text


def _feeds(env: Mapping[str, str]) -> tuple[str, ...]:
    feeds = tuple(dict.fromkeys(u.strip() for u in (env.get("NEWS_FEEDS") or "").split(",") if u.strip()))
    bad = [u for u in feeds if not re.match(r"^(https?|file)://\S+$", u)]
    if bad:
        raise ConfigError(f"NEWS_FEEDS has {bad}: each must be an http(s):// or file:// URL")
    return feeds


def analysis_from_env(env: Mapping[str, str]) -> AnalysisSettings:
    """Read the analysis settings; raise ``ConfigError`` naming the first bad one."""
    base_url = (env.get("LLM_BASE_URL") or "").strip() or None
    model = (env.get("LLM_MODEL") or "").strip() or None
    if base_url and not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError("LLM_BASE_URL must be an http(s) URL, e.g. http://127.0.0.1:11434/v1")
    if bool(base_url) != bool(model):
        raise ConfigError("LLM_BASE_URL and LLM_MODEL go together; set both or neither")
    enter = _number(env, "ALERT_ENTER_SCORE", 0.5, 0.01, 1.0)
    exit_ = _number(env, "ALERT_EXIT_SCORE", 0.2, 0.0, 1.0)
    if exit_ >= enter:
        raise ConfigError(f"ALERT_EXIT_SCORE={exit_} must be below ALERT_ENTER_SCORE={enter} (hysteresis)")
    return AnalysisSettings(
        news_feeds=_feeds(env),
        news_poll_s=int(_number(env, "NEWS_POLL_SECONDS", 300, 5, 86_400)),
        aliases=parse_aliases(env.get("NEWS_SYMBOL_ALIASES") or ""),
        schedule=_schedule(env),
        debounce_ms=int(_number(env, "ANALYSIS_DEBOUNCE_MS", 250, 0, 60_000)),
        big_move_pct=_number(env, "ANALYSIS_BIG_MOVE_PCT", 2.0, 0.01, 100.0),
        window_minutes=int(_number(env, "ANALYSIS_WINDOW_MINUTES", 240, 1, 100_000)),
        alerts=AlertThresholds(
            enter=enter,
            exit=exit_,
            agree=_number(env, "ALERT_AGREE_SCORE", 0.3, 0.0, 1.0),
            risk_move_pct=_number(env, "ALERT_RISK_MOVE_PCT", 3.0, 0.01, 100.0),
            news_cluster=int(_number(env, "ALERT_NEWS_CLUSTER", 3, 1, 1000)),
        ),
        llm_base_url=base_url,
        llm_model=model,
        llm_api_key=(env.get("LLM_API_KEY") or "").strip() or None,
        llm_timeout_s=_number(env, "LLM_TIMEOUT_S", 10.0, 0.1, 600.0),
    )
