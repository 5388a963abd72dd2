"""Seed 000's journal messages: raw trades, the Trade record, enriched trades, behavioural alerts."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from pipeline import topics as t
from pipeline.messages.base import (
    Message,
    Side,
    TradeKind,
    rule_error,
)


class RawTrade(Message):
    """A trade as received on ``raw-trades``: the payload untouched, plus where it came from."""

    plain_json: ClassVar[bool] = True
    topic: ClassVar[str] = t.RAW_TRADES
    key_field: ClassVar[str | None] = "user_id"

    raw_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    format: str = Field(min_length=1)
    received_at: int = Field(gt=0)
    payload: dict[str, Any] | str
    row: int | None = None
    # A saved custom column mapping (target field -> file column) for format "custom".
    mapping: dict[str, str] | None = None


class Trade(Message):
    """The Trade record of seed 000 on ``normalized-trades``; times are Unix milliseconds."""

    plain_json: ClassVar[bool] = True
    topic: ClassVar[str] = t.NORMALIZED_TRADES
    key_field: ClassVar[str | None] = "user_id"

    trade_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    entry_price: float = Field(gt=0)
    exit_price: float | None = Field(default=None, gt=0)
    quantity: float = Field(gt=0)
    entry_time: int = Field(gt=0)
    exit_time: int | None = Field(default=None, gt=0)
    pnl: float | None = None
    notes: str | None = None
    source: str = Field(min_length=1)
    # Extensions to seed 000, all optional. ``kind``: "trade" is a whole trade as entered
    # (manual, generic CSV); "lot" is the opening fill of a FIFO lot; "round_trip" is one
    # FIFO match of a lot with a closing fill; "funding" and "realized_pnl" are a derivatives
    # account's payments as the exchange booked them: ``pnl`` the signed amount, ``quantity`` its
    # size at a price of 1 of the asset named in ``notes`` (not trades: outside trade statistics).
    # ``void`` retracts an earlier record of that id.
    kind: TradeKind = "trade"
    fees: float | None = Field(default=None, ge=0)
    stop_loss: float | None = Field(default=None, gt=0)
    tags: tuple[str, ...] = ()
    setup: str | None = None
    emotion: str | None = None
    lot_id: str | None = None
    fill_ids: tuple[str, ...] = ()
    void: bool = False

    @model_validator(mode="after")
    def _exit_after_entry(self) -> Trade:
        if self.exit_time is not None and self.exit_time < self.entry_time:
            raise rule_error("exit_time", self.exit_time, f"exit_time >= entry_time ({self.entry_time})")
        if (self.exit_time is None) != (self.exit_price is None):
            raise rule_error("exit_price", self.exit_price, "exit_price and exit_time are given together")
        return self


class EnrichedTrade(Trade):
    """A Trade on ``enriched-trades`` with the market context at entry and exit."""

    topic: ClassVar[str] = t.ENRICHED_TRADES

    context: dict[str, Any] = Field(default_factory=dict)


class BehavioralAlert(Message):
    """A behavioural alert on ``behavioral-alerts``: which trades triggered it and why."""

    plain_json: ClassVar[bool] = True
    topic: ClassVar[str] = t.BEHAVIORAL_ALERTS
    key_field: ClassVar[str | None] = "user_id"

    alert_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    alert_type: str = Field(min_length=1)
    severity: Literal["low", "medium", "high"]
    timestamp: int = Field(gt=0)
    trade_ids: list[str] = Field(min_length=1)
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    # Extension: retracts the alert of this id (superseded by one anchored elsewhere).
    void: bool = False
