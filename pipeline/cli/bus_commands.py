"""Commands of the bus and the stages: topics, init-topics, run, api, tail, schemas."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

from pipeline.bus import create_bus
from pipeline.cli.common import config_from_env
from pipeline.errors import PipelineError
from pipeline.messages import json_schemas, trade_avro_schema
from pipeline.processes import PARENT_PID_ENV
from pipeline.topics import CATALOG

log = logging.getLogger("pipeline")


def cmd_topics(args: argparse.Namespace) -> int:
    bus = create_bus(config_from_env())
    try:
        states = bus.describe_topics()
    finally:
        bus.close()
    rows: list[dict[str, Any]] = [
        {
            "topic": s.name,
            "partitions": len(s.partitions),
            "end_offset": s.end_offset,
            "messages": s.messages,
            "cleanup.policy": s.config.get("cleanup.policy"),
            "retention.ms": s.config.get("retention.ms"),
            "in_catalog": s.name in CATALOG,
        }
        for s in states
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no topics yet: run `python -m pipeline init-topics`")
        return 0
    width = max(len(r["topic"]) for r in rows)
    print(f"{'TOPIC':<{width}}  PARTS  MESSAGES  END_OFFSET  CLEANUP  RETENTION_MS")
    for r in rows:
        print(
            f"{r['topic']:<{width}}  {r['partitions']:>5}  {r['messages']:>8}  {r['end_offset']:>10}  "
            f"{r['cleanup.policy'] or '-':<7}  {r['retention.ms'] or '-'}"
        )
    return 0


def cmd_init_topics(_args: argparse.Namespace) -> int:
    bus = create_bus(config_from_env())
    try:
        created = bus.create_topics(CATALOG.values())
    finally:
        bus.close()
    for name, new in sorted(created.items()):
        print(f"{'created' if new else 'exists '}  {name}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.wiring import build_runtime

    config = config_from_env()
    runtime = build_runtime(config, tuple(args.stage) if args.stage else None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    names = ", ".join(w.name for w in runtime.workers)
    print(f"running {names} on the {runtime.bus.name} bus; Ctrl-C stops", file=sys.stderr)
    # Started by a runtime (STAGE_PROCESSES): stop when that process is gone, however it ended.
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    ticks = 0
    try:
        while not stop.wait(1.0):
            if parent and os.getppid() != parent:
                print(f"the process that started this one ({parent}) is gone; stopping", file=sys.stderr)
                break
            ticks += 1
            if ticks % 10 == 0:
                for h in runtime.health():
                    log.info(
                        "%s running=%s processed=%d produced=%d dead=%d errors=%d lag=%d",
                        h.name,
                        h.running,
                        h.processed,
                        h.produced,
                        h.dead_lettered,
                        h.errors,
                        h.lag,
                    )
    except KeyboardInterrupt:
        pass
    print("stopping...", file=sys.stderr)
    runtime.stop()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the trades API with the configured stages running in this process."""
    import dataclasses

    from pipeline.wiring import build_runtime

    config = config_from_env()
    stages = (*(s for s in config.stages if s != "api"), "api")
    config = dataclasses.replace(
        config, api_host=args.host or config.api_host, api_port=args.port if args.port is not None else config.api_port
    )
    runtime = build_runtime(config, stages)
    api = next(w for w in runtime.workers if w.name == "api")
    if not api.wait_started(15.0):  # type: ignore[attr-defined]
        runtime.stop()
        raise PipelineError(
            api.health.snapshot().last_error or f"the trades API did not start on {config.api_host}:{config.api_port}"
        )
    from pipeline.api.guard import wide_bind_notice

    notice = wide_bind_notice(config.api_host)
    if notice:
        print(f"warning: {notice}", file=sys.stderr, flush=True)
    print(
        f"trades API on http://{config.api_host}:{config.api_port} (docs at /docs) with "
        f"{', '.join(w.name for w in runtime.workers if w.name != 'api')} on the {runtime.bus.name} bus; "
        "Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0) and api.health.snapshot().running:
            pass
    except KeyboardInterrupt:
        pass
    runtime.stop()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print the API's bearer token of the desk's user (or ``--user``), creating it on first use."""
    from pipeline.api.tokens import TokenStore

    config = config_from_env()
    print(TokenStore(config.data_dir).token_for(args.user or config.user_id))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    bus = create_bus(config_from_env())
    consumer = bus.consumer(
        f"tail-{uuid.uuid4().hex[:8]}", [args.topic], auto_offset_reset="earliest" if args.from_beginning else "latest"
    )
    shown = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.max_messages is None or shown < args.max_messages:
            if deadline is not None and time.monotonic() > deadline:
                break
            for r in consumer.poll(500, 0.5):
                key = r.key.decode("utf-8", "replace") if r.key is not None else ""
                value = r.value.decode("utf-8", "replace") if r.value is not None else "null"
                prefix = f"{r.partition}:{r.offset}\t{key}\t" if args.print_keys else ""
                print(prefix + value, flush=True)
                shown += 1
                if args.max_messages is not None and shown >= args.max_messages:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        bus.close()
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    print(json.dumps(trade_avro_schema() if args.avro else json_schemas(), indent=2))
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("topics", help="list topics as the bus sees them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_topics)
    sub.add_parser("init-topics", help="create the catalog's topics (idempotent)").set_defaults(fn=cmd_init_topics)
    p = sub.add_parser("run", help="run stages headless until Ctrl-C")
    p.add_argument("--stage", action="append", metavar="NAME", help="stage to run (repeatable)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("api", help="serve the trades API (and the configured stages) until Ctrl-C")
    p.add_argument("--host", default=None, help="interface to bind (default API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default API_PORT or 8000)")
    p.set_defaults(fn=cmd_api)
    p = sub.add_parser("token", help="print the API's bearer token (created on first use, kept in DATA_DIR)")
    p.add_argument("--user", default=None, help="the user the token acts for (default USER_ID)")
    p.set_defaults(fn=cmd_token)
    p = sub.add_parser("tail", help="print a topic's messages, like kafka-console-consumer")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--print-keys", action="store_true", help="prefix partition:offset and key")
    p.add_argument("--max-messages", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(fn=cmd_tail)
    p = sub.add_parser("schemas", help="print the JSON Schema of every topic (or --avro: the Trade record)")
    p.add_argument("--avro", action="store_true")
    p.set_defaults(fn=cmd_schemas)
