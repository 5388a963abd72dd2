"""FIFO pairing of fills into lots and round trips."""

from __future__ import annotations

import pytest

from pipeline.journal.ledger import LedgerFill, apply_fills, lot_id_of
from pipeline.messages import Side

T0 = 1_731_767_700_000


def fill(n: int, side: Side, price: float, qty: float, fee: float | None = 0.0, t: int | None = None) -> LedgerFill:
    return LedgerFill(f"f-{n}", n, "u", "SOLUSDT", side, price, qty, T0 + n * 1000 if t is None else t, fee, "csv")


def test_fifo_closes_the_oldest_lots_first_and_splits_partial_fills() -> None:
    lots, records = apply_fills(
        [], [fill(1, "BUY", 100.0, 1.0), fill(2, "BUY", 110.0, 1.0), fill(3, "SELL", 120.0, 1.5)]
    )
    trips = [r for r in records if r.kind == "round_trip"]
    assert [(t.entry_price, t.quantity, t.pnl) for t in trips] == [(100.0, 1.0, 20.0), (110.0, 0.5, 5.0)]
    assert [t.lot_id for t in trips] == [lot_id_of("f-1"), lot_id_of("f-2")]
    assert len(lots) == 1 and lots[0].lot_id == lot_id_of("f-2") and lots[0].remaining == pytest.approx(0.5)
    assert [r.kind for r in records] == ["lot", "lot", "round_trip", "round_trip"]


def test_a_sell_beyond_the_position_flips_into_a_short_lot_and_shorts_close_with_buys() -> None:
    lots, records = apply_fills([], [fill(1, "BUY", 100.0, 1.0), fill(2, "SELL", 90.0, 3.0), fill(3, "BUY", 80.0, 2.0)])
    trips = [r for r in records if r.kind == "round_trip"]
    assert [(t.side, t.pnl) for t in trips] == [("BUY", -10.0), ("SELL", 20.0)]
    assert lots == []


def test_fees_are_split_by_matched_quantity_and_unknown_fees_leave_fees_unknown() -> None:
    _, records = apply_fills([], [fill(1, "BUY", 100.0, 2.0, fee=0.2), fill(2, "SELL", 110.0, 1.0, fee=0.11)])
    trip = records[-1]
    assert trip.fees == pytest.approx(0.1 + 0.11)
    assert trip.pnl == pytest.approx(10.0 - 0.21)
    _, records = apply_fills([], [fill(1, "BUY", 100.0, 1.0, fee=None), fill(2, "SELL", 110.0, 1.0, fee=0.11)])
    assert records[-1].fees is None and records[-1].pnl == pytest.approx(10.0 - 0.11)


def test_replaying_the_same_fills_gives_the_same_ids() -> None:
    fills = [fill(1, "BUY", 100.0, 1.0), fill(2, "SELL", 101.0, 0.4), fill(3, "SELL", 102.0, 0.6)]
    first = [r.trade_id for r in apply_fills([], fills)[1]]
    again = [
        r.trade_id
        for r in apply_fills(
            [], [fill(1, "BUY", 100.0, 1.0), fill(2, "SELL", 101.0, 0.4), fill(3, "SELL", 102.0, 0.6)]
        )[1]
    ]
    assert first == again and len(set(first)) == len(first)


def test_continuing_from_stored_lots_equals_one_pass() -> None:
    fills = [fill(i, "BUY" if i % 3 else "SELL", 100.0 + i, 1.0 + (i % 2)) for i in range(1, 12)]
    one_pass = apply_fills([], [fill(i, "BUY" if i % 3 else "SELL", 100.0 + i, 1.0 + (i % 2)) for i in range(1, 12)])
    lots, first = apply_fills([], fills[:5])
    rest_lots, rest = apply_fills(lots, fills[5:])
    assert [r.trade_id for r in first + rest] == [r.trade_id for r in one_pass[1]]
    assert [(x.lot_id, round(x.remaining, 9)) for x in rest_lots] == [
        (x.lot_id, round(x.remaining, 9)) for x in one_pass[0]
    ]
