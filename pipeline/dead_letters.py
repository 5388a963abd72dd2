"""Dead letters: a message a stage or source could not take, published on ``<topic>_dlq`` with the
reason, every broken rule (field, value, rule), where it came from and how often it was retried.
"""

from __future__ import annotations

import time

import orjson

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, Violation
from pipeline.messages import DeadLetter, encode
from pipeline.topics import dlq_name


def publish_dead_letter(
    producer: Producer,
    exc: Exception | str,
    *,
    topic: str,
    value: bytes | str,
    stage: str,
    key: bytes | None = None,
    partition: int = -1,
    offset: int = -1,
    retries: int = 0,
) -> str:
    """Produce a ``DeadLetter`` for ``value`` (bytes of ``topic``, or a raw frame a source could not
    turn into a message: then partition and offset are -1) on ``<topic>_dlq``; return the reason."""
    if isinstance(exc, str):
        exc = BadMessageError(exc)
    if isinstance(exc, BadMessageError):
        violations = exc.violations
        reason = str(exc)
    else:
        violations = [Violation("", None, f"{type(exc).__name__}: {exc}")]
        reason = f"{type(exc).__name__}: {exc}"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    letter = DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_key=key.decode("utf-8", "replace") if key is not None else None,
        value=text,
        reason=reason,
        violations=[{"field": v.field, "value": _jsonable(v.value), "rule": v.rule} for v in violations],
        stage=stage,
        retry_count=retries,
        failed_at=int(time.time() * 1000),
    )
    producer.produce(dlq_name(topic), encode(letter), key=key)
    return reason


def _jsonable(value: object) -> object:
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        return repr(value)
