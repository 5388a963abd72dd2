"""Stocks and multi-currency accounts: a symbol without a quote asset takes the account currency;
a fill in another currency is converted at its own time with a rate the desk holds, or refused with
the pair and time it needed (never a silent 1:1), on a real SQLite file through the normalizer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.errors import BadMessageError
from pipeline.journal.currency import rate_between, to_account_currency
from pipeline.journal.fills import Fill
from pipeline.messages import RawTrade, Trade
from pipeline.stages.normalizer import Normalizer
from storage import market
from storage.db import Database

T = 1_736_155_801_000  # 2025-01-06 09:30:01 UTC
IBKR_HEADER = (
    "ClientAccountID",
    "CurrencyPrimary",
    "Symbol",
    "DateTime",
    "Quantity",
    "TradePrice",
    "IBCommission",
    "IBCommissionCurrency",
    "Buy/Sell",
    "TradeID",
)


def ibkr(currency: str, trade_id: str) -> RawTrade:
    cells = ("U1", currency, "SAP", "20250106;093001", "10", "250", "-2", currency, "BUY", trade_id)
    return RawTrade(
        raw_id=f"f-{trade_id}",
        user_id="u",
        source="csv",
        format="ibkr-flex",
        received_at=int(time.time() * 1000),
        payload=dict(zip(IBKR_HEADER, cells)),
        mapping={"currency": "USD"},
    )


def test_rates_direct_inverse_and_through_a_dollar_stablecoin() -> None:
    held = {"EURUSD": 1.04, "USDJPY": 157.0, "GBPUSDT": 1.25}
    rate = lambda s, t: held.get(s)  # noqa: E731 - a lookup table as the rate source
    assert rate_between("EUR", "USD", T, rate) == 1.04
    assert rate_between("JPY", "USD", T, rate) == pytest.approx(1 / 157.0)
    assert rate_between("GBP", "USD", T, rate) == 1.25
    assert rate_between("CHF", "USD", T, rate) is None


def test_a_fill_in_another_currency_is_converted_or_refused_never_one_to_one() -> None:
    fill = Fill("SAP", "BUY", 250.0, 10.0, T, 2.0, "EUR", "7", "EUR")
    converted = to_account_currency(fill, "USD", lambda s, t: 1.04 if s == "EURUSD" else None)
    assert (converted.price, converted.fee, converted.fee_asset, converted.currency) == (260.0, 2.08, "USD", "USD")
    with pytest.raises(BadMessageError) as info:
        to_account_currency(fill, "USD", lambda s, t: None)
    (v,) = info.value.violations
    assert (v.field, v.value) == ("currency", "EUR") and "EUR->USD rate at 2025-01-06 09:30 UTC" in v.rule


def test_the_normalizer_converts_at_the_fills_time_from_stored_market_data(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    db.write(lambda d: market.store_ticks(d.conn, [("EURUSDT", T - 30_000, 1.03, None, None, None, None, None, None)]))
    stage = Normalizer(db, "USD")
    usd = stage.prepare(ibkr("USD", "1"))
    assert isinstance(usd.item, Fill) and (usd.item.price, usd.item.currency) == (250.0, "USD")
    eur = stage.prepare(ibkr("EUR", "2"))
    assert isinstance(eur.item, Fill)
    assert (eur.item.price, eur.item.fee, eur.item.currency) == (pytest.approx(257.5), pytest.approx(2.06), "USD")
    with pytest.raises(BadMessageError, match="CHF->USD rate"):
        stage.prepare(ibkr("CHF", "3"))
    (lot,) = stage.process_batch([usd])
    assert isinstance(lot, Trade)
    assert (lot.symbol, lot.entry_price, lot.fees) == ("SAP", 250.0, 2.0)  # the fee kept in the account currency
    db.close()
