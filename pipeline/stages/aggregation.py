"""aggregation: seed 003's ``aggregation-consumers``: ``analysis_results`` in, ``alerts`` out.

For each result, in one write transaction (``storage.analysis``):

1. the result is stored (``analysis_results``; the API and the page read it there);
2. the symbol's latest technical and sentiment results no older than ``ANALYSIS_WINDOW_MINUTES``
   before this result are combined (``pipeline.analysis.aggregation.combine``) and the aggregate
   stored (``analysis_aggregates``: the score over time);
3. the symbol's alert state (BUY/SELL/HOLD, risk on or off) moves by ``decide``, with
   hysteresis; each change that alerts becomes an ``Alert`` stored in ``stock_alerts`` and
   published on ``alerts`` (the notifier forwards ``high`` and ``critical`` ones).

Effectively once: an alert's id is a UUID5 of the result that caused it and its type, and a
redelivered result (a crash between the write and the commit) publishes the alerts it made
before instead of deciding again, so an alert is neither lost nor doubled in SQLite. A result
whose score is outside [-1, 1] never gets here: the runner dead-letters it with the rule. Runs
on its runner's thread.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import sqlite_utils

from pipeline.analysis.aggregation import AlertState, Scored, combine, decide
from pipeline.analysis.settings import AlertThresholds
from pipeline.bus.base import Record
from pipeline.messages import Alert, AnalysisResult, Message, iso_ms, ms_iso
from pipeline.runner import FEED_HEADER, REPLAY, REPLAY_HEADERS, Output, Stage
from pipeline.topics import ANALYSIS_RESULTS
from storage import analysis
from storage.db import Database

ALERT_NAMESPACE = uuid.UUID("6f1c4a52-3d0e-4c59-9a4e-5b8f2d7e1a90")


def _scored(found: analysis.StoredResult | None) -> Scored | None:
    return None if found is None else Scored(found.score, found.confidence, found.details, found.result_id)


class Aggregation(Stage):
    """Consumer of ``analysis_results``; producer of ``alerts``."""

    name: ClassVar[str] = "aggregation"
    inputs: ClassVar[tuple[str, ...]] = (ANALYSIS_RESULTS,)

    def __init__(self, db: Database, *, thresholds: AlertThresholds | None = None, window_minutes: int = 240) -> None:
        self.db = db
        self.thresholds = thresholds or AlertThresholds()
        self.window_ms = window_minutes * 60_000
        self.aggregated = 0
        self.alerted = 0
        self.republished = 0

    def prepare_record(self, message: Message, record: Record) -> tuple[Message, bool]:
        return message, record.header(FEED_HEADER) == REPLAY

    def process_batch(self, messages: list[tuple[Message, bool]]) -> list[Output]:
        results = [(m, replayed) for m, replayed in messages if isinstance(m, AnalysisResult)]
        if not results:
            return []
        alerts = self.db.write(lambda db: self._work(db, results))
        return [(a, REPLAY_HEADERS) if replayed else a for a, replayed in alerts]

    def _work(self, db: sqlite_utils.Database, results: list[tuple[AnalysisResult, bool]]) -> list[tuple[Alert, bool]]:
        conn = db.conn
        replayed_by_id = {r.result_id: replayed for r, replayed in results}
        before = analysis.alerts_caused_by(conn, replayed_by_id)
        out: list[tuple[Alert, bool]] = [(_alert_of(a), replayed_by_id[a["cause"]]) for a in before]
        self.republished += len(out)
        done = {a["cause"] for a in before}
        for result, replayed in results:
            if result.result_id in done:
                continue
            at = iso_ms(result.timestamp)
            r = result.results
            analysis.store_result(
                conn,
                result.result_id,
                result.symbol,
                result.analysis_type,
                at,
                r.score,
                r.confidence,
                r.details,
                result.metadata,
            )
            since = at - self.window_ms
            technical = _scored(analysis.latest_result(conn, result.symbol, "technical", since))
            sentiment = _scored(analysis.latest_result(conn, result.symbol, "sentiment", since))
            agg = combine(technical, sentiment, self.thresholds)
            if agg is None:
                continue
            self.aggregated += 1
            analysis.store_aggregate(
                conn,
                result.symbol,
                at,
                result.result_id,
                agg.final_score,
                agg.recommendation,
                agg.target_price,
                agg.technical,
                agg.sentiment,
                agg.confidence,
            )
            stored = analysis.alert_state(conn, result.symbol)
            state = AlertState() if stored is None else AlertState(stored[0], stored[1])  # type: ignore[arg-type]
            new_state, drafts = decide(result.symbol, state, agg, technical, sentiment, self.thresholds)
            if new_state != state:
                analysis.set_alert_state(conn, result.symbol, new_state.signal, new_state.risk)
            for d in drafts:
                alert_id = str(uuid.uuid5(ALERT_NAMESPACE, f"{result.result_id}:{d.alert_type}"))
                data = {**d.data, "result_id": result.result_id}
                analysis.store_alert(
                    conn, alert_id, result.symbol, d.alert_type, d.priority, at, d.message, data, result.result_id
                )
                alert = Alert(
                    alert_id=alert_id,
                    symbol=result.symbol,
                    alert_type=d.alert_type,
                    priority=d.priority,
                    timestamp=ms_iso(at),
                    message=d.message,
                    data=data,
                )
                out.append((alert, replayed))
                self.alerted += 1
        return out

    def status(self) -> dict[str, Any]:
        return {"aggregated": self.aggregated, "alerts": self.alerted, "republished": self.republished}


def _alert_of(row: dict[str, Any]) -> Alert:
    return Alert(
        alert_id=row["alert_id"],
        symbol=row["symbol"],
        alert_type=row["alert_type"],
        priority=row["priority"],
        timestamp=ms_iso(int(row["timestamp"])),
        message=row["message"],
        data=row["data"],
    )
