from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.wiring import KNOWN_STAGES


def test_defaults_mean_embedded_bus_under_data() -> None:
    config = load_config({})
    assert config.bus_kind == "embedded" and config.data_dir == Path("data")
    assert "BTCUSDT" in config.symbols
    assert config.stages == ("simulator", "market-store", "normalizer", "enricher", "behaviour", "journal-store",
                             "api")
    assert (config.api_host, config.api_port, config.user_id) == ("127.0.0.1", 8000, "trader")
    assert config.exchange_clients == ()  # exchange history is off unless keys are set


def test_exchange_keys_turn_clients_on_and_never_show_the_secret() -> None:
    config = load_config({"BINANCE_API_KEY": "abcd1234key", "BINANCE_API_SECRET": "topsecretvalue"})
    assert [c.venue for c in config.exchange_clients] == ["binance"]
    assert "topsecretvalue" not in str(config.redacted()) and "topsecretvalue" not in repr(config)
    with pytest.raises(ConfigError, match="BYBIT_API_SECRET"):
        load_config({"BYBIT_API_KEY": "k"})


def test_bootstrap_servers_select_kafka_and_security_passes_through_redacted() -> None:
    config = load_config({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                          "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "desk",
                          "KAFKA_SASL_PASSWORD": "s3cret"})
    assert config.bus_kind == "kafka"
    assert config.kafka_client_config == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                          "sasl.username": "desk", "sasl.password": "s3cret"}
    shown = config.redacted()
    assert shown["kafka_client_config"]["sasl.password"] == "***"
    assert "s3cret" not in repr(shown)


@pytest.mark.parametrize(("env", "message"), [
    ({"SYMBOLS": "btc"}, "SYMBOLS"),
    ({"SIMULATOR_TICK_MS": "fast"}, "SIMULATOR_TICK_MS='fast' is not a whole number"),
    ({"SIMULATOR_TICK_MS": "1"}, "SIMULATOR_TICK_MS=1 must be >= 10"),
    ({"STAGES": "simulator,nope"}, "unknown ['nope']"),
])
def test_bad_settings_fail_with_one_clear_line(env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env, KNOWN_STAGES)
    assert message in str(info.value) and "\n" not in str(info.value)
