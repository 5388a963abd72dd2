"""Read models of the trader's journal for the pages and the API, and the trader's annotations.

Reads run on the calling thread's reader connection; ``annotate`` is the one write, through the
database's writer thread. The trader's edits (``journal_annotations``) replace the stored notes,
tags and setup of a trade wherever a trade is read, so a replay of the topics keeps them.

A trade's *time* for the date filters is its exit time when closed, else its entry time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipeline.journal import analytics
from storage.db import Database
from storage.sql import upsert

CLOSED_KINDS = ("trade", "round_trip")
# Open quantity below this fraction of a lot is float dust left by partial closes, not a position.
DUST = 1e-9

TRADE_COLUMNS = [
    "trade_id",
    "user_id",
    "symbol",
    "side",
    "kind",
    "entry_price",
    "exit_price",
    "quantity",
    "open_quantity",
    "entry_time",
    "exit_time",
    "pnl",
    "fees",
    "stop_loss",
    "notes",
    "tags",
    "setup",
    "emotion",
    "lot_id",
    "fill_ids",
    "source",
    "context",
    "stored_at",
    "annotated",
]
POSITION_COLUMNS = ["symbol", "side", "open_quantity", "avg_entry_price", "open_lots", "opened_at", "last_entry_at"]
SUMMARY_KEYS = (
    "fills",
    "trades",
    "open_positions",
    "net_pnl",
    "fees",
    "win_rate",
    "profit_factor",
    "expectancy",
    "max_drawdown",
)

# The journal with the trader's edits applied and each lot's quantity still open.
_JOURNAL = """
WITH rt AS (
    SELECT lot_id, SUM(quantity) AS closed FROM journal_trades
    WHERE user_id = :user_id AND kind = 'round_trip' AND lot_id IS NOT NULL GROUP BY lot_id
), j AS (
    SELECT t.trade_id, t.user_id, t.symbol, t.side, t.kind, t.entry_price, t.exit_price, t.quantity,
        CASE
            WHEN t.kind = 'lot' AND t.quantity > COALESCE(rt.closed, 0) THEN t.quantity - COALESCE(rt.closed, 0)
            WHEN t.kind = 'trade' AND t.exit_price IS NULL THEN t.quantity
            ELSE 0
        END AS open_quantity,
        t.entry_time, t.exit_time, t.pnl, t.fees, t.stop_loss,
        CASE WHEN a.trade_id IS NULL THEN t.notes ELSE a.notes END AS notes,
        CASE WHEN a.trade_id IS NULL THEN t.tags ELSE COALESCE(a.tags, '[]') END AS tags,
        CASE WHEN a.trade_id IS NULL THEN t.setup ELSE a.setup END AS setup,
        t.emotion, t.lot_id, t.fill_ids, t.source, t.context, t.stored_at,
        a.trade_id IS NOT NULL AS annotated,
        COALESCE(t.exit_time, t.entry_time) AS at_time
    FROM journal_trades t
    LEFT JOIN journal_annotations a ON a.trade_id = t.trade_id
    LEFT JOIN rt ON rt.lot_id = t.trade_id
    WHERE t.user_id = :user_id
)
"""


def _json(text: str | None, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Turn journal rows into a DataFrame: lists for tags and fill ids, a dict for context."""
    frame = pd.DataFrame(rows, columns=[*TRADE_COLUMNS, "at_time"]).drop(columns="at_time")
    for column in ("entry_price", "exit_price", "quantity", "open_quantity", "pnl", "fees", "stop_loss"):
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    frame["open_quantity"] = frame["open_quantity"].where(frame["open_quantity"] > DUST * frame["quantity"], 0.0)
    for column in ("entry_time", "exit_time", "stored_at"):
        frame[column] = pd.array(frame[column].tolist(), dtype="Int64")
    for column, kind in (("tags", list), ("fill_ids", list), ("context", dict)):
        frame[column] = pd.Series([kind(_json(v, kind())) for v in frame[column]], index=frame.index, dtype=object)
    frame["annotated"] = frame["annotated"].astype(bool)
    for column in ("notes", "setup", "emotion", "lot_id"):  # None, not NaN, for missing text
        frame[column] = pd.Series(
            [v if isinstance(v, str) else None for v in frame[column]], index=frame.index, dtype=object
        )
    return frame


def _select(
    db: Database,
    user_id: str,
    *,
    symbol: str | None = None,
    tag: str | None = None,
    setup: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    kind: str | Sequence[str] | None = None,
    closed: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    where: list[str] = []
    params: dict[str, Any] = {"user_id": user_id}
    if symbol is not None:
        where.append("symbol = :symbol")
        params["symbol"] = symbol
    if tag is not None:
        where.append(f"EXISTS (SELECT 1 FROM {_tag_values(db)} WHERE tags_each.value = :tag)")
        params["tag"] = tag
    if setup is not None:
        where.append("setup = :setup")
        params["setup"] = setup
    if since_ms is not None:
        where.append("at_time >= :since_ms")
        params["since_ms"] = int(since_ms)
    if until_ms is not None:
        where.append("at_time < :until_ms")
        params["until_ms"] = int(until_ms)
    kinds = [kind] if isinstance(kind, str) else list(kind) if kind is not None else None
    if closed:
        kinds = [k for k in (kinds or CLOSED_KINDS) if k in CLOSED_KINDS]
        where.append("exit_price IS NOT NULL")
    if kinds is not None:
        names = {f"kind{i}": k for i, k in enumerate(kinds)}
        where.append(f"kind IN ({', '.join(':' + n for n in names) or 'NULL'})")
        params.update(names)
    sql = _JOURNAL + "SELECT * FROM j" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY at_time DESC, entry_time DESC, trade_id"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = int(limit)
    return _frame(db.query(sql, params))


def trades(
    db: Database,
    user_id: str,
    *,
    symbol: str | None = None,
    tag: str | None = None,
    setup: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    kind: str | Sequence[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Return the user's journal, newest first, with the trader's edits applied.

    Every filter is optional: ``since_ms <= time < until_ms`` where a trade's time is its exit
    time when closed, else its entry time. ``tags`` and ``fill_ids`` are lists, ``context`` a
    dict; ``open_quantity`` is what is still open of a lot or of a trade without exit (0 else).
    """
    return _select(
        db, user_id, symbol=symbol, tag=tag, setup=setup, since_ms=since_ms, until_ms=until_ms, kind=kind, limit=limit
    )


def closed_trades(
    db: Database,
    user_id: str,
    *,
    symbol: str | None = None,
    tag: str | None = None,
    setup: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    kind: str | Sequence[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Return the closed trades for analytics (whole trades with an exit and round trips), newest first."""
    return _select(
        db,
        user_id,
        symbol=symbol,
        tag=tag,
        setup=setup,
        since_ms=since_ms,
        until_ms=until_ms,
        kind=kind,
        closed=True,
        limit=limit,
    )


def trade(db: Database, trade_id: str) -> dict[str, Any] | None:
    """Return one journal record (any user's) with the trader's edits applied, as ``trades`` gives
    its rows, or None when the journal has no such id."""
    owner = db.query("SELECT user_id FROM journal_trades WHERE trade_id = ?", (trade_id,))
    if not owner:
        return None
    rows = db.query(
        _JOURNAL + "SELECT * FROM j WHERE trade_id = :tid", {"user_id": owner[0]["user_id"], "tid": trade_id}
    )
    return _frame(rows).iloc[0].to_dict()


def users(db: Database) -> list[str]:
    """Return every account the journal holds (the trader's and the paper accounts), alphabetically."""
    return [r["user_id"] for r in db.query("SELECT DISTINCT user_id FROM journal_trades ORDER BY user_id")]


def open_positions(db: Database, user_id: str, symbol: str | None = None) -> pd.DataFrame:
    """Return one row per open (symbol, side): quantity still open, its average entry price,
    how many lots or trades make it up, and when the first and the last of them were entered."""
    rows = _select(db, user_id, symbol=symbol, kind=("lot", "trade"))
    rows = rows[rows["open_quantity"] > 0]
    if rows.empty:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    rows = rows.assign(cost=rows["open_quantity"] * rows["entry_price"])
    out = rows.groupby(["symbol", "side"], as_index=False).agg(
        open_quantity=("open_quantity", "sum"),
        cost=("cost", "sum"),
        open_lots=("trade_id", "size"),
        opened_at=("entry_time", "min"),
        last_entry_at=("entry_time", "max"),
    )
    out["avg_entry_price"] = out["cost"] / out["open_quantity"]
    out["open_lots"] = out["open_lots"].astype("int64")
    return out.sort_values(["symbol", "side"]).reset_index(drop=True)[POSITION_COLUMNS]


def alerts(db: Database, user_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Return the user's behavioural alerts, newest first, with ``trade_ids`` and ``details`` parsed."""
    rows = db.query(
        "SELECT alert_id, user_id, alert_type, severity, timestamp, trade_ids, message, details "
        "FROM journal_alerts WHERE user_id = ? ORDER BY timestamp DESC, alert_id LIMIT ?",
        (user_id, int(limit)),
    )
    for row in rows:
        row["trade_ids"] = list(_json(row["trade_ids"], []))
        row["details"] = dict(_json(row["details"], {}))
    return rows


def journal_summary(db: Database, user_id: str, symbol: str | None = None) -> dict[str, Any]:
    """Return the counts and headline statistics of the user's journal (of one symbol if given).

    ``fills``: exchange fills stored; ``trades``: closed trades; ``open_positions``: open
    (symbol, side) positions; the rest as in ``analytics.summary`` of the closed trades.
    """
    sql = "SELECT COUNT(*) AS n FROM journal_fills WHERE user_id = ?"
    params: tuple[Any, ...] = (user_id,)
    if symbol is not None:
        sql += " AND symbol = ?"
        params += (symbol,)
    fills = int(db.query(sql, params)[0]["n"])
    stats = analytics.summary(closed_trades(db, user_id, symbol=symbol))
    out: dict[str, Any] = {"fills": fills, "open_positions": len(open_positions(db, user_id, symbol))}
    out.update({k: stats[k] for k in SUMMARY_KEYS if k in stats})
    return {k: out[k] for k in SUMMARY_KEYS}


def symbols(db: Database, user_id: str) -> list[str]:
    """Return the symbols in the user's journal, alphabetically."""
    return [
        r["symbol"]
        for r in db.query("SELECT DISTINCT symbol FROM journal_trades WHERE user_id = ? ORDER BY symbol", (user_id,))
    ]


def _tag_values(db: Database) -> str:
    """The FROM item giving each tag of the row ``j`` as ``tags_each.value`` (tags are a JSON array of strings
    in a text column): SQLite's ``json_each``, PostgreSQL's ``jsonb_array_elements_text``; a row
    whose tags are not a JSON array has none."""
    if db.dialect == "postgres":
        return (
            "jsonb_array_elements_text(CASE WHEN left(ltrim(j.tags), 1) = '[' THEN j.tags::jsonb "
            "ELSE '[]'::jsonb END) AS tags_each(value)"
        )
    return "json_each(CASE WHEN json_valid(j.tags) THEN j.tags ELSE '[]' END) AS tags_each"


def tags(db: Database, user_id: str) -> list[str]:
    """Return the tags in the user's journal (after the trader's edits), alphabetically."""
    rows = db.query(
        _JOURNAL + f"SELECT DISTINCT tags_each.value AS tag FROM j, {_tag_values(db)} ORDER BY tag",
        {"user_id": user_id},
    )
    return [r["tag"] for r in rows if isinstance(r["tag"], str) and r["tag"]]


def setups(db: Database, user_id: str) -> list[str]:
    """Return the setups in the user's journal (after the trader's edits), alphabetically."""
    rows = db.query(
        _JOURNAL + "SELECT DISTINCT setup FROM j WHERE setup IS NOT NULL AND setup != '' ORDER BY setup",
        {"user_id": user_id},
    )
    return [r["setup"] for r in rows]


def clean_tags(values: Sequence[str] | str | None) -> list[str]:
    """Return tags stripped, without blanks or repeats, in their order; a string is split on commas."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    out: list[str] = []
    for value in values:
        tag = str(value).strip()
        if tag and tag not in out:
            out.append(tag)
    return out


def annotate(
    db: Database, trade_id: str, *, notes: str | None, tags: Sequence[str] | str | None, setup: str | None
) -> None:
    """Save the trader's notes, tags and setup of a trade; they replace the stored ones from now on.

    Blank notes or setup are stored as None (cleared); returns once the edit is durable.
    """
    notes = (notes or "").strip() or None
    setup = (setup or "").strip() or None
    values = (trade_id, notes, json.dumps(clean_tags(tags)), setup, int(time.time() * 1000))
    db.write(
        lambda d: d.conn.execute(
            "INSERT INTO journal_annotations (trade_id, notes, tags, setup, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(trade_id) DO UPDATE SET notes = excluded.notes, tags = excluded.tags, "
            "setup = excluded.setup, updated_at = excluded.updated_at",
            values,
        )
    )


# --------------------------------------------------------------------------- the journal store's writes

_TRADE_COLUMNS = (
    "trade_id, user_id, symbol, side, kind, entry_price, exit_price, quantity, entry_time, exit_time, "
    "pnl, fees, stop_loss, notes, tags, setup, emotion, lot_id, fill_ids, source, context, stored_at"
)
_UPSERT_TRADE = upsert("journal_trades", _TRADE_COLUMNS, "trade_id")
_UPSERT_ALERT = upsert(
    "journal_alerts",
    "alert_id, user_id, alert_type, severity, timestamp, trade_ids, message, details, stored_at",
    "alert_id",
)


def store(
    conn: sqlite3.Connection,
    *,
    trades: Sequence[tuple[Any, ...]],
    void_trades: Sequence[str],
    alerts: Sequence[tuple[Any, ...]],
    void_alerts: Sequence[str],
) -> None:
    """Upsert trades (``_TRADE_COLUMNS`` order) and alerts (the table's order) and delete the voided
    ids; runs inside the caller's write transaction. The trader's annotations are never touched."""
    conn.executemany(_UPSERT_TRADE, trades)
    conn.executemany("DELETE FROM journal_trades WHERE trade_id=?", [(i,) for i in void_trades])
    conn.executemany(_UPSERT_ALERT, alerts)
    conn.executemany("DELETE FROM journal_alerts WHERE alert_id=?", [(i,) for i in void_alerts])
