"""Configuration, loaded and validated once from the environment into a frozen object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.journal.behaviour import BehaviourRules, rules_from_env
from pipeline.journal.exchanges import TradeHistoryClient, clients_from_env

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
DEFAULT_STAGES = ("simulator", "market-store", "normalizer", "enricher", "behaviour", "journal-store", "api")
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password"})

# Environment variable -> librdkafka setting, passed through to every Kafka client.
KAFKA_SECURITY_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}


@dataclass(frozen=True)
class Config:
    """Everything the pipeline needs to start; built by ``load_config`` and passed down."""

    data_dir: Path = Path("data")
    kafka_bootstrap_servers: str | None = None
    kafka_client_config: dict[str, str] = field(default_factory=dict)
    kafka_replication_factor: int = 1
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    stages: tuple[str, ...] = DEFAULT_STAGES
    simulator_seed: int | None = None
    simulator_tick_ms: int = 1000
    simulator_history_minutes: int = 180
    # The journal's owner on this desk (trades API calls may name other users).
    user_id: str = "trader"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    behaviour: BehaviourRules = field(default_factory=BehaviourRules)
    # Exchange trade-history clients (keys from the environment; off unless keys are set).
    exchange_clients: tuple[TradeHistoryClient, ...] = ()

    @property
    def bus_kind(self) -> str:
        return "kafka" if self.kafka_bootstrap_servers else "embedded"

    def redacted(self) -> dict[str, object]:
        """Return the settings for display, with secrets replaced by ``***``."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka_client_config":
                value = {k: ("***" if k in SECRET_KEYS else v) for k, v in value.items()}
            elif f.name == "exchange_clients":
                value = [repr(c) for c in value]  # the clients' repr masks keys and never shows secrets
            elif f.name == "behaviour":
                value = vars(value) if hasattr(value, "__dict__") else repr(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def load_config(env: Mapping[str, str], known_stages: frozenset[str] | None = None) -> Config:
    """Build the configuration from environment-style settings; raise ``ConfigError`` on bad ones."""
    symbols = tuple(s.strip().upper() for s in env.get("SYMBOLS", ",".join(DEFAULT_SYMBOLS)).split(",")
                    if s.strip())
    bad = [s for s in symbols if not re.fullmatch(r"[A-Z]{3,6}USDT", s)]
    if bad or not symbols:
        raise ConfigError(f"SYMBOLS has {bad or 'nothing'}: each must match ^[A-Z]{{3,6}}USDT$")
    stages = tuple(s.strip() for s in env.get("STAGES", ",".join(DEFAULT_STAGES)).split(",") if s.strip())
    if known_stages is not None:
        unknown = [s for s in stages if s not in known_stages]
        if unknown:
            raise ConfigError(f"STAGES has unknown {unknown}; known: {', '.join(sorted(known_stages))}")
    seed = env.get("SIMULATOR_SEED")
    return Config(
        data_dir=Path(env.get("DATA_DIR") or "data"),
        kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        kafka_client_config={kafka: env[var] for var, kafka in KAFKA_SECURITY_ENV.items() if env.get(var)},
        kafka_replication_factor=_int(env, "KAFKA_REPLICATION_FACTOR", 1, 1),
        symbols=symbols,
        stages=stages,
        simulator_seed=_int(env, "SIMULATOR_SEED", 0, 0) if seed else None,
        simulator_tick_ms=_int(env, "SIMULATOR_TICK_MS", 1000, 10),
        simulator_history_minutes=_int(env, "SIMULATOR_HISTORY_MINUTES", 180, 0),
        user_id=_user_id(env.get("USER_ID") or "trader"),
        api_host=env.get("API_HOST") or "127.0.0.1",
        api_port=_int(env, "API_PORT", 8000, 0),
        behaviour=rules_from_env(env),
        exchange_clients=tuple(clients_from_env(env)),
    )


def _user_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", value):
        raise ConfigError(f"USER_ID={value!r} must be 1-64 letters, digits or _ . @ -")
    return value
