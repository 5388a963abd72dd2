"""Exchange accounts from the environment: the desk's own clients and any other exchange through ccxt."""

from __future__ import annotations

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
