"""One "host" of the scale-out test (tests/integration/test_scale_out.py), run as a process of its
own: the four journal stages on threads, on the tests' Kafka broker (``KAFKA_BOOTSTRAP_SERVERS``)
under one run's topics and groups (``bench.bus.BenchBus``, shared by every host of the run), writing
to the PostgreSQL store that ``DATABASE_URL`` names, opened through ``storage.db.open_database``
from the configuration as the app opens it, with a ``DATA_DIR`` of this host's own.

    python -m tests.integration.scale_out_host RUN

Prints ``ready`` once the stages run, then a JSON line every 0.2 s: each stage's processed count
and each group's partitions assigned to this host.
SIGTERM stops the stages cleanly (they leave their groups at once); SIGKILL is a host dying.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

from bench.bus import make_bus
from bench.journal import _CLASSES, _group
from pipeline.bus.base import Consumer
from pipeline.config import load_config
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.runner import StageRunner
from pipeline.stages.behaviour import BehaviourStage
from storage.db import open_database


def main() -> None:
    run = sys.argv[1]
    config = load_config(dict(os.environ))
    assert config.database_url, "DATABASE_URL must be set"
    db = open_database(config)
    bus = make_bus("kafka", str(config.data_dir), run=run)
    consumers: dict[str, Consumer] = {}
    make_consumer = bus.consumer

    def consumer(group_id: str, *args: Any, **kwargs: Any) -> Consumer:
        consumers[group_id] = made = make_consumer(group_id, *args, **kwargs)
        return made

    bus.consumer = consumer  # type: ignore[method-assign]
    runners = []
    for cls in _CLASSES:
        # The run's topics are new: a group starts from their beginning (nothing is skipped while
        # partitions are first handed out), then from its commits.
        stage_cls = type(cls.__name__, (cls,), {"name": _group(cls, run), "offset_reset": "earliest"})
        stage = stage_cls(db, BehaviourRules()) if cls is BehaviourStage else stage_cls(db)
        runners.append(StageRunner(stage, bus, poll_timeout=0.05))
    for r in runners:
        r.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)

    def report() -> None:
        assigned = {g: sorted(c.assignment()) for g, c in list(consumers.items())}
        print(
            json.dumps({"processed": {r.name: r.health.processed for r in runners}, "assigned": assigned}), flush=True
        )

    while not stop.wait(0.2):
        report()
    for r in runners:
        r.stop()
    report()
    db.close()  # the bus is left open: closing a BenchBus deletes the run's topics, which other hosts use


if __name__ == "__main__":
    main()
