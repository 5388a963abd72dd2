"""The journal's vocabulary: a parsed fill, a whole trade as entered, symbols and fingerprints.

Every source (entry form, CSV importer, trades API, exchange clients) turns its input into a
``Fill`` (one execution on an exchange, paired into round trips later), a ``TradeEntry`` (a
whole trade the trader typed or exported, entry and maybe exit) or a ``Payment`` (a derivatives
account's funding payment or booked realized P&L). The normalizer reads the same
payloads back through the same parsers, so a row means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from pipeline.messages import Side

PaymentKind = Literal["funding", "realized_pnl"]

# Quote currencies, longest first so "FDUSD" wins over "USD" and "USDT" over "USD".
QUOTES = (
    "FDUSD",
    "USDT",
    "USDC",
    "BUSD",
    "TUSD",
    "USDE",
    "DAI",
    "USD",
    "EUR",
    "TRY",
    "BRL",
    "GBP",
    "JPY",
    "BTC",
    "ETH",
    "BNB",
)
_SEPARATORS = re.compile(r"[\s/\-_:.]+")


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: ``symbol`` normalized (``BTCUSDT``), ``time`` in Unix ms (UTC),
    ``fee`` in ``fee_asset`` (None when the source gives none). ``currency`` is the quote currency
    of a symbol that names none (a stock, ``AAPL``: the row's or the account's currency)."""

    symbol: str
    side: Side
    price: float
    quantity: float
    time: int
    fee: float | None = None
    fee_asset: str | None = None
    exchange_id: str | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class TradeEntry:
    """A whole trade as the trader entered or exported it (not yet a Trade message)."""

    symbol: str
    side: Side
    entry_price: float
    quantity: float
    entry_time: int
    exit_price: float | None = None
    exit_time: int | None = None
    pnl: float | None = None
    fees: float | None = None
    stop_loss: float | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()
    setup: str | None = None
    emotion: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """Money a derivatives account booked that is not a fill: a funding payment, or a realized P&L
    as the exchange stated it. ``amount`` is signed (+ received, - paid) in ``asset``."""

    kind: PaymentKind
    symbol: str
    amount: float
    asset: str
    time: int
    external_id: str | None = None


def normalize_symbol(symbol: str) -> str:
    """Return the one spelling of a pair: ``BTC/USDT``, ``btc-usdt``, ``BTCUSDT`` -> ``BTCUSDT``."""
    return _SEPARATORS.sub("", symbol).upper()


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """Return (base, quote) of a normalized symbol, or None when no known quote ends it."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return None


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=12).hexdigest()


def fill_content_key(user_id: str, fill: Fill) -> str:
    """Return what makes two fills the same execution when the source gives no trade id."""
    return _digest(user_id, fill.symbol, fill.side, fill.time, repr(fill.price), repr(fill.quantity))


def fill_fingerprint(user_id: str, fill: Fill, occurrence: int, venue: str = "") -> str:
    """Return a fill's stable id: the exchange's trade id when there is one, else its content.

    ``occurrence`` counts earlier identical fills in the same file (0 for the first), so two
    genuinely identical fills in one export are both kept, while the same file imported twice,
    or two overlapping exports, give the same ids and are stored once.
    """
    if fill.exchange_id:
        return "f-" + _digest(user_id, venue, fill.exchange_id)
    return "f-" + _digest(fill_content_key(user_id, fill), occurrence)


def payment_fingerprint(user_id: str, payment: Payment, occurrence: int) -> str:
    """Return a payment's stable id (a ``t-`` id: it is journalled as a record of its own)."""
    if payment.external_id:
        return "t-" + _digest(user_id, payment.kind, payment.external_id)
    return "t-" + _digest(
        user_id, payment.kind, payment.symbol, payment.time, repr(payment.amount), payment.asset, occurrence
    )


def entry_fingerprint(user_id: str, entry: TradeEntry, occurrence: int) -> str:
    """Return a whole trade's stable id: its own id when it has one, else its content."""
    if entry.external_id:
        return "t-" + _digest(user_id, entry.external_id)
    return "t-" + _digest(
        user_id,
        entry.symbol,
        entry.side,
        entry.entry_time,
        repr(entry.entry_price),
        repr(entry.quantity),
        entry.exit_time,
        repr(entry.exit_price),
        occurrence,
    )
