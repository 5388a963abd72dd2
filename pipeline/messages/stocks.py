"""Stock messages: trades on ``stock_trades_raw``, the stock symbol rule and the time helpers that
``StockPrice`` (seed 003's ``stock_prices_raw``, in ``analysis.py``) and the stock sources share.

Rules in the spirit of seed 001's: a stock symbol (``STOCK_SYMBOL``, not the crypto rule), positive
prices, sizes >= 0. Whether a symbol is one of ``SUBSCRIBED_SYMBOLS`` and whether live data is
fresh are the feed's rules (``pipeline.sources.stocks``): they are checked once, where the trade
comes in, so a store that catches up after a restart never refuses what the feed accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field, field_validator

from pipeline import topics as t
from pipeline.messages.base import Message, rule_error

# Letters, then digits allowed (VCB, AAPL, E1VFVN30), then an optional class suffix (BRK.B).
STOCK_SYMBOL = r"^[A-Z][A-Z0-9]{0,9}(?:\.[A-Z]{1,2})?$"


def iso_ms(value: str) -> int:
    """Return an ISO-8601 time with an offset as Unix milliseconds; raise ``ValueError`` otherwise."""
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError("no offset")
    return int(when.timestamp() * 1000)


def ms_iso(ms: int, tz: object = UTC) -> str:
    """Return Unix milliseconds as an ISO-8601 time with an offset (UTC unless ``tz`` is given)."""
    return datetime.fromtimestamp(ms / 1000, tz=tz).isoformat()  # type: ignore[arg-type]


class StockTrade(Message):
    """One trade of a stock on ``stock_trades_raw``; its id is (symbol, timestamp, trade_id).

    ``timestamp`` is when the trade happened (Unix ms), ``collected_at`` when the desk received it
    (Unix ms); ``exchange``, ``conditions`` and ``tape`` are Alpaca's ``x``, ``c`` and ``z``.
    """

    topic: ClassVar[str] = t.STOCK_TRADES_RAW
    key_field: ClassVar[str | None] = "symbol"
    plain_json: ClassVar[bool] = True

    symbol: str = Field(pattern=STOCK_SYMBOL)
    timestamp: int = Field(gt=0)
    price: float = Field(gt=0)
    size: float = Field(ge=0)
    trade_id: int = Field(ge=0)
    exchange: str | None = None
    conditions: tuple[str, ...] = ()
    tape: str | None = None
    collected_at: int = Field(gt=0)

    @field_validator("price", "size")
    @classmethod
    def _finite(cls, value: float, info: object) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise rule_error(getattr(info, "field_name", "price"), value, "a finite number")
        return value
