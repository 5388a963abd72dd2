"""normalizer: ``raw-trades`` -> ``normalized-trades``, one Trade per whole trade, lot or round trip.

Each raw payload is parsed by the same parser that checked it at the source; a payload that
breaks a rule is dead-lettered on its own. Fills go into a SQLite ledger once each (by their
fingerprint, so re-imports and overlapping exports add nothing), are paired FIFO per user and
symbol, and the new lots and round trips are published. Fills that arrive older than what the
ledger already holds for that user and symbol make it rebuild that pair's FIFO from all its fills,
republish every record and retract (``void``) the ones that no longer exist. Each fill's row keeps
the records it made, so a raw trade delivered again (its outputs lost in a crash after the ledger
committed) publishes them again; downstream upserts by id make that harmless. Fees are converted
to the quote currency from the fill's own price or, for a third asset such as BNB, from the
market data the desk holds at the fill's time; otherwise the fee stays unknown. A stock fill in
another currency than the account's is converted at its time, or dead-lettered when no rate is
held (``pipeline.journal.currency``).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.currency import to_account_currency
from pipeline.journal.fills import Fill, Payment, TradeEntry, split_symbol
from pipeline.journal.formats import parse_row
from pipeline.journal.ledger import DUST, LedgerFill, Lot, apply_fills
from pipeline.journal.payloads import PARSERS, TRADE_PARSERS
from pipeline.messages import Message, RawTrade, Trade, encode
from pipeline.runner import Stage
from pipeline.topics import RAW_TRADES
from storage import ledger, market
from storage.db import Database

RATE_MAX_AGE_MS = 24 * 3_600_000
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Parsed:
    raw: RawTrade
    item: Fill | TradeEntry | Payment


def parse_raw(raw: RawTrade) -> Fill | TradeEntry | Payment:
    """Parse a raw trade's payload with its format's parser; raise ``BadMessageError``."""
    if not isinstance(raw.payload, dict):
        raise BadMessageError([Violation("payload", str(raw.payload)[:80], "a JSON object of field -> value")])
    parser = PARSERS.get(raw.format) or TRADE_PARSERS.get(raw.format)
    if parser is not None:
        return parser(raw.payload)
    return parse_row(raw.format, raw.payload, raw.mapping, now_ms=raw.received_at)


def _entry_trade(raw: RawTrade, e: TradeEntry) -> Trade:
    return Trade(
        trade_id=raw.raw_id,
        user_id=raw.user_id,
        symbol=e.symbol,
        side=e.side,
        entry_price=e.entry_price,
        exit_price=e.exit_price,
        quantity=e.quantity,
        entry_time=e.entry_time,
        exit_time=e.exit_time,
        pnl=e.pnl,
        notes=e.notes,
        source=raw.source,
        kind="trade",
        fees=e.fees,
        stop_loss=e.stop_loss,
        tags=e.tags,
        setup=e.setup,
        emotion=e.emotion,
    )


def _payment_trade(raw: RawTrade, p: Payment) -> Trade:
    return Trade(
        trade_id=raw.raw_id,
        user_id=raw.user_id,
        symbol=p.symbol,
        side="BUY" if p.amount > 0 else "SELL",
        entry_price=1.0,
        quantity=abs(p.amount),
        entry_time=p.time,
        pnl=p.amount,
        notes=f"{p.kind.replace('_', ' ')} in {p.asset}",
        source=raw.source,
        kind=p.kind,
    )


def _void(trade_id: str, user_id: str, symbol: str) -> Trade:
    return Trade(
        trade_id=trade_id,
        user_id=user_id,
        symbol=symbol,
        side="BUY",
        entry_price=1.0,
        quantity=1.0,
        entry_time=1,
        source="normalizer",
        void=True,
    )


class Normalizer(Stage):
    """Runs on its runner's thread; all ledger writes of a batch are one transaction."""

    name: ClassVar[str] = "normalizer"
    inputs: ClassVar[tuple[str, ...]] = (RAW_TRADES,)

    def __init__(self, db: Database, account_currency: str | None = None) -> None:
        self.db = db
        self.account_currency = account_currency

    def prepare(self, message: Message) -> Parsed:
        assert isinstance(message, RawTrade)
        item = parse_raw(message)
        if isinstance(item, Fill) and item.currency and item.currency != self.account_currency:
            conn = self.db.reader().conn
            item = to_account_currency(
                item, self.account_currency, lambda s, t: market.price_at(conn, s, t, RATE_MAX_AGE_MS)
            )
        return Parsed(message, item)

    def process_batch(self, messages: list[Parsed]) -> list[Message]:
        return self.db.write(lambda db: self._apply(db.conn, messages))

    # -- inside the write transaction ------------------------------------------------------

    def _apply(self, conn: sqlite3.Connection, items: list[Parsed]) -> list[Message]:
        out: list[Message] = []
        entries = {p.raw.raw_id: p for p in items if isinstance(p.item, (TradeEntry, Payment))}
        fills = {p.raw.raw_id: p for p in items if isinstance(p.item, Fill)}
        if entries:
            known = ledger.existing(conn, "journal_ledger_records", "trade_id", entries)
            out.extend(_republish(conn, known))
            trades = [
                _payment_trade(p.raw, p.item) if isinstance(p.item, Payment) else _entry_trade(p.raw, p.item)  # type: ignore[arg-type]
                for rid, p in entries.items()
                if rid not in known
            ]
            _record(conn, trades)
            out.extend(trades)
        if fills:
            out.extend(self._apply_fills(conn, fills))
        return out

    def _apply_fills(self, conn: sqlite3.Connection, fills: dict[str, Parsed]) -> list[Message]:
        known = ledger.existing(conn, "journal_fills", "fill_id", fills)
        out: list[Message] = list(_republish_fills(conn, known))
        new = [p for rid, p in fills.items() if rid not in known]
        if not new:
            return out
        seq = ledger.last_seq(conn)
        by_key: dict[Key, list[LedgerFill]] = defaultdict(list)
        rows: list[list[Any]] = []
        rates = _Rates(conn)
        for p in new:
            f: Fill = p.item  # type: ignore[assignment]
            seq += 1
            fee_quote = _fee_in_quote(f, rates)
            by_key[(p.raw.user_id, f.symbol)].append(
                LedgerFill(
                    p.raw.raw_id,
                    seq,
                    p.raw.user_id,
                    f.symbol,
                    f.side,
                    f.price,
                    f.quantity,
                    f.time,
                    fee_quote,
                    p.raw.source,
                )
            )
            rows.append(
                [
                    p.raw.raw_id,
                    seq,
                    p.raw.user_id,
                    f.symbol,
                    f.side,
                    f.price,
                    f.quantity,
                    f.time,
                    f.fee,
                    f.fee_asset,
                    fee_quote,
                    f.exchange_id,
                    p.raw.source,
                    p.raw.format,
                    "",
                ]
            )
        extended: list[Trade] = []
        rebuilt: list[Key] = []
        for key, key_fills in by_key.items():
            key_fills.sort(key=lambda f: (f.time, f.seq))
            last = ledger.last_fill_time(conn, key)
            if last is None or key_fills[0].time >= last:
                # The usual case: newer fills continue the FIFO from the stored open lots.
                lots, records = apply_fills(_load_lots(conn, key), key_fills)
                _save_lots(conn, key, lots)
                extended.extend(records)
            else:
                rebuilt.append(key)
        made = _by_fill(extended)
        for row in rows:
            row[-1] = made.get(row[0], "")
        ledger.add_fills(conn, rows)
        out.extend(extended)
        new_ids = {p.raw.raw_id for p in new}
        for key in rebuilt:
            out.extend(_rebuild(conn, key, new_ids))
        return out


def _record(conn: sqlite3.Connection, trades: list[Trade]) -> None:
    """Remember the whole trades published, by id (see ``_republish``)."""
    ledger.record_trades(conn, [(t.trade_id, t.user_id, t.symbol, t.trade_id, encode(t).decode()) for t in trades])


def _republish(conn: sqlite3.Connection, raw_ids: set[str]) -> list[Trade]:
    """Return the whole trades of raw trades seen before: a redelivery means their outputs may have
    been lost (the ledger commits before the runner flushes), and downstream upserts make it harmless."""
    return [Trade.model_validate_json(r) for r in ledger.trade_records(conn, raw_ids)]


def _by_fill(records: list[Trade]) -> dict[str, str]:
    """The records each fill made (a lot's opening fill, a round trip's closing fill), one per line."""
    made: dict[str, list[str]] = defaultdict(list)
    for t in records:
        made[t.fill_ids[-1]].append(encode(t).decode())
    return {fill_id: "\n".join(lines) for fill_id, lines in made.items()}


def _republish_fills(conn: sqlite3.Connection, fill_ids: set[str]) -> list[Trade]:
    """Return the lots and round trips the fills seen before made, as ``_republish`` does for trades."""
    return [
        Trade.model_validate_json(line)
        for records in ledger.fill_records(conn, fill_ids)
        for line in records.split("\n")
        if line
    ]


def _load_lots(conn: sqlite3.Connection, key: Key) -> list[Lot]:
    return [Lot(*r) for r in ledger.lots(conn, key)]


def _save_lots(conn: sqlite3.Connection, key: Key, lots: list[Lot]) -> None:
    ledger.replace_lots(
        conn,
        key,
        [
            (x.lot_id, x.user_id, x.symbol, x.side, x.price, x.quantity, x.remaining, x.time, x.seq, x.fee_per_unit)
            for x in lots
            if x.remaining > x.quantity * DUST
        ],
    )


def _rebuild(conn: sqlite3.Connection, key: Key, new_ids: set[str]) -> list[Trade]:
    """Older fills arrived: replay every fill of this user and symbol, retract what vanished.

    What existed before is what the same replay without this batch's fills makes."""
    fills = [LedgerFill(*r) for r in ledger.fills(conn, key)]
    _, before = apply_fills([], [f for f in fills if f.fill_id not in new_ids])
    lots, records = apply_fills([], fills)
    _save_lots(conn, key, lots)
    made = _by_fill(records)
    ledger.set_fill_records(conn, [(made.get(f.fill_id, ""), f.fill_id) for f in fills])
    gone = {t.trade_id for t in before} - {t.trade_id for t in records}
    return [_void(i, *key) for i in sorted(gone)] + records


class _Rates:
    """Prices of third assets (BNB...) in a quote currency at a time, from the stored market data."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cache: dict[tuple[str, int], float | None] = {}

    def price(self, symbol: str, time_ms: int) -> float | None:
        minute = time_ms // 60_000
        if (symbol, minute) not in self.cache:
            self.cache[(symbol, minute)] = market.price_at(self.conn, symbol, time_ms, RATE_MAX_AGE_MS)
        return self.cache[(symbol, minute)]


def _fee_in_quote(fill: Fill, rates: _Rates) -> float | None:
    if fill.fee is None or fill.fee == 0:
        return 0.0
    pair = (fill.symbol, fill.currency) if fill.currency else split_symbol(fill.symbol)
    if pair is None or fill.fee_asset is None:
        return None
    base, quote = pair
    asset = fill.fee_asset.upper()
    if asset == quote:
        return fill.fee
    if asset == base:
        return fill.fee * fill.price
    rate = rates.price(asset + quote, fill.time)
    if rate is None and quote in ("USDT", "USDC", "FDUSD", "BUSD"):
        rate = rates.price(asset + "USDT", fill.time)  # dollar stablecoins taken at par
    return None if rate is None else fill.fee * rate
