"""The journal's workers: its four stages, exchange trade history (the desk's Binance and Bybit
clients, ccxt for the others), live own fills from the exchanges' private streams, and the HTTP API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ExchangeKeys
from pipeline.errors import ConfigError
from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory

if TYPE_CHECKING:
    from pipeline.sources.exchange_api import TradeHistoryClient


def _normalizer(rt: Runtime) -> Worker:
    from pipeline.stages.normalizer import Normalizer

    return StageRunner(Normalizer(rt.db, rt.config.account_currency), rt.bus)


def _enricher(rt: Runtime) -> Worker:
    from pipeline.stages.enricher import Enricher

    return StageRunner(Enricher(rt.db), rt.bus)


def _behaviour(rt: Runtime) -> Worker:
    from pipeline.stages.behaviour import BehaviourStage

    # Its cost is mostly per batch (the context it reads): while trades keep coming it gathers what
    # arrives for a moment; a trade after a quiet spell is handled at once (docs/delivery.md#latency).
    wait_s = rt.config.behaviour_batch_wait_ms / 1000
    return StageRunner(BehaviourStage(rt.db, rt.config.behaviour), rt.bus, fill_wait_s=wait_s, fill_when_busy=True)


def _journal_store(rt: Runtime) -> Worker:
    from pipeline.stages.journal_store import JournalStore

    return StageRunner(JournalStore(rt.db), rt.bus)


def _history_client(k: ExchangeKeys) -> TradeHistoryClient:
    if k.via != "ccxt":
        from pipeline.sources.exchange_api import client_for

        return client_for(k.venue, k.api_key, k.api_secret, k.base_url)
    from pipeline.sources.ccxt_history import CcxtClient  # ccxt loads only when an exchange needs it

    return CcxtClient(k.venue, k.api_key, k.api_secret, password=k.password, base_url=k.base_url)


def _exchange_history(rt: Runtime) -> list[Worker]:
    from pipeline.sources.trade_history import ExchangeHistorySource
    from storage.ledger import last_fill_time_from

    if not rt.config.exchange_keys:
        raise ConfigError(
            "exchange-history needs BINANCE_API_KEY and BINANCE_API_SECRET, BYBIT_API_KEY and "
            "BYBIT_API_SECRET, or CCXT_EXCHANGES with <ID>_API_KEY and <ID>_API_SECRET, in the environment or .env"
        )
    user = rt.config.user_id
    return [
        ExchangeHistorySource(
            _history_client(k),
            rt.producer,
            user_id=user,
            symbols=rt.config.symbols,
            resume=lambda symbol, venue: last_fill_time_from(rt.db, user, symbol, venue),
        )
        for k in rt.config.exchange_keys
    ]


def _keys(rt: Runtime, venue: str, stage: str) -> ExchangeKeys:
    keys = next((k for k in rt.config.exchange_keys if k.venue == venue and k.via == "desk"), None)
    if keys is None:
        prefix = venue.upper()
        raise ConfigError(f"{stage} needs {prefix}_API_KEY and {prefix}_API_SECRET in the environment or .env")
    return keys


def _binance_user_stream(rt: Runtime) -> Worker:
    from pipeline.sources.exchange_api import BinanceClient
    from pipeline.sources.user_stream import BinanceUserStream

    keys = _keys(rt, "binance", "binance-user-stream")
    rest = keys.base_url or "https://api.binance.com"
    return BinanceUserStream(
        rt.producer,
        BinanceClient(keys.api_key, keys.api_secret, base_url=rest),
        api_key=keys.api_key,
        user_id=rt.config.user_id,
        symbols=rt.config.symbols,
        rest_url=rest,
        ws_url=rt.config.feed_urls.get("binance-ws", "wss://stream.binance.com:9443"),
    )


def _bybit_execution_stream(rt: Runtime) -> Worker:
    from pipeline.sources.exchange_api import BybitClient
    from pipeline.sources.user_stream import BybitExecutionStream

    keys = _keys(rt, "bybit", "bybit-execution-stream")
    rest = keys.base_url or "https://api.bybit.com"
    return BybitExecutionStream(
        rt.producer,
        BybitClient(keys.api_key, keys.api_secret, base_url=rest),
        api_key=keys.api_key,
        api_secret=keys.api_secret,
        user_id=rt.config.user_id,
        symbols=rt.config.symbols,
        ws_url=rt.config.feed_urls.get("bybit-private", "wss://stream.bybit.com"),
    )


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
    "binance-user-stream": _binance_user_stream,
    "bybit-execution-stream": _bybit_execution_stream,
    "api": _api,
}
