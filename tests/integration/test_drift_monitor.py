"""The drift monitor on a real store and both buses: a planted drift in stored signals and bars makes
one high-priority alert on ``alerts`` (which the notifier turns into a message), stored checks for
the Signals page, and no second alert for the same state, even after a restart."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from pipeline.bus.base import Bus, read_to_end
from pipeline.jobs.drift import DriftMonitor
from pipeline.messages import Alert, decode
from pipeline.ml.registry import Registry
from pipeline.stages.notifier import Notifier
from pipeline.topics import ALERTS, CATALOG
from storage import drift, market, models
from storage import signals as signal_store
from storage.db import Database

M = 60_000
T0 = 1_731_900_000_000 - 1_731_900_000_000 % M


def plant(db: Database, symbol: str, bars: int, hits: int) -> None:
    """A model that always says up, v1 active, walk-forward accuracy 60 % (horizon 1); ``bars`` bars whose
    close rises 0.1 % after the first ``hits`` of them and falls 0.1 % after the rest."""
    closes = [100.0]
    for i in range(bars):
        closes.append(closes[-1] * (1.001 if i < hits else 0.999))
    metrics = {"accuracy": 0.6, "profit_pct": 0.0, "samples": 10_000}
    head = (symbol, "random_forest", 1, 0, T0, "/nowhere/v1.joblib", M, 1, T0 - 1000 * M, T0, 10_000)
    row = (*head, "[]", "{}", json.dumps(metrics), "{}", "{}")
    signals = [
        (symbol, "random_forest", T0 + i * M + 59_000, "HOLD", "direction", 1.0, 1.0, 0.2, 0.55, "1", "{}")
        for i in range(bars)
    ]

    def write(d) -> None:
        models.insert(d.conn, row)
        models.activate(d.conn, symbol, "random_forest", 1)
        market.add_bars(d.conn, symbol, [(T0 + i * M, c, c, c, c, 1.0) for i, c in enumerate(closes)])
        signal_store.store(d.conn, signals)

    db.write(write)


def alerts_of(bus: Bus, symbol: str, group: str) -> list[Alert]:
    out = []
    for r in read_to_end(bus, ALERTS, group):
        message = decode(ALERTS, r.value or b"")
        if isinstance(message, Alert) and message.symbol == symbol:
            out.append(message)
    return out


def test_a_planted_drift_alerts_once_and_is_stored(bus: Bus, tmp_path: Path, group_name) -> None:
    bus.create_topics(CATALOG.values())
    symbol = "D" + "".join(random.choices(string.ascii_uppercase, k=5)) + "USDT"
    db = Database(tmp_path / "desk.db")
    producer = bus.producer()
    try:
        plant(db, symbol, bars=120, hits=40)  # 40 of 120 right: far under 60 % +- 1.96 x sqrt(.24 / 120)
        registry = Registry(db, tmp_path / "models")
        settings = dict(models=("random_forest",), fee_bps=10.0, window_min=600, every_s=3600.0)
        monitor = DriftMonitor(db, registry, producer, **settings)  # type: ignore[arg-type]
        (check,) = monitor.check_once()
        assert (check.symbol, check.state, check.rows, check.hit_rate) == (symbol, "below", 120, 40 / 120)
        assert monitor.check_once()[0].state == "below" and monitor.alerts == 1  # the same state: no new alert

        (alert,) = alerts_of(bus, symbol, group_name("read"))
        assert (alert.alert_type, alert.priority, alert.data["kind"]) == ("risk_alert", "high", "model_drift")
        assert alert.message.startswith(f"{symbol} random_forest v1 drifted below its walk-forward figures")
        notification = Notifier(senders=[object()]).notification_of(alert)  # type: ignore[list-item]
        assert notification is not None and notification.title == f"High alert: risk_alert ({symbol})"

        restarted = DriftMonitor(db, registry, producer, **settings)  # type: ignore[arg-type]
        assert restarted.check_once()[0].state == "below" and restarted.alerts == 0
        assert len(alerts_of(bus, symbol, group_name("again"))) == 1

        stored = drift.history(db, symbol, "random_forest")
        assert len(stored) == 3 and set(stored["state"]) == {"below"}
        assert drift.latest(db).set_index("symbol").loc[symbol, "hit_rate"] == 40 / 120
    finally:
        producer.close()
        db.close()
