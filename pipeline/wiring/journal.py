"""The journal's workers: its four stages, exchange trade history, and the HTTP API."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory


def _normalizer(rt: Runtime) -> Worker:
    from pipeline.stages.normalizer import Normalizer

    return StageRunner(Normalizer(rt.db), rt.bus)


def _enricher(rt: Runtime) -> Worker:
    from pipeline.stages.enricher import Enricher

    return StageRunner(Enricher(rt.db), rt.bus)


def _behaviour(rt: Runtime) -> Worker:
    from pipeline.stages.behaviour import BehaviourStage

    return StageRunner(BehaviourStage(rt.db, rt.config.behaviour), rt.bus)


def _journal_store(rt: Runtime) -> Worker:
    from pipeline.stages.journal_store import JournalStore

    return StageRunner(JournalStore(rt.db), rt.bus)


def _exchange_history(rt: Runtime) -> list[Worker]:
    from pipeline.sources.exchange_api import client_for
    from pipeline.sources.trade_history import ExchangeHistorySource

    if not rt.config.exchange_keys:
        raise ConfigError(
            "exchange-history needs BINANCE_API_KEY and BINANCE_API_SECRET, or BYBIT_API_KEY and "
            "BYBIT_API_SECRET, in the environment or .env"
        )
    return [
        ExchangeHistorySource(
            client_for(k.venue, k.api_key, k.api_secret, k.base_url),
            rt.producer,
            user_id=rt.config.user_id,
            symbols=rt.config.symbols,
        )
        for k in rt.config.exchange_keys
    ]


def _api(rt: Runtime) -> Worker:
    from pipeline.api.app import create_app  # FastAPI loads only when the API is wanted
    from pipeline.api.server import ApiServer

    return ApiServer(create_app(rt.api_context()), rt.config.api_host, rt.config.api_port)


FACTORIES: dict[str, WorkerFactory] = {
    "normalizer": _normalizer,
    "enricher": _enricher,
    "behaviour": _behaviour,
    "journal-store": _journal_store,
    "exchange-history": _exchange_history,
    "api": _api,
}
