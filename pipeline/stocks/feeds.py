"""Each market feed's state as ``GET /health`` and the Stocks page show it, from what the feed's
worker published (``storage.status``), so it is right for feeds in other processes too.

States: ``ok``; ``stopped``; ``replaying`` (a file replay); ``closed`` (a stock feed while the NYSE
is closed: not an error, no alarm); ``stale`` (a live feed that said nothing for ``STALE_S`` while
its market was open: crypto markets always are, stock ones in sessions, counted from the open).
"""

from __future__ import annotations

from typing import Any

from pipeline.stage_catalog import CATALOG
from pipeline.stocks.hours import MarketStatus, stale
from storage.status import StageStatus

STALE_S = 120.0
ROLES = {s.name: s.role for s in CATALOG}
REPLAYS = frozenset({"replay", "stock-replay"})


def is_feed(name: str) -> bool:
    """Return True for the market and stock sources of the stage catalog."""
    return ROLES.get(name) in ("market-source", "stock-source")


def feed_state(s: StageStatus, market: MarketStatus, now: float) -> dict[str, Any]:
    """Return the feed's state and counters (JSON-able) at ``now`` (Unix seconds)."""
    stock = ROLES.get(s.name) == "stock-source"
    state = "ok"
    if not s.running:
        state = "stopped"
    elif s.name in REPLAYS:
        state = "replaying"
    elif stock and not market.open:
        state = "closed"
    elif (stock and stale(market, s.last_activity_at, now, STALE_S)) or (
        not stock and now - (s.last_activity_at or s.started_at or now) > STALE_S
    ):
        state = "stale"
    fast = s.details.get("fast_path") if isinstance(s.details, dict) else None
    return {
        "name": s.name,
        "asset": "stock" if stock else "crypto",
        "state": state,
        "running": s.running,
        "market": market.label if stock else "open around the clock",
        "last_activity_at": s.last_activity_at,
        "processed": s.processed,
        "produced": s.produced,
        "dead_lettered": s.dead_lettered,
        "last_error": s.last_error,
        "fast_path": fast,
    }
