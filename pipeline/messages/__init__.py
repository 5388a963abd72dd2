"""One typed, immutable model per topic, with the seeds' fields and validation rules.

``decode(topic, raw)`` turns wire bytes into a model or raises ``BadMessageError`` whose
violations name the field, the value and the rule. ``encode(model)`` gives compact JSON bytes.
The models live in one module per family (market, orders, journal, analysis); everything is
importable from here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from pipeline import topics as t
from pipeline.errors import BadMessageError
from pipeline.messages.analysis import (
    Alert,
    AnalysisResult,
    AnalysisScores,
    AnalysisTrigger,
    StockNews,
    StockPrice,
)
from pipeline.messages.base import (
    CRYPTO_SYMBOL,
    KeptJSON,
    Message,
    OrderStatus,
    OrderType,
    PredictionType,
    Side,
    Signal,
    TradeKind,
    build,
    check_fresh,
    encode,
    extend,
    rule_error,
    trusted,
    violations_of,
)
from pipeline.messages.journal import BehavioralAlert, EnrichedTrade, RawTrade, Trade
from pipeline.messages.market import MarketData, MLSignal
from pipeline.messages.operations import HealthCheck
from pipeline.messages.orders import Order, RiskManagement, TriggerSignal
from pipeline.messages.stocks import STOCK_SYMBOL, StockTrade, iso_ms, ms_iso

__all__ = [
    "CRYPTO_SYMBOL",
    "MODELS",
    "STOCK_SYMBOL",
    "Alert",
    "AnalysisResult",
    "AnalysisScores",
    "AnalysisTrigger",
    "BehavioralAlert",
    "DeadLetter",
    "EnrichedTrade",
    "HealthCheck",
    "KeptJSON",
    "MLSignal",
    "MarketData",
    "Message",
    "Order",
    "OrderStatus",
    "OrderType",
    "PredictionType",
    "RawTrade",
    "RiskManagement",
    "Side",
    "Signal",
    "StockNews",
    "StockPrice",
    "StockTrade",
    "Trade",
    "TradeKind",
    "TriggerSignal",
    "build",
    "check_fresh",
    "decode",
    "encode",
    "extend",
    "iso_ms",
    "json_schemas",
    "model_for",
    "ms_iso",
    "rule_error",
    "trade_avro_schema",
    "trusted",
    "violations_of",
]


class DeadLetter(Message):
    """A rejected message on ``<topic>_dlq``: the original bytes, where they came from and why."""

    source_topic: str
    source_partition: int
    source_offset: int
    source_key: str | None
    value: str
    reason: str
    violations: list[dict[str, Any]] = Field(default_factory=list)
    stage: str
    retry_count: int = Field(ge=0)
    failed_at: int


MODELS: dict[str, type[Message]] = {
    m.topic: m
    for m in (
        MarketData,
        MLSignal,
        Order,
        RawTrade,
        Trade,
        EnrichedTrade,
        BehavioralAlert,
        StockPrice,
        StockTrade,
        StockNews,
        AnalysisTrigger,
        AnalysisResult,
        Alert,
        HealthCheck,
    )
}


def model_for(topic: str) -> type[Message]:
    """Return the model of ``topic``; dead-letter topics share ``DeadLetter``; a delay topic's is
    its source topic's."""
    if topic.endswith(t.DLQ_SUFFIX):
        return DeadLetter
    source = t.retry_source(topic)
    if source is not None:
        return model_for(source)
    try:
        return MODELS[topic]
    except KeyError:
        raise KeyError(f"no message model for topic {topic!r}") from None


def decode(topic: str, raw: bytes | str, model: type[Message] | None = None) -> Message:
    """Parse and validate wire bytes of ``topic``; raise ``BadMessageError`` naming each rule."""
    cls = model or model_for(topic)
    try:
        return cls.model_validate_json(raw)
    except ValidationError as exc:
        raise BadMessageError(violations_of(exc)) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of every topic's model, by topic name."""
    schemas = {topic: model.model_json_schema() for topic, model in MODELS.items()}
    schemas["<topic>_dlq"] = DeadLetter.model_json_schema()
    return schemas


def trade_avro_schema() -> dict[str, Any]:
    """Return seed 000's Avro schema of the Trade record (with its optional extensions)."""
    avro_types = {int: "long", float: "double", str: "string", bool: "boolean"}
    fields: list[dict[str, Any]] = []
    for name, info in Trade.model_fields.items():
        annotation: Any = info.annotation
        literal = getattr(annotation, "__origin__", None) is Literal
        args = () if literal else getattr(annotation, "__args__", ())
        nullable = type(None) in args
        base = next(a for a in args if a is not type(None)) if nullable else annotation
        if literal:
            kind: Any = {"type": "enum", "name": name.title().replace("_", ""), "symbols": list(base.__args__)}
        elif getattr(base, "__origin__", None) is tuple:
            kind = {"type": "array", "items": "string"}
        else:
            kind = avro_types[base]
        field: dict[str, Any] = {"name": name, "type": ["null", kind] if nullable else kind}
        if nullable:
            field["default"] = None
        elif not info.is_required():
            default = info.get_default(call_default_factory=True)
            field["default"] = list(default) if isinstance(default, tuple) else default
        fields.append(field)
    return {"type": "record", "name": "Trade", "namespace": "tradersdesk", "fields": fields}
