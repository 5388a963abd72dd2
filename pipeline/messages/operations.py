"""Messages of the desk's own operations: the health check's round trip (seed 003)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from pipeline import topics as t
from pipeline.messages.base import Message


class HealthCheck(Message):
    """One round trip of the health check: produced, then read back by its id."""

    topic: ClassVar[str] = t.HEALTH_CHECK
    key_field: ClassVar[str | None] = "check_id"

    check_id: str = Field(min_length=1, max_length=64)
    sent_at: int = Field(ge=0, description="ms since the epoch when it was produced")
    host: str = ""
