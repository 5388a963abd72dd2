"""Commands that operate the pipeline: browse, redrive, offsets (``pipeline.operations``).

``browse`` reads any topic without joining a consumer group; ``redrive`` sends dead letters back to
their source topic once each, at ``REDRIVE_RATE`` messages a second; ``offsets`` shows a group's
committed offsets, or resets them (only while the group has no active members).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from pipeline.bus import create_bus
from pipeline.cli.common import config_from_env
from pipeline.operations import browse, offsets, redrive
from pipeline.operations.browse import Filters


def _cursor(text: str) -> dict[int, int]:
    """``0:120,1:98`` (partition:offset, as a page prints them) into a cursor."""
    try:
        return {int(p): int(o) for p, o in (part.split(":") for part in text.split(",") if part)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write PARTITION:OFFSET[,PARTITION:OFFSET...]") from None


def _cursor_text(cursor: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def cmd_browse(args: argparse.Namespace) -> int:
    filters = Filters(key=args.key, grep=args.grep, path=args.path, equals=args.equals)
    bus = create_bus(config_from_env())
    try:
        if args.after or args.before:
            cursor = args.after or args.before
            parts = browse.partitions_of(bus, args.topic, args.partition)
            unknown = sorted(set(cursor) - set(parts))
            if unknown:
                raise browse.FilterError(f"the cursor names partition(s) {unknown} that this browse does not cover")
            direction: browse.Direction = "forward" if args.after else "backward"
            page = browse.turn(bus, args.topic, parts, cursor, direction, args.limit, filters)
        else:
            start: browse.Start = "end"
            at_ms = None
            if args.from_offset is not None:
                start = "offset"
            elif args.from_time is not None:
                target = offsets.Target.parse(args.from_time)
                if target.kind != "time":
                    raise offsets.ResetError(f"--from-time {args.from_time!r} is not a time (ISO, or -15m/-2h/-1d)")
                start, at_ms = "time", target.value
            elif args.from_beginning:
                start = "beginning"
            page = browse.open_page(
                bus,
                args.topic,
                partition=args.partition,
                start=start,
                offset=args.from_offset,
                time_ms=at_ms,
                size=args.limit,
                filters=filters,
            )
    finally:
        bus.close()
    if args.json:
        print(
            json.dumps(
                {
                    "topic": page.topic,
                    "records": [browse.describe(r) for r in page.records],
                    "before": {str(p): o for p, o in page.before.items()},
                    "after": {str(p): o for p, o in page.after.items()},
                    "scanned": page.scanned,
                    "exhausted": page.exhausted,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    for r in page.records:
        shown = browse.describe(r)
        headers = " ".join(f"{k}={v}" for k, v in shown["headers"].items())
        print(
            f"# {r.partition}:{r.offset}  {_time(r.timestamp)}  key={shown['key']}"
            + (f"  {headers}" if headers else "")
        )
        value = shown["value"]
        print(json.dumps(value, indent=2, ensure_ascii=False) if not isinstance(value, str) else value)
    more = " (scan limit reached: the next page goes on from there)" if page.exhausted else ""
    print(f"-- {len(page.records)} message(s), {page.scanned} scanned{more}")
    if not page.at_start:
        print(f"-- previous page: --before {_cursor_text(page.before)}")
    if not page.at_end:
        print(f"-- next page: --after {_cursor_text(page.after)}")
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from storage.db import open_database

    config = config_from_env()
    which = redrive.LetterFilter(
        conditions=redrive.LetterFilter.parse(args.filter or []),
        filters=Filters(grep=args.grep, path=args.path, equals=args.equals),
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
    )
    redrive.source_of(args.dlq_topic)
    bus = create_bus(config)
    db = open_database(config)
    producer = bus.producer()
    try:
        items = redrive.letters(bus, args.dlq_topic, which, limit=args.limit)
        report = redrive.redrive(db, producer, items, rate=args.rate or config.redrive_rate, dry_run=args.dry_run)
    finally:
        producer.close()
        db.close()
        bus.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0 if not report.failed else 1
    verb = "would publish" if report.dry_run else "published"
    print(
        f"{args.dlq_topic}: {report.selected} selected, {verb} {report.published}, skipped {report.skipped}, "
        f"failed {report.failed} in {report.seconds:.2f} s"
    )
    for reason, n in sorted(report.reasons.items()):
        print(f"  {n} {reason}")
    for error in report.errors:
        print(f"  failed: {error}")
    return 0 if not report.failed else 1


def cmd_offsets(args: argparse.Namespace) -> int:
    bus = create_bus(config_from_env())
    try:
        if args.reset_to is None:
            state = offsets.group(bus, args.group)
            if state is None:
                raise offsets.ResetError(f"there is no consumer group {args.group!r} on the {bus.name} bus")
            rows: list[dict[str, Any]] = [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end_offset,
                    "lag": p.lag,
                }
                for p in state.partitions
                if args.topic is None or p.topic == args.topic
            ]
            print(f"{args.group}: {state.members} member(s), lag {sum(r['lag'] for r in rows)}")
            for r in rows:
                print(f"  {r['topic']}[{r['partition']}]  committed {r['committed']}  end {r['end']}  lag {r['lag']}")
            return 0
        plan = offsets.plan(
            bus, args.group, offsets.Target.parse(args.reset_to), topic=args.topic, partition=args.partition
        )
        if not args.dry_run:
            offsets.apply(bus, plan)
    finally:
        bus.close()
    print(f"{args.group}: {'would reset' if args.dry_run else 'reset'} to {plan.target}")
    for m in plan.moves:
        print(
            f"  {m.topic}[{m.partition}]  {m.current if m.current is not None else '-'} -> {m.new}  lag {m.lag_after}"
        )
    if args.dry_run:
        print("dry run: nothing changed")
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("browse", help="a page of any topic's messages, read without joining a consumer group")
    p.add_argument("topic")
    p.add_argument("--partition", type=int, default=None, help="one partition (default: all, in time order)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=int, default=None, metavar="N", help="forward from offset N")
    start.add_argument(
        "--from-time",
        default=None,
        metavar="T",
        help="forward from an ISO time, or back from now: --from-time=-15m, -2h, -1d",
    )
    start.add_argument("--from-beginning", action="store_true", help="forward from the start")
    start.add_argument("--after", type=_cursor, default=None, metavar="P:O,...", help="the page after a printed one")
    start.add_argument("--before", type=_cursor, default=None, metavar="P:O,...", help="the page before a printed one")
    p.add_argument("--key", default=None, help="only messages with this key")
    p.add_argument("--grep", default=None, metavar="S", help="only values containing S (any case)")
    p.add_argument("--path", default=None, help="only values where this JSON path selects something, e.g. $.symbol")
    p.add_argument("--equals", default=None, help="with --path: ... something equal to this (JSON or text)")
    p.add_argument("--limit", type=int, default=20, help="messages per page (default 20; the newest without --from-*)")
    p.add_argument("--json", action="store_true", help="the page as JSON, with its cursors")
    p.set_defaults(fn=cmd_browse)

    p = sub.add_parser("redrive", help="send dead letters back to their source topic, each message once")
    p.add_argument("dlq_topic", metavar="DLQ_TOPIC")
    p.add_argument(
        "--filter",
        action="append",
        metavar="FIELD=VALUE|FIELD~TEXT",
        help="on the dead letter's fields, e.g. stage=normalizer, reason~stale (repeatable: all must hold)",
    )
    p.add_argument("--grep", default=None, metavar="S", help="only dead letters containing S (any case)")
    p.add_argument("--path", default=None, help="only dead letters where this JSON path selects something")
    p.add_argument("--equals", default=None, help="with --path: ... something equal to this")
    p.add_argument("--partition", type=int, default=None, help="one partition of the dead-letter topic")
    p.add_argument("--from-offset", type=int, default=None, metavar="N")
    p.add_argument("--to-offset", type=int, default=None, metavar="N", help="inclusive")
    p.add_argument("--limit", type=int, default=None, help="at most this many dead letters")
    p.add_argument("--rate", type=float, default=None, help="messages a second (default REDRIVE_RATE, 2000)")
    p.add_argument("--dry-run", action="store_true", help="say what would be published and skipped; publish nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_redrive)

    p = sub.add_parser("offsets", help="a consumer group's committed offsets, or reset them while it is empty")
    p.add_argument("group")
    p.add_argument(
        "--reset-to",
        default=None,
        metavar="earliest|latest|TIME|OFFSET",
        help="TIME: an ISO time or -15m/-2h/-1d; OFFSET: a whole number",
    )
    p.add_argument("--topic", default=None, help="only this topic (default: every topic the group committed on)")
    p.add_argument("--partition", type=int, default=None, help="with --topic: only this partition")
    p.add_argument("--dry-run", action="store_true", help="print the new offsets; change nothing")
    p.set_defaults(fn=cmd_offsets)
