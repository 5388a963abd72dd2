"""technical-analysis: seed 003's "AI Analysis Service": ``analysis_triggers`` in, a ``technical``
result on ``analysis_results`` out (``pipeline.analysis.technical`` has the rules).

For a ``price_update`` or ``scheduled`` trigger (a ``news_update`` changes no technicals and is
skipped), it reads the symbol's latest bars of the trigger's timeframe from the stock store and
lays the bars the trigger carries over them, so a bar the store has not written yet counts. The
registry's active models for the symbol whose bar interval is that timeframe's join as
components; their files are loaded once per version (a version that fails to load is left out
and named in ``status``). Fewer bars than the indicators need gives no result (counted).

``metadata``: ``model_version``, ``processing_time`` (seconds, this stage's work on the
trigger), ``trigger_id``, ``trigger_type``, ``priority``, ``timeframe``. Runs on its runner's
thread; several triggers of one symbol in a batch make one result.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from pipeline.analysis.technical import HISTORY_BARS, MODEL_VERSION, Model, analyse
from pipeline.bus.base import Record
from pipeline.errors import BadMessageError, Violation
from pipeline.messages import AnalysisResult, AnalysisTrigger, Message
from pipeline.runner import FEED_HEADER, REPLAY, REPLAY_HEADERS, Output, Stage
from pipeline.stages.analysis_triggers import now_iso
from pipeline.topics import ANALYSIS_TRIGGERS
from storage import stocks
from storage.db import Database

if TYPE_CHECKING:
    from pipeline.ml.registry import Registry

log = logging.getLogger(__name__)
MODELS_REFRESH_S = 60.0


class TechnicalAnalysis(Stage):
    """Consumer of ``analysis_triggers``; producer of technical ``analysis_results``."""

    name: ClassVar[str] = "technical-analysis"
    inputs: ClassVar[tuple[str, ...]] = (ANALYSIS_TRIGGERS,)

    def __init__(self, db: Database, registry: Registry | None = None) -> None:
        self.db = db
        self.registry = registry
        self._models: dict[str, tuple[float, list[tuple[str, Model]]]] = {}
        self._loaded: dict[str, Model | None] = {}
        self.model_errors: dict[str, str] = {}
        self.results = 0
        self.too_few_bars = 0

    def prepare_record(self, message: Message, record: Record) -> tuple[Message, bool]:
        return message, record.header(FEED_HEADER) == REPLAY

    def process_batch(self, messages: list[tuple[Message, bool]]) -> list[Output]:
        latest: dict[tuple[str, str], tuple[AnalysisTrigger, bool, list[list[float]]]] = {}
        for message, replayed in messages:
            if not isinstance(message, AnalysisTrigger) or message.trigger_type == "news_update":
                continue
            timeframe = str(message.metadata.get("timeframe") or "1Min")
            if timeframe not in stocks.TIMEFRAMES:
                raise BadMessageError([Violation("metadata.timeframe", timeframe, f"one of {list(stocks.TIMEFRAMES)}")])
            key = (message.symbol, timeframe)
            carried = latest[key][2] if key in latest else []
            latest[key] = (message, replayed, carried + _bars_of(message))
        out: list[Output] = []
        for (symbol, timeframe), (trigger, replayed, carried) in latest.items():
            result = self._analyse(trigger, symbol, timeframe, carried)
            if result is not None:
                out.append((result, REPLAY_HEADERS) if replayed else result)
        return out

    def _analyse(
        self, trigger: AnalysisTrigger, symbol: str, timeframe: str, carried: list[list[float]]
    ) -> AnalysisResult | None:
        began = time.perf_counter()
        stored = stocks.bars(self.db, symbol, timeframe, HISTORY_BARS)
        rows = {int(r[0]): [float(x) for x in r[1:6]] for r in stored}
        for b in carried:
            rows[int(b[0])] = [float(x) for x in b[1:6]]
        frame = pd.DataFrame(
            [[start, *rest] for start, rest in sorted(rows.items())],
            columns=["start", "open", "high", "low", "close", "volume"],
        )
        found = analyse(frame, self._models_for(symbol, stocks.TIMEFRAMES[timeframe]))
        if found is None:
            self.too_few_bars += 1
            return None
        self.results += 1
        return AnalysisResult.model_validate(
            {
                "result_id": str(uuid.uuid4()),
                "symbol": symbol,
                "analysis_type": "technical",
                "timestamp": now_iso(),
                "results": {"score": found.score, "confidence": found.confidence, "details": found.details},
                "metadata": {
                    "model_version": MODEL_VERSION,
                    "processing_time": round(time.perf_counter() - began, 6),
                    "trigger_id": trigger.trigger_id,
                    "trigger_type": trigger.trigger_type,
                    "priority": trigger.metadata.get("priority", "normal"),
                    "timeframe": timeframe,
                },
            }
        )

    def _models_for(self, symbol: str, interval_ms: int) -> list[tuple[str, Model]]:
        if self.registry is None:
            return []
        key = f"{symbol}@{interval_ms}"
        cached = self._models.get(key)
        if cached is not None and time.monotonic() - cached[0] < MODELS_REFRESH_S:
            return cached[1]
        found: list[tuple[str, Model]] = []
        for record in self.registry.records(symbol=symbol, active_only=True):
            if record.interval_ms != interval_ms:
                continue
            if record.label not in self._loaded:
                try:
                    self._loaded[record.label] = self.registry.load(record)
                except Exception as exc:  # noqa: BLE001 - a model that does not load is left out, never fatal
                    self._loaded[record.label] = None
                    self.model_errors[record.label] = f"{type(exc).__name__}: {exc}"
                    log.warning("technical-analysis: %s left out: %s", record.label, exc)
            model = self._loaded[record.label]
            if model is not None:
                found.append((record.label, model))
        self._models[key] = (time.monotonic(), found)
        return found

    def status(self) -> dict[str, Any]:
        return {"results": self.results, "too_few_bars": self.too_few_bars, "model_errors": dict(self.model_errors)}


def _bars_of(trigger: AnalysisTrigger) -> list[list[float]]:
    raw = trigger.metadata.get("bars") or []
    out = []
    for i, bar in enumerate(raw if isinstance(raw, list) else [raw]):
        ok = isinstance(bar, list) and len(bar) == 6 and all(isinstance(x, (int, float)) for x in bar)
        if not ok or bar[2] < bar[3] or min(bar[1:5]) <= 0 or bar[5] < 0:
            rule = "[start, open, high, low, close, volume] with positive prices, high >= low, volume >= 0"
            raise BadMessageError([Violation(f"metadata.bars[{i}]", str(bar)[:80], rule)])
        out.append([float(x) for x in bar])
    return out
