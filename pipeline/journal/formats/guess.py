"""A best guess at a column mapping for a file in no known layout, to fill the mapping form in.

Each target field takes the first header column whose name is one of its usual spellings, in the
order listed (``side`` before ``type``, ``price`` before ``rate``). The time format is guessed
from sample values only when exactly one candidate format reads every sample: ``03/04/2024``
fits both month-first and day-first, so no format is filled in and the trader chooses. Nothing
is imported on a guess: the trader sees it in the form and confirms it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pipeline.journal.formats.layout import canon

SYNONYMS: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "pair", "pairs", "market", "instrument", "product", "contract", "exchange", "currency_pair"),
    "side": ("side", "direction", "buy/sell", "action", "trade_type", "transaction_type", "type", "ordertype"),
    "price": (
        "price",
        "filled_price",
        "trade_price",
        "tradeprice",
        "execution_price",
        "avg_price",
        "rate",
        "traded_price",
        "lastpx",
        "priceperunit",
        "fiat_per_btc",
    ),
    "quantity": (
        "quantity",
        "qty",
        "executed",
        "filled_quantity",
        "size",
        "amount",
        "volume",
        "filled",
        "quanty",
        "crypto_amount",
        "lastqty",
        "btc_amount",
        "amount_(currency_1)",
    ),
    "time": (
        "time",
        "date",
        "datetime",
        "timestamp",
        "date(utc)",
        "time(utc)",
        "trade_date",
        "trade_time",
        "created_at",
        "executed_at",
        "closed",
        "transacttime",
        "date/time",
        "server_time",
    ),
    "fee": ("fee", "fees", "commission", "commissionpaid", "fee_amount", "trading_fee", "execcomm"),
    "fee_asset": ("fee_currency", "fee_coin", "feecurrency", "feecoin", "fee_asset", "currency_fee"),
    "exchange_id": ("trade_id", "tradeid", "txid", "transaction_id", "execution_id", "orderuuid", "uuid", "id"),
}
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%d/%m/%Y %I:%M:%S %p",
    "%m/%d/%y %H:%M",
    "%d/%m/%y %H:%M",
    "%d-%m-%y %H:%M:%S",
    "%y-%m-%d %H:%M:%S",
    "%d %b %Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
)


def guess_mapping(header: Sequence[str], samples: Sequence[Sequence[str]] = ()) -> dict[str, str]:
    """Return target field -> column for the fields a column plainly holds, plus ``kind`` ("fill")
    and ``time_format`` when the samples allow exactly one."""
    keys = {canon(h)[0]: h for h in header}
    guess: dict[str, str] = {"kind": "fill"}
    used: set[str] = set()
    for target, names in SYNONYMS.items():
        for name in names:
            column = keys.get(name)
            if column is not None and column not in used:
                guess[target] = column
                used.add(column)
                break
    column = guess.get("time")
    if column is not None and samples:
        index = list(header).index(column)
        values = [r[index].strip() for r in samples if index < len(r) and r[index].strip()]
        fmt = time_format_of(values)
        if fmt:
            guess["time_format"] = fmt
    return guess


def time_format_of(values: Sequence[str]) -> str | None:
    """Return the one candidate format that reads every value, or None (none, or several)."""
    if not values:
        return None
    fits = []
    for fmt in TIME_FORMATS:
        try:
            for v in values:
                datetime.strptime(v, fmt)
        except ValueError:
            continue
        fits.append(fmt)
    return fits[0] if len(fits) == 1 else None
