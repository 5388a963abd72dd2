"""Dead letters: read them, edit one, and send them back to their source topic, idempotently and at a
limited rate.

A dead letter (``DeadLetter`` on ``<topic>_dlq``) holds the original message as text, why it was
rejected (each violation's field, value and rule), where it came from (source topic, partition,
offset) and the stage that rejected it. Redriving publishes the message again on its source topic
(every consumer group of that topic sees it again; the sinks upsert by id) with the header
``redriven_from`` naming the dead letter. It is idempotent by the source coordinates
(``storage.redrive``): a message redriven twice, from one dead letter twice or from the letters of
several stages that rejected it, is published once, even when the page and the command line redrive
at the same time. Before anything is published the message is checked against its source topic's
contract: one that still breaks it is not published (an edited one is refused with the field and
the rule; in a selection it counts as failed with the same words). A redrive publishes at most
``rate`` messages a second, in batches of ``BATCH`` that are each flushed before being confirmed.
Cost per batch: one write transaction to claim, the produces, one flush, one to confirm.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import orjson

from pipeline.bus.base import Bus, Producer, Record
from pipeline.errors import BadMessageError, PipelineError
from pipeline.messages import DeadLetter, Message, decode, model_for
from pipeline.operations.browse import Filters, partitions_of
from pipeline.topics import DLQ_SUFFIX
from storage import redrive as log
from storage.db import Database

REDRIVEN_FROM = "redriven_from"
BATCH = 500
DEFAULT_RATE = 2000.0  # messages a second (REDRIVE_RATE)
MAX_ERRORS_SHOWN = 20


class RedriveError(PipelineError):
    """A redrive that cannot start (not a dead-letter topic, a bad filter): one line."""


@dataclass(frozen=True)
class Letter:
    """A dead letter and where it is on its dead-letter topic."""

    record: Record
    letter: DeadLetter

    @property
    def coordinates(self) -> log.Coordinates:
        """What it is known by: its message's place on the source topic, or its own for a frame that
        never was a message there."""
        if self.letter.source_partition >= 0 and self.letter.source_offset >= 0:
            return (self.letter.source_topic, self.letter.source_partition, self.letter.source_offset)
        return self.own

    @property
    def own(self) -> log.Coordinates:
        return (self.record.topic, self.record.partition, self.record.offset)


@dataclass
class Report:
    """What a redrive did: selected = published + skipped + failed."""

    selected: int = 0
    published: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: bool = False
    reasons: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def note(self, kind: str, reason: str, where: Letter | None = None) -> None:
        self.reasons[f"{kind}: {reason}"] += 1
        if kind == "failed" and len(self.errors) < MAX_ERRORS_SHOWN:
            at = f"{where.record.topic}[{where.record.partition}]@{where.record.offset}: " if where else ""
            self.errors.append(at + reason)

    def to_json(self) -> dict[str, object]:
        return {
            "selected": self.selected,
            "published": self.published,
            "skipped": self.skipped,
            "failed": self.failed,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "reasons": dict(self.reasons),
            "errors": self.errors,
        }


class RateLimiter:
    """A token bucket: ``wait(n)`` returns once ``n`` more messages fit under ``rate`` a second (a
    second's worth may go at once). ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise RedriveError(f"the redrive rate must be above 0 messages a second, not {rate}")
        self.rate = rate
        self.clock, self.sleep = clock, sleep
        self.tokens = rate
        self.at = clock()

    def wait(self, n: int) -> None:
        while True:
            now = self.clock()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= n or (self.tokens >= self.rate and n > self.rate):
                self.tokens -= n
                return
            self.sleep((min(n, self.rate) - self.tokens) / self.rate)


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters a redrive takes: the ``field=value`` (exact) and ``field~text``
    (substring) conditions on the letter's own fields (``stage``, ``reason``, ``source_partition``…),
    the browser's filters on its record, and a range of offsets on the dead-letter topic."""

    conditions: tuple[tuple[str, str, str], ...] = ()
    filters: Filters = field(default_factory=Filters)
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    @staticmethod
    def parse(conditions: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
        """``stage=normalizer`` or ``reason~stale`` into (field, operator, value); a bad one is one line."""
        known = set(DeadLetter.model_fields)
        out = []
        for text in conditions:
            op = "~" if "~" in text and ("=" not in text or text.index("~") < text.index("=")) else "="
            name, sep, value = text.partition(op)
            if not sep or name.strip() not in known:
                raise RedriveError(
                    f"--filter {text!r}: write FIELD=VALUE or FIELD~TEXT with a field of {', '.join(sorted(known))}"
                )
            out.append((name.strip(), op, value))
        return tuple(out)

    def matches(self, item: Letter) -> bool:
        r = item.record
        if self.partition is not None and r.partition != self.partition:
            return False
        if (self.from_offset is not None and r.offset < self.from_offset) or (
            self.to_offset is not None and r.offset > self.to_offset
        ):
            return False
        for name, op, value in self.conditions:
            got = getattr(item.letter, name)
            text = got if isinstance(got, str) else orjson.dumps(got).decode()
            if (op == "=" and text != value) or (op == "~" and value.casefold() not in text.casefold()):
                return False
        return self.filters.matches(r)


def source_of(dlq_topic: str) -> str:
    """The source topic of a dead-letter topic; anything else is one line."""
    if not dlq_topic.endswith(DLQ_SUFFIX):
        raise RedriveError(f"{dlq_topic!r} is not a dead-letter topic (<topic>{DLQ_SUFFIX})")
    return dlq_topic.removesuffix(DLQ_SUFFIX)


def letters(
    bus: Bus, dlq_topic: str, which: LetterFilter | None = None, *, limit: int | None = None
) -> Iterator[Letter]:
    """The dead letters of ``dlq_topic`` that ``which`` takes, partition by partition in offset
    order, read outside any group. A record that is no dead letter is passed over."""
    source_of(dlq_topic)
    which = which or LetterFilter()
    shown = 0
    for p, state in sorted(partitions_of(bus, dlq_topic, which.partition).items()):
        position = max(state.start_offset, which.from_offset or 0)
        while position < state.end_offset:
            records = bus.read(dlq_topic, p, position, 1000)
            if not records:
                break
            for r in records:
                if which.to_offset is not None and r.offset > which.to_offset:
                    break
                try:
                    item = Letter(r, DeadLetter.model_validate_json(r.value or b""))
                except ValueError:
                    continue
                if which.matches(item):
                    yield item
                    shown += 1
                    if limit is not None and shown >= limit:
                        return
            position = records[-1].offset + 1


Contract = Callable[[str], type[Message]]


def check(item: Letter, value: str | None = None, contract: Contract = model_for) -> bytes:
    """The message to publish (``value``, an edit, or the letter's own), checked against its source
    topic's contract (``contract(topic)``, the catalog's model by default); raise ``BadMessageError``
    naming each field, value and rule."""
    text = item.letter.value if value is None else value
    try:
        model = contract(item.letter.source_topic)
    except KeyError:
        raise BadMessageError(f"{item.letter.source_topic!r} has no contract to check against") from None
    decode(item.letter.source_topic, text, model)
    return text.encode()


def redrive(
    db: Database,
    producer: Producer,
    items: Iterable[Letter],
    *,
    rate: float = DEFAULT_RATE,
    dry_run: bool = False,
    edits: dict[log.Coordinates, str] | None = None,
    contract: Contract = model_for,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Report:
    """Send ``items`` back to their source topics once each (``edits``: new values by the letter's
    own coordinates); return what was published, skipped and why, and what failed and why."""
    report = Report(dry_run=dry_run)
    limiter = RateLimiter(rate, clock=clock, sleep=sleep)
    started = clock()
    batch: list[tuple[Letter, bytes]] = []

    def flush_batch() -> None:
        if batch:
            _send(db, producer, batch, report, limiter, dry_run, edits or {}, now_ms)
            batch.clear()

    for item in items:
        report.selected += 1
        try:
            value = check(item, (edits or {}).get(item.own), contract)
        except BadMessageError as exc:
            report.failed += 1
            report.note("failed", f"still breaks the contract of {item.letter.source_topic}: {exc}", item)
            continue
        batch.append((item, value))
        if len(batch) >= BATCH:
            flush_batch()
    flush_batch()
    report.seconds = clock() - started
    return report


def _send(
    db: Database,
    producer: Producer,
    batch: list[tuple[Letter, bytes]],
    report: Report,
    limiter: RateLimiter,
    dry_run: bool,
    edits: dict[log.Coordinates, str],
    now_ms: Callable[[], int],
) -> None:
    wanted = [(item.coordinates, item.own, item.own in edits) for item, _ in batch]
    if dry_run:
        earlier = log.lookup(db, [c for c, _, _ in wanted])
        seen: set[log.Coordinates] = set()
        for item, _ in batch:
            c = item.coordinates
            if c in earlier or c in seen:
                report.skipped += 1
                report.note(
                    "skipped", "already redriven" if c in earlier else "the same message twice in the selection"
                )
            else:
                report.published += 1  # would be
            seen.add(c)
        return
    claimed, earlier = log.claim(db, wanted, now_ms())
    mine = set(claimed)
    sending: list[tuple[Letter, bytes]] = []
    for item, value in batch:
        c = item.coordinates
        if c in mine:
            mine.discard(c)  # a second letter of the same message in this batch is skipped below
            sending.append((item, value))
            continue
        report.skipped += 1
        prior = earlier.get(c)
        report.note("skipped", f"already {prior.state}" if prior else "the same message twice in the selection")
    if not sending:
        return
    limiter.wait(len(sending))
    failed: list[log.Coordinates] = []
    for item, value in sending:
        key = item.letter.source_key.encode() if item.letter.source_key is not None else None
        where = f"{item.record.topic}:{item.record.partition}:{item.record.offset}".encode()
        try:
            producer.produce(item.letter.source_topic, value, key=key, headers=[(REDRIVEN_FROM, where)])
        except PipelineError as exc:
            failed.append(item.coordinates)
            report.failed += 1
            report.note("failed", str(exc), item)
    sent = [item.coordinates for item, _ in sending if item.coordinates not in set(failed)]
    if producer.flush(30.0):
        log.release(db, [item.coordinates for item, _ in sending])
        report.failed += len(sent)
        for item, _ in sending:
            if item.coordinates not in set(failed):
                report.note("failed", "not delivered to the bus (flush reported undelivered messages)", item)
        return
    if failed:
        log.release(db, failed)
    log.confirm(db, sent, now_ms())
    report.published += len(sent)


def redrive_one(
    db: Database,
    producer: Producer,
    item: Letter,
    value: str | None = None,
    *,
    rate: float = DEFAULT_RATE,
    contract: Contract = model_for,
) -> Report:
    """Redrive one dead letter, edited (``value``) or not. An edit that still breaks the contract
    raises ``BadMessageError`` (field and rule) and nothing is published or recorded."""
    check(item, value, contract)
    edits = {item.own: value} if value is not None else None
    return redrive(db, producer, [item], rate=rate, edits=edits, contract=contract)


def letter_at(bus: Bus, dlq_topic: str, partition: int, offset: int) -> Letter:
    """The dead letter at one place of its topic; one line when there is none."""
    source_of(dlq_topic)
    records = bus.read(dlq_topic, partition, offset, 1)
    if not records or records[0].offset != offset:
        raise RedriveError(f"there is no dead letter at {dlq_topic}[{partition}]@{offset}")
    try:
        return Letter(records[0], DeadLetter.model_validate_json(records[0].value or b""))
    except ValueError:
        raise RedriveError(f"{dlq_topic}[{partition}]@{offset} is not a dead letter") from None
