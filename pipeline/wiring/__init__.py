"""The one place that turns a ``Config`` into a running pipeline: bus, topics, store, workers.

One factory per stage name of ``pipeline.stage_catalog``, grouped by area (crypto, journal,
stocks, notify, analysis); ``build_runtime`` starts the stages ``STAGES`` names, as threads or, for
``STAGE_PROCESSES``, as processes of their own. Nothing below ``pipeline.cli`` imports this.
"""

from __future__ import annotations

import functools
import logging
import sqlite3

from pipeline.bus import create_bus
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.processes import StageProcess
from pipeline.status_board import StatusBoard
from pipeline.topics import CATALOG
from pipeline.wiring import analysis, crypto, journal, notify, review, stocks
from pipeline.wiring.runtime import Runtime, WorkerFactory, _GroupLags, tune_gc, tune_switching
from storage.db import open_database

__all__ = ["WORKERS", "Runtime", "WorkerFactory", "build_runtime", "tune_gc", "tune_switching"]

log = logging.getLogger(__name__)

# One factory per name of pipeline.stage_catalog (a unit test keeps them equal).
WORKERS: dict[str, WorkerFactory] = {
    **crypto.FACTORIES,
    **journal.FACTORIES,
    **review.FACTORIES,
    **stocks.FACTORIES,
    **notify.FACTORIES,
    **analysis.FACTORIES,
}


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
        db = open_database(config)
    except (OSError, sqlite3.Error) as exc:
        bus.close()
        raise ConfigError(f"DATA_DIR={str(config.data_dir)!r} is not usable: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the PostgreSQL store (DATABASE_URL): unreachable, refused, bad name
        bus.close()
        raise ConfigError(f"DATABASE_URL is not usable: {type(exc).__name__}: {exc}") from None
    runtime = Runtime(config, bus, db)
    try:
        lags = _GroupLags(bus)
        for n in names:
            if n in config.stage_processes:
                runtime.workers.append(StageProcess(n, config.data_dir, lag=functools.partial(lags, n)))
                continue
            made = WORKERS[n](runtime)
            runtime.workers.extend(made if isinstance(made, list) else [made])
    except BaseException:
        runtime.stop()
        raise
    if start:
        tune_gc()
        tune_switching(config.switch_interval_ms)
        for w in runtime.workers:
            w.start()
        runtime._board = StatusBoard(db, lambda: runtime.workers)
        runtime._board.start()
        from pipeline.jobs import first_run

        if first_run.wanted(config, names, lambda: runtime.registry):
            runtime.train_first_run()
    log.info("pipeline started on the %s bus with %s", bus.name, ", ".join(names) or "no stages")
    return runtime
