"""Fills of a multi-currency account, converted to the account's currency at the fill's time.

A stock fill names its currency (``Fill.currency``: the row's, e.g. an IBKR row in EUR, or the
account's). When it differs from the account currency, its price and a fee charged in that
currency are converted at the fill's own time with a rate the desk holds (``rate(symbol, ms)``:
the stored market data of ``EURUSD``, or ``USDEUR`` inverted, or a dollar stablecoin pair such as
``EURUSDT`` for USD). When no rate is held, the fill is refused with the pair and the time it
needed: never a silent 1:1. Pure: the caller supplies the rate lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill

Rate = Callable[[str, int], "float | None"]
_DOLLARS = ("USDT", "USDC")


def rate_between(source: str, target: str, at_ms: int, rate: Rate) -> float | None:
    """How many ``target`` one ``source`` was worth at ``at_ms``, from the rates held, or None."""
    if source == target:
        return 1.0
    direct = rate(source + target, at_ms)
    if direct:
        return direct
    inverse = rate(target + source, at_ms)
    if inverse:
        return 1.0 / inverse
    if target == "USD":
        for dollar in _DOLLARS:
            if proxy := rate(source + dollar, at_ms):
                return proxy
    if source == "USD":
        for dollar in _DOLLARS:
            if proxy := rate(target + dollar, at_ms):
                return 1.0 / proxy
    return None


def to_account_currency(fill: Fill, account: str | None, rate: Rate) -> Fill:
    """Return ``fill`` in ``account`` currency; raise ``BadMessageError`` when no rate is held."""
    if account is None or fill.currency is None or fill.currency == account:
        return fill
    factor = rate_between(fill.currency, account, fill.time, rate)
    if factor is None:
        when = datetime.fromtimestamp(fill.time / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise BadMessageError(
            [
                Violation(
                    "currency",
                    fill.currency,
                    f"a {fill.currency}->{account} rate at {when} (none is held: replay or import "
                    f"{fill.currency}{account} candles, or set ACCOUNT_CURRENCY={fill.currency})",
                )
            ]
        )
    fee = fill.fee
    fee_asset = fill.fee_asset
    if fee is not None and fee_asset == fill.currency:
        fee, fee_asset = fee * factor, account
    return replace(fill, price=fill.price * factor, fee=fee, fee_asset=fee_asset, currency=account)
