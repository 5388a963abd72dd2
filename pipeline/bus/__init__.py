"""The bus: one contract (``base``), two backends (``embedded``, ``kafka``), chosen at wiring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.bus.base import Bus

if TYPE_CHECKING:  # config knows the journal's parts, which use the bus: no import cycle at run time
    from pipeline.config import Config


def create_bus(config: Config) -> Bus:
    """Return the Kafka bus when a bootstrap address is configured, else the embedded log."""
    if config.kafka_bootstrap_servers:
        from pipeline.bus.kafka import KafkaBus

        return KafkaBus(
            config.kafka_bootstrap_servers,
            client_config=config.kafka_client_config,
            replication_factor=config.kafka_replication_factor,
        )
    from pipeline.bus.embedded import EmbeddedBus

    return EmbeddedBus(
        config.data_dir / "bus.db", shared=config.bus_shared, session_timeout_ms=config.embedded_session_timeout_ms
    )
