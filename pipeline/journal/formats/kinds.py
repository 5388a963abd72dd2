"""Files that are not trade histories, recognised from their header so the trader is told what the
file is instead of being asked to map its columns: statements of balance changes, deposits and
withdrawals, funding logs, order (not fill) histories, and other tools' ledgers.

``what_kind(keys)`` returns the sentence the importer shows ("a Binance deposit history, not
trades: ...") or None. Pure; a header's keys are ``layout.header_keys``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    signature: tuple[str, ...]
    says: str


KINDS: tuple[Kind, ...] = (
    Kind(
        ("utc_time", "account", "operation", "coin", "change"),
        "a Binance transaction history (a statement of balance changes, one row per asset and operation), "
        "not trades: export Orders > Spot Order > Trade History instead",
    ),
    Kind(
        ("date(utc)", "coin", "network", "amount", "address", "txid", "status"),
        "a Binance deposit or withdrawal history, not trades",
    ),
    Kind(
        ("date", "pair", "type", "sell", "buy", "price", "inverse_price", "status"),
        "a Binance Convert history (conversions at a quoted price), not spot trades",
    ),
    Kind(
        ("date(utc)", "pair", "type", "order_price", "order_amount", "avgtrading_price", "filled", "total", "status"),
        "a Binance order history (orders, with their fills nested under them), not the trade history: "
        "export Orders > Spot Order > Trade History instead",
    ),
    Kind(
        ("date(utc)", "orderno", "pair", "type", "side", "order_price", "order_amount", "executed", "status"),
        "a Binance order history (orders, not fills): export Orders > Spot Order > Trade History instead",
    ),
    Kind(
        ("time", "category", "operation", "order_id", "transaction_id", "primary_asset"),
        "a Binance.US transaction history (a statement of operations), not the trade history: export the "
        "spot trade history instead",
    ),
    Kind(
        ("date_&_time(utc)", "coin", "qty", "type", "account_balance", "description"),
        "a Bybit asset-change history (deposits, transfers, bonuses), not trades",
    ),
    Kind(
        ("type", "coin", "amount", "wallet_balance", "time(utc)"), "a Bybit deposit and withdrawal history, not trades"
    ),
    Kind(
        ("uid", "currency", "contract", "type", "direction", "quantity", "cash_flow", "wallet_balance", "action"),
        "a Bybit transaction log: each trade is split into one row per currency, so its fee and price cannot "
        "be read as one fill; export Orders > Spot > Trade History instead",
    ),
    Kind(
        ("portfolio", "type", "amount", "balance", "amount/balance_unit", "transfer_id", "trade_id"),
        "a Coinbase Pro account statement (balance changes; a trade is two match rows and a fee row): "
        "export the Fills report instead",
    ),
    Kind(
        ("txid", "refid", "time", "type", "asset", "amount", "fee", "balance"),
        "a Kraken ledger (balance changes): export Trades instead",
    ),
    Kind(("id", "amount", "currency", "confirmations", "lastupdated", "txid"), "a Bittrex deposit history, not trades"),
    Kind(
        ("uuid", "amount", "currency", "cryptoaddress", "txid", "confirmations"),
        "a Bittrex deposit history, not trades",
    ),
    Kind(("paymentuuid", "currency", "amount", "address", "txcost"), "a Bittrex withdrawal history, not trades"),
    Kind(
        ("uuid", "amount", "currency", "address", "txid", "txcost", "state"), "a Bittrex withdrawal history, not trades"
    ),
    Kind(
        ("date", "currency", "type", "address", "memo/tag", "txid", "amount"),
        "a Bittrex deposit and withdrawal history, not trades",
    ),
    Kind(
        ("timestamp(utc)", "transaction_description", "currency", "amount", "native_currency", "transaction_kind"),
        "a Crypto.com app transaction log (purchases, conversions and rewards as balance changes), not exchange fills",
    ),
    Kind(
        ("transaction", "type", "usd_equivalent", "details", "date_/_time(utc)"),
        "a Nexo transaction statement (interest, deposits, exchanges), not trades",
    ),
    Kind(
        ("cryptocurrency", "amount", "transaction_type", "confirmed_at"), "a BlockFi transaction statement, not trades"
    ),
    Kind(
        ("trade_id", "date", "buy_quantity", "buy_currency", "sold_quantity", "sold_currency", "rate_amount"),
        "a BlockFi trade report (conversions between two currencies at a rate): map its columns to import it",
    ),
    Kind(
        ("transacttime", "transacttype", "amount", "fee", "transactstatus", "walletbalance"),
        "a BitMEX wallet history (realized P&L, deposits, withdrawals), not trades",
    ),
    Kind(
        ("type", "buy", "cur.", "sell", "fee", "exchange", "group", "comment", "date"),
        "a CoinTracking export (another tool's ledger, with three columns all named Cur.)",
    ),
    Kind(
        ("type", "buy_quantity", "buy_asset", "sell_quantity", "sell_asset", "fee_quantity", "wallet", "timestamp"),
        "a BittyTax transaction-records file (a tax tool's ledger)",
    ),
    Kind(
        ("timestamp(utc)", "type", "internal_id", "platform", "record_type", "asset", "amount"),
        "a CoinLedger export (a tax tool's ledger of debits and credits)",
    ),
    Kind(
        ("type", "location", "currency", "amount", "fee", "fee_currency", "description", "timestamp"),
        "rotki generic events (deposits and withdrawals), not trades",
    ),
    Kind(
        ("location", "spend_currency", "receive_currency", "receive_amount", "spend_amount", "timestamp"),
        "rotki generic trades (spend and receive amounts, assets as CAIP-19 ids): another tool's format, "
        "not an exchange export",
    ),
    Kind(
        ("date", "destination", "destination_amount", "origin", "origin_amount", "origin_currency", "status"),
        "an Uphold transaction history (transfers between cards and currencies), not trades",
    ),
    Kind(
        ("id", "status", "timestamp", "rate", "minerfee", "inputamount", "inputcurrency", "outputamount"),
        "a ShapeShift swap history (swaps between wallets), not exchange trades",
    ),
    Kind(
        ("blockpit_id", "timestamp", "transaction_type", "outgoing_asset", "incoming_asset"),
        "a Blockpit export (a tax tool's ledger)",
    ),
    Kind(
        ("date", "received_quantity", "received_currency", "sent_quantity", "sent_currency", "tag"),
        "a CoinTracker-format export (received and sent amounts), another tool's format",
    ),
    Kind(
        ("transaction_type", "date", "amount_debited", "debit_currency", "amount_credited", "credit_currency"),
        "a Shakepay transaction history (funding, conversions and withdrawals as debits and credits)",
    ),
)


def what_kind(keys: set[str]) -> str | None:
    """Return what a file with these header keys is, when it is a known file of another kind."""
    for kind in KINDS:
        if all(k in keys for k in kind.signature):
            return kind.says
    return None
