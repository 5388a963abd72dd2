"""Exchange accounts from the environment: the desk's own clients and any other exchange through ccxt."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import exchange_keys_from_env, load_config
from pipeline.errors import ConfigError


def test_ccxt_exchanges_take_their_keys_password_and_url_and_never_show_secrets() -> None:
    env = {
        "CCXT_EXCHANGES": "kraken, okx",
        "KRAKEN_API_KEY": "kraken-key-123",
        "KRAKEN_API_SECRET": "kraken-secret-xyz",
        "OKX_API_KEY": "okx-key-456",
        "OKX_API_SECRET": "okx-secret-abc",
        "OKX_API_PASSWORD": "okx-passphrase",
        "OKX_BASE_URL": "http://127.0.0.1:39611",
    }
    kraken, okx = exchange_keys_from_env(env)
    assert (kraken.venue, kraken.via, kraken.password, kraken.base_url) == ("kraken", "ccxt", None, None)
    assert (okx.venue, okx.via, okx.password, okx.base_url) == (
        "okx",
        "ccxt",
        "okx-passphrase",
        "http://127.0.0.1:39611",
    )
    shown = str(load_config(env).redacted())
    assert not any(secret in shown for secret in ("kraken-secret-xyz", "okx-secret-abc", "okx-passphrase"))


def test_a_ccxt_exchange_without_its_secret_or_with_a_bad_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="KRAKEN_API_SECRET"):
        exchange_keys_from_env({"CCXT_EXCHANGES": "kraken", "KRAKEN_API_KEY": "k"})
    with pytest.raises(ConfigError, match="ccxt exchange id"):
        exchange_keys_from_env({"CCXT_EXCHANGES": "kra ken!"})
    assert exchange_keys_from_env({"CCXT_EXCHANGES": "kraken"}) == ()  # named, but no keys: off


def test_the_wiring_builds_the_live_streams_and_a_ccxt_sync_from_the_settings(tmp_path: Path) -> None:
    from pipeline.sources.ccxt_history import CcxtClient
    from pipeline.sources.trade_history import ExchangeHistorySource
    from pipeline.sources.user_stream import BinanceUserStream, BybitExecutionStream
    from pipeline.wiring import build_runtime

    env = {
        "DATA_DIR": str(tmp_path),
        "BINANCE_API_KEY": "bk",
        "BINANCE_API_SECRET": "bs",
        "BYBIT_API_KEY": "yk",
        "BYBIT_API_SECRET": "ys",
        "BINANCE_WS_URL": "ws://127.0.0.1:39611",
        "BYBIT_PRIVATE_WS_URL": "ws://127.0.0.1:39612",
        "CCXT_EXCHANGES": "kraken",
        "KRAKEN_API_KEY": "kk",
        "KRAKEN_API_SECRET": "a2tzZWNyZXQ=",
    }
    rt = build_runtime(
        load_config(env), ("binance-user-stream", "bybit-execution-stream", "exchange-history"), start=False
    )
    try:
        binance, bybit, *history = rt.workers
        assert isinstance(binance, BinanceUserStream) and binance.ws_url == "ws://127.0.0.1:39611"
        assert isinstance(bybit, BybitExecutionStream) and bybit.ws_url == "ws://127.0.0.1:39612"
        assert [type(h.client).__name__ for h in history if isinstance(h, ExchangeHistorySource)] == [
            "BinanceClient",
            "BybitClient",
            "CcxtClient",
        ]
        assert isinstance(history[2].client, CcxtClient) and history[2].client.venue == "kraken"  # type: ignore[attr-defined]
    finally:
        rt.stop()


def test_a_live_stream_without_keys_is_a_config_error(tmp_path: Path) -> None:
    from pipeline.wiring import build_runtime

    with pytest.raises(ConfigError, match="BINANCE_API_KEY"):
        build_runtime(load_config({"DATA_DIR": str(tmp_path)}), ("binance-user-stream",), start=False)
