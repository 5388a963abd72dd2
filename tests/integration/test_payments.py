"""Derivatives funding payments and booked P&L: read from Binance's futures transaction history and
Bybit's derivatives history as records of their own, journalled beside the trades but outside trade
statistics and behaviour rules, each once however often the file is imported."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from pipeline.errors import BadMessageError
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.fills import Fill, Payment
from pipeline.journal.formats import detect_format, row_parser
from pipeline.journal.importer import check_file
from pipeline.messages import EnrichedTrade, RawTrade, Trade
from pipeline.stages.behaviour import BehaviourStage
from pipeline.stages.journal_store import JournalStore
from pipeline.stages.normalizer import Normalizer
from storage import journal
from storage.db import Database

NOW = int(time.time() * 1000)
BINANCE = "Date(UTC),type,Amount,Asset,Symbol,Transaction ID"
BYBIT = (
    "Time,Currency,Contract,Type,Direction,Quantity,Position,Filled Price,Funding,Fee Paid,Cash Flow,Change,"
    "Wallet Balance,Fee Rate,Trade ID,Order ID"
)


def parse(header: str, line: str) -> Fill | Payment:
    cols = header.split(",")
    fmt = detect_format(cols)
    assert fmt is not None
    item = row_parser(fmt, cols)(dict(zip(cols, line.split(","))), NOW)
    assert isinstance(item, (Fill, Payment))
    return item


def test_binance_funding_and_realized_pnl_rows_are_payments_and_other_types_are_named() -> None:
    funding = parse(BINANCE, "2025-01-05 08:00:00,FUNDING_FEE,-0.41230000,USDT,BTCUSDT,9001")
    assert funding == Payment("funding", "BTCUSDT", -0.4123, "USDT", 1736064000000, "9001")
    booked = parse(BINANCE, "2025-01-05 09:12:00,REALIZED_PNL,12.5,USDT,ETHUSDT,9002")
    assert (booked.kind, booked.amount, booked.symbol) == ("realized_pnl", 12.5, "ETHUSDT")  # type: ignore[union-attr]
    with pytest.raises(BadMessageError) as info:
        parse(BINANCE, "2025-01-05 09:12:00,COMMISSION,-0.02,USDT,ETHUSDT,9003")
    assert info.value.violations[0].field == "type" and "FUNDING_FEE or REALIZED_PNL" in info.value.violations[0].rule
    with pytest.raises(BadMessageError, match="not 0"):
        parse(BINANCE, "2025-01-05 09:12:00,FUNDING_FEE,0,USDT,ETHUSDT,9004")


def test_bybit_settlements_are_funding_and_trade_rows_are_fills() -> None:
    settlement = parse(BYBIT, "2025-01-05 08:00:00,USDT,BTCUSDT,SETTLEMENT,--,0,0.01,95000,0.52,0,0,-0.52,999,0,s-1,--")
    assert settlement == Payment("funding", "BTCUSDT", -0.52, "USDT", 1736064000000, "s-1")
    fill = parse(
        BYBIT, "2025-01-05 09:00:00,USDT,BTCUSDT,TRADE,BUY,0.01,0.01,95000,0,0.5225,0,-0.5225,998,0.00055,t-1,o-1"
    )
    assert isinstance(fill, Fill) and (fill.side, fill.quantity, fill.fee, fill.exchange_id) == (
        "BUY",
        0.01,
        0.5225,
        "t-1",
    )


def test_payments_are_journalled_as_their_own_kind_outside_trade_statistics(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    user = f"pay-{uuid.uuid4().hex[:8]}"
    data = (
        f"{BINANCE}\n2025-01-05 08:00:00,FUNDING_FEE,-0.4123,USDT,BTCUSDT,9001\n"
        "2025-01-05 16:00:00,FUNDING_FEE,0.2,USDT,BTCUSDT,9005\n"
        "2025-01-05 09:12:00,REALIZED_PNL,12.5,USDT,BTCUSDT,9002\n"
    ).encode()
    report = check_file(data, user_id=user, db=db)
    assert (report.format, report.accepted, report.rejected_rows) == ("binance-futures-income", 3, 0)
    cols = BINANCE.split(",")
    raws = [
        RawTrade(
            raw_id=f"t-{i}",
            user_id=user,
            source="csv",
            format="binance-futures-income",
            received_at=NOW,
            payload=dict(zip(cols, line.split(","))),
        )
        for i, line in enumerate(data.decode().splitlines()[1:])
    ]
    normalizer = Normalizer(db)
    records = normalizer.process_batch([normalizer.prepare(r) for r in raws])
    assert [(t.kind, t.pnl, t.quantity, t.notes) for t in records if isinstance(t, Trade)] == [
        ("funding", -0.4123, 0.4123, "funding in USDT"),
        ("funding", 0.2, 0.2, "funding in USDT"),
        ("realized_pnl", 12.5, 12.5, "realized pnl in USDT"),
    ]
    assert BehaviourStage(db, BehaviourRules()).process_batch(records) == []  # money, not trades
    JournalStore(db).process_batch([EnrichedTrade(**t.model_dump(), context={}) for t in records])
    stored = journal.trades(db, user)
    assert sorted(stored["kind"]) == ["funding", "funding", "realized_pnl"]
    assert journal.closed_trades(db, user).empty  # not trades: the statistics leave them out
    assert journal.open_positions(db, user).empty
    db.close()
