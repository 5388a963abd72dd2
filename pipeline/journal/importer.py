"""Import a trade file into the journal: check it, then publish its rows to ``raw-trades``.

One pass over the upload (already in memory): ``pipeline.journal.table`` reads it as a table
(workbooks, encodings, separators, preambles, requoted rows, decimal commas), the format is
detected from the header (or the trader's column mapping is taken; a file of another kind is
named and refused), each row is parsed with ``pipeline.journal.formats``, each good row gets its
stable id, and ids are looked up in the ledger in chunks to tell new rows from ones imported
before. ``check_file`` stops there (the page's "before import" report); ``import_file`` then
publishes the new rows, as read, **in time order** (exports are often newest first, and a fill
older than the ledger's newest makes the normalizer rebuild that symbol), and each rejected row
to ``raw-trades_dlq``. The new rows wait in memory until they are published, each as one string
with its id and time (about 300 bytes a row: a million-row file peaks near 0.8 GB, against about
0.55 GB when rows were published as read); a small counter per distinct row gives identical rows
in one file distinct ids.

Both functions run on the caller's thread (the page or the API worker) and block until done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, PipelineError, Violation
from pipeline.journal.fills import (
    Fill,
    Payment,
    entry_fingerprint,
    fill_content_key,
    fill_fingerprint,
    payment_fingerprint,
)
from pipeline.journal.formats import (
    READ_OPTIONS,
    detect_format,
    guess_mapping,
    header_keys,
    is_known_header,
    row_parser,
    what_kind,
)
from pipeline.journal.import_publisher import ImportPublisher
from pipeline.journal.table import MAX_UPLOAD_BYTES as MAX_UPLOAD_BYTES  # the page's upload limit
from pipeline.journal.table import FileReadError, Table, open_table
from storage import ledger
from storage.db import Database

MAX_REJECTED = 10_000
LOOKUP_CHUNK = 500
PREVIEW_BYTES = 65_536

Progress = Callable[[int, int], None]


class ImportFileError(PipelineError):
    """A file the importer cannot read at all (empty, too big, not text, unknown columns).

    Nothing is published; the page shows the message. ``needs_mapping`` says the trader can fix
    it by mapping the columns of ``header``.
    """

    def __init__(
        self,
        message: str,
        *,
        header: list[str] | None = None,
        needs_mapping: bool = False,
        guess: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.header = header
        self.needs_mapping = needs_mapping
        # A best guess at the mapping (field -> column) to fill the mapping form in.
        self.guess = guess or {}
        # What the file is when it is a known file of another kind (a deposit history...).
        self.kind = kind


@dataclass
class RowError:
    """One bad field of one row; ``row`` is the line number in the file (the header is line 1)."""

    row: int
    column: str
    value: str
    reason: str


@dataclass
class ImportReport:
    """What a pass over a file found; ``published`` counts the rows sent to ``raw-trades``."""

    format: str
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    published: int = 0
    # What a row of the file is: "fill" (one execution; the journal pairs fills FIFO into round
    # trips) or "trade" (a whole trade, entry and exit); None when no row could be read.
    unit: Literal["fill", "trade"] | None = None
    # The raw ids published, in order, when ``import_file`` was asked to keep them.
    published_ids: list[str] = field(default_factory=list)

    @property
    def rejected_rows(self) -> int:
        """Rows rejected (a row with several bad fields counts once)."""
        return self.rows - self.accepted - self.duplicates

    def to_json(self) -> dict[str, Any]:
        """Return the report for the API and the page."""
        return {
            "format": self.format,
            "rows": self.rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [
                {"row": e.row, "column": e.column, "value": e.value, "reason": e.reason} for e in self.rejected
            ],
        }


# --------------------------------------------------------------------------- reading the file


def read_table(data: bytes) -> Table:
    """The upload as a table (``pipeline.journal.table``); a file it cannot read is an ``ImportFileError``."""
    try:
        return open_table(data, is_known_header)
    except FileReadError as exc:
        raise ImportFileError(str(exc)) from None


def preview(data: bytes, rows: int = 20) -> tuple[list[str], list[list[str]]]:
    """Return the header and the first ``rows`` rows as the importer reads them (same encoding,
    separator, header line and cell clean-up), padded or cut to the header's width; raise
    ``ImportFileError`` like an import."""
    table = read_table(data)
    width = len(table.header)
    out: list[list[str]] = []
    for row in table.rows():
        out.append(row.cells[:width] + [""] * (width - len(row.cells)))
        if len(out) >= rows:
            break
    return table.header, out


# --------------------------------------------------------------------------- the pass


def _run(
    data: bytes,
    user_id: str,
    db: Database,
    mapping: Mapping[str, str] | None,
    options: Mapping[str, str] | None,
    progress: Progress | None,
    now_ms: int | None,
    publisher: Callable[[str, Mapping[str, str] | None], ImportPublisher] | None,
) -> ImportReport:
    if not user_id:
        raise ValueError("user_id is required")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    table = read_table(data)
    header = table.header
    fmt = "custom" if mapping is not None else detect_format(header)
    if fmt is None:
        kind = what_kind(header_keys(header))
        if kind is not None:
            raise ImportFileError(f"this file is {kind}", header=header, kind=kind)
        if len(set(header)) != len(header):
            repeated = sorted({h for h in header if header.count(h) > 1})
            raise ImportFileError(f"the header repeats columns: {', '.join(repeated)}", header=header)
        _, samples = preview(data, 10)
        raise ImportFileError(
            f"unknown file format; columns: {', '.join(header)}. Map these columns to "
            "the journal's fields (a column mapping) to import it",
            header=header,
            needs_mapping=True,
            guess=guess_mapping(header, samples),
        )
    if len(set(header)) != len(header):
        repeated = sorted({h for h in header if header.count(h) > 1})
        raise ImportFileError(f"the header repeats columns: {', '.join(repeated)}", header=header)
    carried = {**(mapping or {}), **{k: v for k, v in (options or {}).items() if k in READ_OPTIONS and v}}
    try:
        parse = row_parser(fmt, header, carried or None)
    except BadMessageError as exc:
        raise ImportFileError(
            f"the column mapping does not fit this file: {exc}", header=header, needs_mapping=mapping is not None
        ) from None
    pub = publisher(fmt, carried or None) if publisher else None
    report = ImportReport(format=fmt, warnings=table.warnings, encoding=table.encoding)
    if table.workbook:
        report.encoding = "xlsx"
    capped, accepted = _scan(table, parse, user_id, db, now, report, pub, progress)
    if report.rows == 0:
        raise ImportFileError("the file has a header but no rows", header=header)
    if capped:
        report.warnings.append(
            f"{report.rejected_rows} rows were rejected; only the first {MAX_REJECTED} problems are listed"
        )
    if pub is not None:
        accepted.sort(key=lambda a: (a[0], a[1]))  # oldest first; ties keep the file's order
        header = table.header
        for _, _, raw_id, line, packed in accepted:
            cells = packed.split(_SEP) if isinstance(packed, str) else packed
            pub.raw(raw_id, line, dict(zip(header, cells)))
        pub.flush()
        report.published = pub.published
        report.published_ids = pub.ids or []
    return report


# (time, order in the file, raw id, line, the row's cells joined by _SEP): one string a row keeps
# a million waiting rows in about 150 MB where dicts would take about a gigabyte.
Accepted = tuple[int, int, str, int, "str | tuple[str, ...]"]
_SEP = "\x1f"  # the ASCII unit separator; a row with one in a cell is kept as a tuple instead


def _scan(
    table: Table,
    parse: Callable[..., Any],
    user_id: str,
    db: Database,
    now: int,
    report: ImportReport,
    pub: ImportPublisher | None,
    progress: Progress | None,
) -> tuple[bool, list[Accepted]]:
    """Read every data row once; count, fingerprint and look up in chunks. Return whether problems
    were left off ``report.rejected`` (past ``MAX_REJECTED``) and the new rows (kept for publishing
    only when there is a publisher)."""
    header = table.header
    width = len(header)
    fmt = report.format
    seen: dict[int, int] = {}  # content key (as a 96-bit int) -> how many times seen in this file
    pending: list[tuple[int, str, int, dict[str, str]]] = []
    accepted: list[Accepted] = []
    total = table.size
    step = max(total // 100, 1)
    next_mark = step
    capped = False

    def reject(line: int, row: object, violations: list[Violation], reason: str) -> None:
        nonlocal capped
        for v in violations:
            if len(report.rejected) >= MAX_REJECTED:
                capped = True
            else:
                value = "" if v.value is None else v.value if isinstance(v.value, str) else json.dumps(v.value)
                report.rejected.append(RowError(line, v.field, value, v.rule))
        if pub is not None:
            pub.dead(line, row, violations, reason)

    def settle() -> None:
        stored = ledger.known_ids(db, [p[1] for p in pending])
        for when, raw_id, line, row in pending:
            if raw_id in stored:
                report.duplicates += 1
            else:
                report.accepted += 1
                if pub is not None:
                    cells = tuple(row.values())
                    packed = cells if any(_SEP in c for c in cells) else _SEP.join(cells)
                    accepted.append((when, len(accepted), raw_id, line, packed))
        pending.clear()

    for item_row in table.rows():
        line, cells = item_row.line, item_row.cells
        if line % 1024 == 0 and progress is not None and table.position() >= next_mark:
            progress(min(table.position(), total), total)
            next_mark = table.position() + step
        report.rows += 1
        if not cells:  # a row the CSV reader could not read
            reject(line, {}, item_row.problems, "unreadable row: " + item_row.problems[0].rule)
            continue
        if len(cells) != width:
            if len(cells) > width:
                reject(
                    line,
                    cells,
                    [Violation("", str(len(cells)), f"at most {width} cells, like the header")],
                    f"the row has {len(cells)} cells; the header has {width}",
                )
                continue
            cells = cells + [""] * (width - len(cells))
        row = dict(zip(header, cells))
        if item_row.problems:
            named = [Violation(_column_of(header, cells, p.value), p.value, p.rule) for p in item_row.problems]
            reject(line, row, named, "; ".join(f"{v.field}={v.value!r}: {v.rule}" for v in named))
            continue
        try:
            item = parse(row, now)
        except BadMessageError as exc:
            reject(line, row, exc.violations, str(exc))
            continue
        if type(item) is Payment:  # a funding payment or a booked P&L: a record of its own
            report.unit = report.unit or "fill"
            occurrence_key = payment_fingerprint(user_id, item, 0)
            number = int(occurrence_key[-24:], 16)
            occurrence = seen.get(number, 0)
            seen[number] = occurrence + 1
            if occurrence and item.external_id:
                report.duplicates += 1
                continue
            pending.append((item.time, payment_fingerprint(user_id, item, occurrence), line, row))
            if len(pending) >= LOOKUP_CHUNK:
                settle()
            continue
        if type(item) is Fill:
            report.unit = "fill"
            fixed = bool(item.exchange_id)
            key = fill_fingerprint(user_id, item, 0, venue=fmt) if fixed else fill_content_key(user_id, item)
            when = item.time
        else:
            report.unit = "trade"
            fixed = bool(item.external_id)
            key = entry_fingerprint(user_id, item, 0)
            when = item.entry_time
        number = int(key[-24:], 16)
        occurrence = seen.get(number, 0)
        seen[number] = occurrence + 1
        if occurrence and fixed:  # the same exchange trade id twice in one file: one trade
            report.duplicates += 1
            continue
        if type(item) is Fill:
            raw_id = key if fixed else fill_fingerprint(user_id, item, occurrence, venue=fmt)
        else:
            raw_id = key if occurrence == 0 else entry_fingerprint(user_id, item, occurrence)
        pending.append((when, raw_id, line, row))
        if len(pending) >= LOOKUP_CHUNK:
            settle()
    if pending:
        settle()
    if progress is not None:
        progress(total, total)
    return capped, accepted


def _column_of(header: list[str], cells: list[str], value: object) -> str:
    """The column whose cell holds ``value`` (a reading problem names the cell's text)."""
    for name, cell in zip(header, cells):
        if cell == value:
            return name
    return ""


# --------------------------------------------------------------------------- public API


def check_file(
    data: bytes,
    *,
    user_id: str,
    db: Database,
    mapping: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    now_ms: int | None = None,
    options: Mapping[str, str] | None = None,
) -> ImportReport:
    """Dry-run an import: report rows, new ones, duplicates and every problem; publish nothing.

    ``options`` are reading options (``timezone``: the IANA zone of a file's local times;
    ``currency``: the account currency of symbols that name none). Raises ``ImportFileError`` for a
    file that cannot be read at all.
    """
    return _run(data, user_id, db, mapping, options, progress, now_ms, None)


def import_file(
    data: bytes,
    *,
    user_id: str,
    producer: Producer,
    db: Database,
    source: str = "csv",
    mapping: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    now_ms: int | None = None,
    keep_ids: bool = False,
    options: Mapping[str, str] | None = None,
) -> ImportReport:
    """Import a file: publish each new row to ``raw-trades`` as read, each bad one to its DLQ.

    Rows already in the journal are skipped. With ``keep_ids`` the report lists the raw ids
    published (to follow them into the journal). Raises ``ImportFileError`` for a file that cannot
    be read at all (nothing published), ``TransientError`` when the bus did not take everything.
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return _run(
        data,
        user_id,
        db,
        mapping,
        options,
        progress,
        now,
        lambda fmt, carried: ImportPublisher(producer, user_id, source, fmt, now, carried, keep_ids),
    )
