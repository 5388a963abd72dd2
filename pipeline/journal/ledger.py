"""FIFO pairing of fills into lots and round trips (pure; the normalizer keeps the state).

A fill on the side of the open position (or with no position) opens a lot. A fill on the other
side closes the oldest lots first; what is left of it opens a lot the other way (a flip). Each
(lot, closing fill) match is one round trip with its own P&L, net of the fees of the matched
quantity. Ids are derived from fill ids, so replaying the same fills gives the same records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.messages import Side, Trade

# Quantities below this fraction of a fill are float dust, not a position.
DUST = 1e-9


@dataclass(slots=True)
class LedgerFill:
    """A stored fill: ``fee_quote`` is its whole fee in the quote currency, None if unknown."""

    fill_id: str
    seq: int
    user_id: str
    symbol: str
    side: Side
    price: float
    quantity: float
    time: int
    fee_quote: float | None
    source: str


@dataclass(slots=True)
class Lot:
    """An open lot; ``fee_per_unit`` is the opening fee per unit in quote currency (None if unknown)."""

    lot_id: str
    user_id: str
    symbol: str
    side: Side
    price: float
    quantity: float
    remaining: float
    time: int
    seq: int
    fee_per_unit: float | None


def lot_id_of(fill_id: str) -> str:
    return "lot-" + fill_id.removeprefix("f-")


def round_trip_id(lot_id: str, fill_id: str) -> str:
    return "rt-" + hashlib.blake2b(f"{lot_id}\x1f{fill_id}".encode(), digest_size=12).hexdigest()


def _lot_record(lot: Lot, source: str) -> Trade:
    fees = None if lot.fee_per_unit is None else lot.fee_per_unit * lot.quantity
    return Trade(
        trade_id=lot.lot_id,
        user_id=lot.user_id,
        symbol=lot.symbol,
        side=lot.side,
        entry_price=lot.price,
        quantity=lot.quantity,
        entry_time=lot.time,
        source=source,
        kind="lot",
        fees=fees,
        lot_id=lot.lot_id,
        fill_ids=("f-" + lot.lot_id.removeprefix("lot-"),),
    )


def _round_trip(lot: Lot, fill: LedgerFill, qty: float, fill_fee_per_unit: float | None) -> Trade:
    direction = 1.0 if lot.side == "BUY" else -1.0
    gross = (fill.price - lot.price) * qty * direction
    known = [f * qty for f in (lot.fee_per_unit, fill_fee_per_unit) if f is not None]
    fees = sum(known) if len(known) == 2 else None
    return Trade(
        trade_id=round_trip_id(lot.lot_id, fill.fill_id),
        user_id=lot.user_id,
        symbol=lot.symbol,
        side=lot.side,
        entry_price=lot.price,
        exit_price=fill.price,
        quantity=qty,
        entry_time=lot.time,
        exit_time=fill.time,
        pnl=gross - sum(known),
        source=fill.source,
        kind="round_trip",
        fees=fees,
        lot_id=lot.lot_id,
        fill_ids=("f-" + lot.lot_id.removeprefix("lot-"), fill.fill_id),
    )


def apply_fills(lots: list[Lot], fills: list[LedgerFill]) -> tuple[list[Lot], list[Trade]]:
    """Apply ``fills`` (in time order) to the open ``lots`` (oldest first) of one user and symbol.

    Return the lots still open and the new records (lots opened, round trips closed).
    """
    open_lots = list(lots)
    records: list[Trade] = []
    for fill in fills:
        fee_per_unit = None if fill.fee_quote is None else fill.fee_quote / fill.quantity
        left = fill.quantity
        while open_lots and open_lots[0].side != fill.side and left > fill.quantity * DUST:
            lot = open_lots[0]
            qty = min(lot.remaining, left)
            records.append(_round_trip(lot, fill, qty, fee_per_unit))
            lot.remaining -= qty
            left -= qty
            if lot.remaining <= lot.quantity * DUST:
                lot.remaining = 0.0
                open_lots.pop(0)
        if left > fill.quantity * DUST:
            lot = Lot(
                lot_id_of(fill.fill_id),
                fill.user_id,
                fill.symbol,
                fill.side,
                fill.price,
                left,
                left,
                fill.time,
                fill.seq,
                fee_per_unit,
            )
            open_lots.append(lot)
            records.append(_lot_record(lot, fill.source))
    return open_lots, records
