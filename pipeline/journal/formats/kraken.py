"""Kraken trade history (``trades.csv``): the short and the long header; pairs in Kraken's own
asset codes (``XXBTZUSD``, ``XETHZEUR``) or with a slash (``ETH/USD``). Times are UTC."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.journal.fills import Fill
from pipeline.journal.formats.layout import Layout, Spec, SpecFill

_CODES = {"XBT": "BTC", "XXBT": "BTC", "XDG": "DOGE", "XXDG": "DOGE", "XETH": "ETH", "ZUSD": "USD", "ZEUR": "EUR"}
_LEGACY = re.compile(r"([XZ][A-Z]{3})([XZ][A-Z]{3})")


def kraken_pair(text: str) -> str:
    """Return ``BASE/QUOTE`` of a Kraken pair code (``XXBTZUSD`` -> ``BTC/USD``), else the text."""
    s = text.strip().upper()
    m = _LEGACY.fullmatch(s)
    if m:
        base, quote = (_CODES.get(p, p[1:]) for p in (m[1], m[2]))
        return f"{base}/{quote}"
    for code, asset in (("XBT", "BTC"), ("XDG", "DOGE")):
        if s.startswith(code):
            return asset + "/" + s[len(code) :] if len(s) > len(code) else s
    return s


class _Kraken(SpecFill):
    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        column = self.col("pair")
        pair = row.get(column)
        if isinstance(pair, str):
            row = {**row, column: kraken_pair(pair)}
        return super().__call__(row, now_ms)


SPEC = Spec(
    pair="pair",
    side="type",
    price="price",
    qty="vol",
    fee="fee",
    fee_default="quote",
    time="time",
    exchange_id="txid",
)

LAYOUTS = (
    Layout(
        "kraken-trades",
        "Kraken trade history",
        ("txid", "ordertxid", "pair", "time", "type", "price", "cost", "fee", "vol"),
        build=lambda header, options: _Kraken(header, SPEC, options),
    ),
)
