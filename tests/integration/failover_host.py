"""One "host" of the trading failover test (tests/integration/test_failover.py), run as a process
of its own: the decision stage and the virtual exchange on threads, on the tests' Kafka broker
(``KAFKA_BOOTSTRAP_SERVERS``), the exchange writing the account to the PostgreSQL store that
``DATABASE_URL`` names (opened through ``storage.db.open_database`` from the configuration, as the
app opens it), with a ``DATA_DIR`` of this host's own. Every host of a run uses the same stage
names, so the same consumer groups: a host started after another died takes over its partitions
from the last commits and rebuilds its paper account from ``crypto.orders``.

    python -m tests.integration.failover_host SUFFIX ACCOUNT MODEL

Prints ``ready`` once the stages run, then a JSON line every 0.1 s: each stage's processed count
and whether it has rebuilt its state. SIGKILL is a host dying; SIGTERM stops the stages cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import ClassVar

from pipeline.bus.kafka import KafkaBus
from pipeline.config import load_config
from pipeline.runner import StageRunner
from pipeline.stages.decision import DecisionStage
from pipeline.stages.virtual_exchange import VirtualExchangeStage
from storage.db import open_database


def main() -> None:
    suffix, account, model = sys.argv[1:4]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(dict(os.environ))
    assert config.database_url and config.kafka_bootstrap_servers, "DATABASE_URL and Kafka must be set"
    db = open_database(config)
    bus = KafkaBus(config.kafka_bootstrap_servers)

    class Decision(DecisionStage):
        name: ClassVar[str] = f"decision-{suffix}"

    class Venue(VirtualExchangeStage):
        name: ClassVar[str] = f"virtual-exchange-{suffix}"

    decision = Decision(bus, model=model, account=account)
    venue = Venue(bus, db, account=account)
    runners = [StageRunner(decision, bus, poll_timeout=0.2), StageRunner(venue, bus, poll_timeout=0.2)]
    for r in runners:
        r.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)

    def report() -> None:
        state = {
            "processed": {r.name: r.health.processed for r in runners},
            "rebuilt": {"decision": decision.rebuilt, "venue": venue.rebuilt},
            "errors": {r.name: r.health.snapshot().last_error for r in runners if r.health.snapshot().last_error},
        }
        print(json.dumps(state), flush=True)

    while not stop.wait(0.1):
        report()
    for r in runners:
        r.stop()
    report()
    db.close()
    bus.close()


if __name__ == "__main__":
    main()
