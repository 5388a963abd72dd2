"""The ``drift-monitor`` worker: every ``every_s`` it judges each active model's live signals over the
last ``window_min`` minutes of its symbol's bars against its walk-forward figures
(``pipeline.ml.drift``), stores the check for the Signals page (``storage.drift``), and publishes an
alert on ``alerts`` (which the notifier sends) when a model's state turns ``below`` or ``above``.

A model is alerted once per state change: the worker remembers each model version's last state, and
reads it back from the store when it starts, so a restart does not alert again. The window ends at
the symbol's newest bar, not the wall clock, so a replay is judged on its own time.

Cost per check: two indexed reads (one signal per bar, the bars) and a few array operations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.bus.base import Producer
from pipeline.messages import Alert, encode
from pipeline.ml.drift import DriftCheck, assess, live_rows
from pipeline.ml.registry import Registry
from pipeline.runner import Worker
from pipeline.topics import ALERTS
from storage import drift as door
from storage import market
from storage import signals as signal_store
from storage.db import Database

log = logging.getLogger(__name__)
MINUTE_MS = 60_000


def alert_of(check: DriftCheck) -> Alert:
    """The ``alerts`` message of a model whose state turned below or above its band."""
    at = datetime.fromtimestamp(check.window_end / 1000, UTC).isoformat(timespec="seconds")
    return Alert(
        alert_id=f"drift-{check.symbol}-{check.model}-v{check.version}-{check.state}-{check.window_end}",
        symbol=check.symbol,
        alert_type="risk_alert",
        priority="high",
        timestamp=at,
        message=check.message,
        data={"kind": "model_drift", **check.to_dict()},
    )


class DriftMonitor(Worker):
    """Runs ``check_once`` on its own thread every ``every_s``."""

    kind = "source"

    def __init__(
        self,
        db: Database,
        registry: Registry,
        producer: Producer,
        *,
        models: Sequence[str],
        fee_bps: float,
        window_min: int = 360,
        z: float = 1.96,
        min_periods: int = 10,
        every_s: float = 60.0,
    ) -> None:
        super().__init__("drift-monitor")
        self.db, self.registry, self.producer = db, registry, producer
        self.models, self.fee_bps = tuple(models), fee_bps
        self.window_min, self.z, self.min_periods, self.every_s = window_min, z, min_periods, every_s
        self.states: dict[tuple[str, str, int], str] | None = None
        self.alerts = 0

    def status(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "models": len(self.states or {})}

    def _known_states(self) -> dict[tuple[str, str, int], str]:
        latest = door.latest(self.db)
        return {(r.symbol, r.model, int(r.version)): str(r.state) for r in latest.itertuples(index=False)}

    def check_once(self) -> list[DriftCheck]:
        """Judge every active model now; store the checks, publish the alerts; return the checks."""
        if self.states is None:
            self.states = self._known_states()
        newest = market.newest_bars(self.db)
        checks: list[DriftCheck] = []
        for record in self.registry.records(active_only=True):
            if record.model not in self.models or record.symbol not in newest:
                continue
            end = newest[record.symbol]
            start = end - self.window_min * MINUTE_MS
            signals = signal_store.last_per_bar(self.db, record.symbol, record.model, start, record.interval_ms)
            bars = market.ohlc_between(self.db, record.symbol, start, end)
            starts, expected, realised = live_rows(signals, bars, record.horizon, record.interval_ms)
            checks.append(
                assess(
                    symbol=record.symbol,
                    model=record.model,
                    version=record.version,
                    metrics=record.metrics,
                    horizon=record.horizon,
                    fee_bps=self.fee_bps,
                    starts=starts,
                    expected=expected,
                    realised=realised,
                    window=(start, end),
                    z=self.z,
                    min_periods=self.min_periods,
                )
            )
        if not checks:
            return checks
        now = int(time.time() * 1000)
        rows = [c.to_dict() for c in checks]
        self.db.write(lambda d: door.store(d.conn, rows, now))
        fired = 0
        for c in checks:
            key = (c.symbol, c.model, c.version)
            before = self.states.get(key)
            self.states[key] = c.state
            if c.state in ("below", "above") and before != c.state:
                alert = alert_of(c)
                self.producer.produce(ALERTS, encode(alert), key=alert.key())
                fired += 1
        if fired:
            if self.producer.flush(30.0):
                log.warning("drift-monitor: %d alerts not delivered", fired)
            self.alerts += fired
        return checks

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                checks = self.check_once()
            except Exception as exc:  # one bad check must not stop the monitor; the next round tries again
                log.exception("drift-monitor: the check failed")
                self.health.error(f"{type(exc).__name__}: {exc}")
            else:
                with self.health.lock:
                    self.health.processed += len(checks)
                    self.health.last_activity_at = time.time()
            self._stop.wait(self.every_s)
