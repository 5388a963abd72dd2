"""Publish what the trader enters (form, trades API) to ``raw-trades``, after validating it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from pipeline.bus.base import Producer
from pipeline.errors import TransientError
from pipeline.journal.fills import TradeEntry, entry_fingerprint
from pipeline.journal.formats import parse_row
from pipeline.messages import RawTrade, encode
from pipeline.topics import RAW_TRADES


def submit_entry(
    producer: Producer,
    user_id: str,
    fields: Mapping[str, object],
    *,
    source: str = "manual",
    now_ms: int | None = None,
    timeout: float = 10.0,
) -> str:
    """Validate a whole trade field by field, publish it as received, return its trade id.

    Raises ``BadMessageError`` naming each bad field (nothing is published then), or
    ``TransientError`` when the bus did not take it. A trade without its own ``trade_id`` gets
    a fresh one, so entering the same trade twice on purpose keeps both.
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    entry = parse_row("manual", fields, now_ms=now)
    assert isinstance(entry, TradeEntry)  # the manual format reads whole trades
    raw_id = entry_fingerprint(user_id, entry, 0) if entry.external_id else f"t-{uuid.uuid4().hex[:24]}"
    raw = RawTrade(
        raw_id=raw_id, user_id=user_id, source=source, format="manual", received_at=now, payload=dict(fields)
    )
    producer.produce(RAW_TRADES, encode(raw), key=user_id.encode())
    if producer.flush(timeout):
        raise TransientError("the trade was not delivered to raw-trades; try again")
    return raw_id
