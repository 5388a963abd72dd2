"""The one place that turns a ``Config`` into a running pipeline: bus, topics, store, workers.

``Runtime`` is what the app (through ``runtime.get_runtime``) and ``python -m pipeline run``
hold. Its methods are called from page threads; workers run on their own threads.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.bus import create_bus
from pipeline.bus.base import Bus, GroupState, TopicState
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.runner import Health, StageRunner, Worker
from pipeline.sources.simulator import MarketSimulator, SimulatorSource
from pipeline.stages.market_store import MarketStore
from pipeline.topics import CATALOG
from storage.db import Database

log = logging.getLogger(__name__)

WorkerFactory = Callable[[Config, Bus, Database], Worker]

WORKERS: dict[str, WorkerFactory] = {
    "simulator": lambda c, bus, db: SimulatorSource(
        bus, MarketSimulator(c.symbols, c.simulator_seed), tick_ms=c.simulator_tick_ms,
        history_minutes=c.simulator_history_minutes),
    "market-store": lambda c, bus, db: StageRunner(MarketStore(db), bus),
}

KNOWN_STAGES = frozenset(WORKERS)


@dataclass
class Runtime:
    """A running pipeline. Thread-safe to read; ``stop`` once at shutdown."""

    config: Config
    bus: Bus
    db: Database
    workers: list[Worker] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    def health(self) -> list[Health]:
        """Return a snapshot of every worker's health."""
        return [w.health.snapshot() for w in self.workers]

    def topics(self) -> list[TopicState]:
        return self.bus.describe_topics()

    def groups(self) -> list[GroupState]:
        return self.bus.describe_groups()

    def stop(self) -> None:
        """Stop workers (sources first, so stages can drain), then close the store and bus."""
        for w in sorted(self.workers, key=lambda w: w.kind != "source"):
            w.stop()
        self.db.close()
        self.bus.close()


def build_runtime(config: Config, stages: tuple[str, ...] | None = None, *, start: bool = True) -> Runtime:
    """Connect to the bus, create the catalog's topics, open the store and start the stages."""
    names = stages if stages is not None else config.stages
    unknown = [n for n in names if n not in WORKERS]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; known: {', '.join(sorted(WORKERS))}")
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        bus = create_bus(config)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"DATA_DIR={str(config.data_dir)!r} is not usable: {exc}") from exc
    bus.create_topics(CATALOG.values())
    try:
        db = Database(config.data_dir / "desk.db")
    except (OSError, sqlite3.Error) as exc:
        bus.close()
        raise ConfigError(f"DATA_DIR={str(config.data_dir)!r} is not usable: {exc}") from exc
    runtime = Runtime(config, bus, db, [WORKERS[n](config, bus, db) for n in names])
    if start:
        for w in runtime.workers:
            w.start()
    log.info("pipeline started on the %s bus with %s", bus.name, ", ".join(names) or "no stages")
    return runtime
