"""The review workers: the paper account's closed positions into the journal, the excursions of
every closed trade, the models' drift alarm, and the consumer groups' lag history."""

from __future__ import annotations

from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory


def _paper_journal(rt: Runtime) -> Worker:
    from pipeline.stages.paper_journal import PaperJournal

    return StageRunner(PaperJournal(), rt.bus)


def _excursions(rt: Runtime) -> Worker:
    from pipeline.jobs.excursions import ExcursionsWorker

    return ExcursionsWorker(rt.db, rt.config.journal_risk, backfill_url=rt.config.bars_backfill_url)


def _drift_monitor(rt: Runtime) -> Worker:
    from pipeline.jobs.drift import DriftMonitor

    c = rt.config
    return DriftMonitor(
        rt.db,
        rt.registry,
        rt.bus.producer(),
        models=c.ml_models,
        fee_bps=c.ml_fee_bps,
        window_min=c.drift_window_min,
        z=c.drift_z,
        min_periods=c.drift_min_periods,
    )


def _lag_history(rt: Runtime) -> Worker:
    from pipeline.jobs.lag_history import LagRecorder

    return LagRecorder(rt.db, rt.bus)


FACTORIES: dict[str, WorkerFactory] = {
    "paper-journal": _paper_journal,
    "excursions": _excursions,
    "drift-monitor": _drift_monitor,
    "lag-history": _lag_history,
}
