"""The stock analysis tables' door (seed 003): news, results, aggregates, alerts, alert state.

Writes run inside the caller's write transaction (``Database.write``) on its connection; reads use
the calling thread's reader connection. Every write is idempotent:

* a news item is stored once per (news_id, symbol): a re-fetched or re-imported one changes
  nothing, and ``store_news`` returns only the keys that were new;
* a result by ``result_id``, an alert by ``alert_id``: written again, the same row;
* an aggregate by (symbol, timestamp, result_id); the alert state by symbol (the last write wins).

Reads are index range scans: a symbol's news by time, its latest results by type, its
aggregates over time, the latest alerts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from storage.db import Database
from storage.select import select_in
from storage.sql import upsert

# (news_id, symbol, title, content, source, source_url, published_at, published_ms, collected_at, category, tags)
NewsRow = tuple[str, str, str, str, str, str, str, int, str, str, Sequence[str]]
NEWS_FIELDS = (
    "news_id",
    "symbol",
    "title",
    "content",
    "source",
    "source_url",
    "published_at",
    "published_ms",
    "collected_at",
    "category",
    "tags",
    "sentiment",
    "sentiment_confidence",
    "sentiment_model",
    "sentiment_detail",
)


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


# --------------------------------------------------------------------------- writes


_RESULT = upsert(
    "analysis_results", "result_id, symbol, analysis_type, timestamp, score, confidence, details, metadata", "result_id"
)
_AGGREGATE = upsert(
    "analysis_aggregates",
    "symbol, timestamp, result_id, final_score, recommendation, target_price, technical, sentiment, confidence",
    "symbol, timestamp, result_id",
)
_ALERT = upsert("stock_alerts", "alert_id, symbol, alert_type, priority, timestamp, message, data, cause", "alert_id")
_ALERT_STATE = upsert("alert_state", "symbol, signal, risk, updated_at", "symbol")


def store_news(conn: sqlite3.Connection, rows: Sequence[NewsRow]) -> list[tuple[str, str]]:
    """Insert items not stored yet; return the (news_id, symbol) keys that were new, in order."""
    now = int(time.time() * 1000)
    new: list[tuple[str, str]] = []
    for r in rows:
        cur = conn.execute(
            "INSERT INTO stock_news (news_id, symbol, title, content, source, source_url, published_at, "
            "published_ms, collected_at, category, tags, stored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (*r[:10], _json(list(r[10])), now),
        )
        if cur.rowcount:
            new.append((r[0], r[1]))
    return new


def set_sentiment(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, float, float, str, dict[str, Any]]]) -> None:
    """Record items' scores: (news_id, symbol, score, confidence, model, detail)."""
    conn.executemany(
        "UPDATE stock_news SET sentiment=?, sentiment_confidence=?, sentiment_model=?, sentiment_detail=? "
        "WHERE news_id=? AND symbol=?",
        [(s, c, m, _json(d), n, sym) for n, sym, s, c, m, d in rows],
    )


def store_result(
    conn: sqlite3.Connection,
    result_id: str,
    symbol: str,
    analysis_type: str,
    timestamp: int,
    score: float,
    confidence: float,
    details: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """Store one technical or sentiment result (again: the same row)."""
    conn.execute(
        _RESULT,
        (result_id, symbol, analysis_type, timestamp, score, confidence, _json(details), _json(metadata)),
    )


def store_aggregate(
    conn: sqlite3.Connection,
    symbol: str,
    timestamp: int,
    result_id: str,
    final_score: float,
    recommendation: str,
    target_price: float | None,
    technical: float | None,
    sentiment: float | None,
    confidence: float,
) -> None:
    conn.execute(
        _AGGREGATE,
        (symbol, timestamp, result_id, final_score, recommendation, target_price, technical, sentiment, confidence),
    )


def store_alert(
    conn: sqlite3.Connection,
    alert_id: str,
    symbol: str,
    alert_type: str,
    priority: str,
    timestamp: int,
    message: str,
    data: dict[str, Any],
    cause: str,
) -> None:
    conn.execute(
        _ALERT,
        (alert_id, symbol, alert_type, priority, timestamp, message, _json(data), cause),
    )


def set_alert_state(conn: sqlite3.Connection, symbol: str, signal: str, risk: bool) -> None:
    conn.execute(_ALERT_STATE, (symbol, signal, int(risk), int(time.time() * 1000)))


# --------------------------------------------------------------------------- reads (any connection)


def alert_state(conn: sqlite3.Connection, symbol: str) -> tuple[str, bool] | None:
    """The (signal, risk) last alerted for ``symbol``, or None."""
    row = conn.execute("SELECT signal, risk FROM alert_state WHERE symbol=?", (symbol,)).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


def alerts_caused_by(conn: sqlite3.Connection, result_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The alerts stored for these results (a redelivered result publishes them again)."""
    sql = (
        "SELECT alert_id, symbol, alert_type, priority, timestamp, message, data, cause FROM stock_alerts "
        "WHERE cause IN ({marks}) ORDER BY timestamp, alert_id"
    )
    return [_alert(r) for r in select_in(conn, sql, result_ids)]


@dataclass(frozen=True)
class StoredResult:
    """A stored result, decoded."""

    result_id: str
    symbol: str
    analysis_type: str
    timestamp: int
    score: float
    confidence: float
    details: dict[str, Any]
    metadata: dict[str, Any]


def _result(row: Sequence[Any]) -> StoredResult:
    return StoredResult(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(row[3]),
        float(row[4]),
        float(row[5]),
        orjson.loads(row[6]),
        orjson.loads(row[7]),
    )


def latest_result(conn: sqlite3.Connection, symbol: str, analysis_type: str, since_ms: int = 0) -> StoredResult | None:
    """The newest ``analysis_type`` result of ``symbol`` at or after ``since_ms``, or None."""
    row = conn.execute(
        "SELECT * FROM analysis_results WHERE symbol=? AND analysis_type=? AND timestamp>=? "
        "ORDER BY timestamp DESC, result_id DESC LIMIT 1",
        (symbol, analysis_type, since_ms),
    ).fetchone()
    return None if row is None else _result(row)


def news_for(conn: sqlite3.Connection, symbol: str, since_ms: int, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` items of ``symbol`` published at or after ``since_ms``, newest first."""
    rows = conn.execute(
        f"SELECT {', '.join(NEWS_FIELDS)} FROM stock_news WHERE symbol=? AND published_ms>=? "
        "ORDER BY published_ms DESC, news_id LIMIT ?",
        (symbol, since_ms, limit),
    ).fetchall()
    return [_news(r) for r in rows]


def _news(row: Sequence[Any]) -> dict[str, Any]:
    item = dict(zip(NEWS_FIELDS, row))
    item["tags"] = orjson.loads(item["tags"])
    item["sentiment_detail"] = orjson.loads(item["sentiment_detail"]) if item["sentiment_detail"] else None
    return item


def known_news_ids(conn: sqlite3.Connection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are stored (for any symbol)."""
    return {r[0] for r in select_in(conn, "SELECT DISTINCT news_id FROM stock_news WHERE news_id IN ({marks})", ids)}


def _alert(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "alert_id": row[0],
        "symbol": row[1],
        "alert_type": row[2],
        "priority": row[3],
        "timestamp": int(row[4]),
        "message": row[5],
        "data": orjson.loads(row[6]),
        "cause": row[7],
    }


# --------------------------------------------------------------------------- reads for pages and the API


def news(db: Database, symbol: str, limit: int = 50, since_ms: int = 0) -> list[dict[str, Any]]:
    """The newest ``limit`` items of ``symbol``, newest first, with their sentiment when scored."""
    return news_for(db.reader().conn, symbol, since_ms, limit)


def latest_results(db: Database, symbol: str) -> dict[str, StoredResult]:
    """The newest technical and sentiment result of ``symbol``, by type (missing ones left out)."""
    conn = db.reader().conn
    out = {}
    for kind in ("technical", "sentiment"):
        found = latest_result(conn, symbol, kind)
        if found is not None:
            out[kind] = found
    return out


def aggregates(db: Database, symbol: str, limit: int = 500) -> list[dict[str, Any]]:
    """The aggregate of ``symbol`` over time, oldest first (the latest ``limit``)."""
    rows = (
        db.reader()
        .conn.execute(
            "SELECT timestamp, result_id, final_score, recommendation, target_price, technical, sentiment, confidence "
            "FROM analysis_aggregates WHERE symbol=? ORDER BY timestamp DESC, result_id DESC LIMIT ?",
            (symbol, limit),
        )
        .fetchall()
    )
    keys = ("timestamp", "result_id", "final_score", "recommendation", "target_price", "technical", "sentiment")
    return [dict(zip((*keys, "confidence"), r)) for r in reversed(rows)]


def alerts(db: Database, symbol: str | None = None, limit: int = 100, since_ms: int = 0) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts (of ``symbol``, or every symbol), newest first."""
    where, args = "timestamp>=?", [since_ms]
    if symbol is not None:
        where += " AND symbol=?"
        args.append(symbol)  # type: ignore[arg-type]
    rows = (
        db.reader()
        .conn.execute(
            "SELECT alert_id, symbol, alert_type, priority, timestamp, message, data, cause FROM stock_alerts "
            f"WHERE {where} ORDER BY timestamp DESC, alert_id DESC LIMIT ?",
            (*args, limit),
        )
        .fetchall()
    )
    return [_alert(r) for r in rows]


def symbols(db: Database) -> list[str]:
    """The symbols with news or results, alphabetically."""
    conn = db.reader().conn
    found = {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM stock_news")}
    found |= {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM analysis_results")}
    return sorted(found)
