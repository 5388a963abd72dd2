"""Import a trade file into the journal: check it, then publish its rows to ``raw-trades``.

One streaming pass over the upload (already in memory): decode, sniff the delimiter, detect the
format from the header (or take the trader's column mapping), parse each row with
``pipeline.journal.formats``, give each good row its stable id, and look ids up in the ledger
in chunks to tell new rows from ones imported before. ``check_file`` stops there (the page's
"before import" report); ``import_file`` also publishes each new row exactly as read and each
rejected row to ``raw-trades_dlq``. Rows are never collected in memory; only a small counter
per distinct row is kept so identical rows in one file get distinct ids.

Both functions run on the caller's thread (the page or the API worker) and block until done.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, PipelineError, TransientError, Violation
from pipeline.journal.fills import Fill, entry_fingerprint, fill_content_key, fill_fingerprint
from pipeline.journal.formats import detect_format, row_parser
from pipeline.messages import DeadLetter, RawTrade, encode
from pipeline.topics import RAW_TRADES, dlq_name
from storage import journal, ledger
from storage.db import Database

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_REJECTED = 10_000
LOOKUP_CHUNK = 500
SNIFF_BYTES = 8192
FLUSH_TIMEOUT_S = 120.0
# Flush every so many messages: backpressure, so a fast reader never queues a whole file in memory.
FLUSH_EVERY = 10_000

Progress = Callable[[int, int], None]

_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a ZIP archive (or an .xlsx workbook)",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office document",
}
_CONTROL = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r\f") | {"\x7f"}


class ImportFileError(PipelineError):
    """A file the importer cannot read at all (empty, too big, not text, unknown columns).

    Nothing is published; the page shows the message. ``needs_mapping`` says the trader can fix
    it by mapping the columns of ``header``.
    """

    def __init__(self, message: str, *, header: list[str] | None = None, needs_mapping: bool = False) -> None:
        super().__init__(message)
        self.header = header
        self.needs_mapping = needs_mapping


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


def _decode(data: bytes) -> tuple[str, list[str]]:
    """Return the encoding to read ``data`` with, and warnings; raise for files that are not text."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImportFileError(
            f"the file is {len(data) / 1e6:.1f} MB ({len(data)} bytes); "
            f"the limit is {MAX_UPLOAD_BYTES // (1024 * 1024)} MB ({MAX_UPLOAD_BYTES} bytes)"
        )
    if not data[:SNIFF_BYTES].strip() and not data.strip():
        raise ImportFileError("the file is empty")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        head = data[:SNIFF_BYTES]
        for magic, what in _MAGIC.items():
            if head.startswith(magic):
                raise ImportFileError(f"the file is not a CSV text file: it looks like {what}")
        if b"\x00" in head:
            raise ImportFileError("the file is not a CSV text file: it has binary content (NUL bytes)")
        encoding = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    warnings: list[str] = []
    if not _decodes(data, encoding):
        if encoding == "utf-16":
            raise ImportFileError("the file starts with a UTF-16 mark but is not valid UTF-16 text")
        encoding = "cp1252" if _decodes(data, "cp1252") else "latin-1"
        warnings.append(
            f"the file is not UTF-8; it was read as {encoding} (Windows/Western European "
            "text): check accented letters in notes"
        )
    sample = data[:SNIFF_BYTES].decode(encoding, errors="ignore")
    if sum(ch in _CONTROL for ch in sample) > 2 + len(sample) // 100:
        raise ImportFileError("the file is not a CSV text file: it has binary content (control characters)")
    return encoding, warnings


def _decodes(data: bytes, encoding: str) -> bool:
    """Say whether ``data`` decodes, in 1 MB steps so no second copy of a large file is made."""
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(data)
    step = 1 << 20
    try:
        for start in range(0, len(view), step):
            decoder.decode(view[start : start + step], final=start + step >= len(view))
    except UnicodeDecodeError:
        return False
    return True


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def preview(data: bytes, rows: int = 20) -> tuple[list[str], list[list[str]]]:
    """Return the header and the first ``rows`` rows as the importer reads them (same encoding and
    delimiter), padded or cut to the header's width; raise ``ImportFileError`` like an import."""
    encoding, _ = _decode(data)
    lines = data[:65_536].decode(encoding, errors="ignore").lstrip("\ufeff").splitlines()[: rows + 1]
    if not lines:
        raise ImportFileError("the file is empty")
    parsed = list(csv.reader(lines, delimiter=_delimiter(lines[0])))
    header, width = parsed[0], len(parsed[0])
    return header, [r[:width] + [""] * (width - len(r)) for r in parsed[1:]]


# --------------------------------------------------------------------------- the pass


class _Publisher:
    """Sends accepted rows to ``raw-trades`` and rejected ones to its dead-letter topic."""

    def __init__(
        self,
        producer: Producer,
        user_id: str,
        source: str,
        fmt: str,
        now_ms: int,
        mapping: Mapping[str, str] | None,
        keep_ids: bool = False,
    ) -> None:
        self.producer, self.user_id, self.source, self.fmt, self.now = producer, user_id, source, fmt, now_ms
        self.mapping = dict(mapping) if mapping is not None else None
        self.key = user_id.encode()
        self.published = 0
        self.ids: list[str] | None = [] if keep_ids else None
        self._unflushed = 0

    def raw(self, raw_id: str, line: int, row: dict[str, str]) -> None:
        raw = RawTrade(
            raw_id=raw_id,
            user_id=self.user_id,
            source=self.source,
            format=self.fmt,
            received_at=self.now,
            payload=row,
            row=line,
            mapping=self.mapping,
        )
        self.producer.produce(RAW_TRADES, encode(raw), key=self.key)
        self.published += 1
        if self.ids is not None:
            self.ids.append(raw_id)
        self._sent()

    def dead(self, line: int, row: object, violations: list[Violation], reason: str) -> None:
        letter = DeadLetter(
            source_topic=RAW_TRADES,
            source_partition=-1,
            source_offset=line,
            source_key=self.user_id,
            value=orjson.dumps(row).decode(),
            reason=reason,
            violations=[{"field": v.field, "value": v.value, "rule": v.rule} for v in violations],
            stage="import",
            retry_count=0,
            failed_at=int(time.time() * 1000),
        )
        self.producer.produce(dlq_name(RAW_TRADES), encode(letter), key=self.key)
        self._sent()

    def _sent(self) -> None:
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._unflushed = 0
        left = self.producer.flush(FLUSH_TIMEOUT_S)
        if left:
            raise TransientError(
                f"{left} messages of the import were not delivered to the bus; "
                "import the file again (rows already stored are skipped)"
            )


class _Lines:
    """The file's lines for ``csv.reader``, counting bytes read for the progress bar."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self.raw = io.BytesIO(data)
        self.text = io.TextIOWrapper(self.raw, encoding=encoding, newline="")

    def __iter__(self) -> Iterator[str]:
        return self.text

    def position(self) -> int:
        return self.raw.tell()


def _run(
    data: bytes,
    user_id: str,
    db: Database,
    mapping: Mapping[str, str] | None,
    progress: Progress | None,
    now_ms: int | None,
    publisher: Callable[[str], _Publisher] | None,
) -> ImportReport:
    if not user_id:
        raise ValueError("user_id is required")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    encoding, warnings = _decode(data)
    lines = _Lines(data, encoding)
    first = data[:SNIFF_BYTES].decode(encoding, errors="ignore").lstrip("\ufeff").splitlines()
    reader = csv.reader(lines, delimiter=_delimiter(first[0] if first else ""))
    header: list[str] | None = None
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                header = [cells[0].lstrip("\ufeff"), *cells[1:]]
                break
    except csv.Error as exc:
        raise ImportFileError(f"the header row cannot be read as CSV: {exc}") from None
    if header is None:
        raise ImportFileError("the file is empty")
    if len(set(header)) != len(header):
        repeated = sorted({h for h in header if header.count(h) > 1})
        raise ImportFileError(f"the header repeats columns: {', '.join(repeated)}", header=header)
    fmt = "custom" if mapping is not None else detect_format(header)
    if fmt is None:
        raise ImportFileError(
            f"unknown file format; columns: {', '.join(header)}. Map these columns to "
            "the journal's fields (a column mapping) to import it",
            header=header,
            needs_mapping=True,
        )
    try:
        parse = row_parser(fmt, header, mapping)
    except BadMessageError as exc:
        raise ImportFileError(
            f"the column mapping does not fit this file: {exc}", header=header, needs_mapping=True
        ) from None
    pub = publisher(fmt) if publisher else None
    report = ImportReport(format=fmt, warnings=warnings, encoding=encoding.replace("-sig", ""))
    capped = _scan(reader, header, parse, user_id, db, now, report, pub, lines, progress, len(data))
    if report.rows == 0:
        raise ImportFileError("the file has a header but no rows", header=header)
    if capped:
        report.warnings.append(
            f"{report.rejected_rows} rows were rejected; only the first {MAX_REJECTED} problems are listed"
        )
    if pub is not None:
        pub.flush()
        report.published = pub.published
        report.published_ids = pub.ids or []
    return report


def _scan(
    reader: Any,
    header: list[str],
    parse: Callable[..., Any],
    user_id: str,
    db: Database,
    now: int,
    report: ImportReport,
    pub: _Publisher | None,
    lines: _Lines,
    progress: Progress | None,
    total: int,
) -> bool:
    """Read every data row once; count, fingerprint, look up and publish in chunks.

    Return whether problems were left off ``report.rejected`` (past ``MAX_REJECTED``)."""
    width = len(header)
    fmt = report.format
    seen: dict[int, int] = {}  # content key (as a 96-bit int) -> how many times seen in this file
    pending: list[tuple[str, int, dict[str, str]]] = []
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
        stored = ledger.known_ids(db, [p[0] for p in pending])
        for raw_id, line, row in pending:
            if raw_id in stored:
                report.duplicates += 1
            else:
                report.accepted += 1
                if pub is not None:
                    pub.raw(raw_id, line, row)
        pending.clear()

    last = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line, last = last + 1, reader.line_num
            report.rows += 1
            reject(line, {}, [Violation("(whole row)", "", f"a well-formed CSV row ({exc})")], f"unreadable row: {exc}")
            continue
        line, last = last + 1, reader.line_num
        if line % 1024 == 0 and progress is not None and lines.position() >= next_mark:
            progress(min(lines.position(), total), total)
            next_mark = lines.position() + step
        if not cells or not "".join(cells).strip():
            continue
        report.rows += 1
        if len(cells) != width:
            if len(cells) > width:
                reject(
                    line,
                    cells,
                    [Violation(f"(cell {width + 1})", str(len(cells)), f"at most {width} cells, like the header")],
                    f"the row has {len(cells)} cells; the header has {width}",
                )
                continue
            cells = cells + [""] * (width - len(cells))
        row = dict(zip(header, cells))
        try:
            item = parse(row, now)
        except BadMessageError as exc:
            reject(line, row, exc.violations, str(exc))
            continue
        if type(item) is Fill:
            report.unit = "fill"
            fixed = bool(item.exchange_id)
            key = fill_fingerprint(user_id, item, 0, venue=fmt) if fixed else fill_content_key(user_id, item)
        else:
            report.unit = "trade"
            fixed = bool(item.external_id)
            key = entry_fingerprint(user_id, item, 0)
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
        pending.append((raw_id, line, row))
        if len(pending) >= LOOKUP_CHUNK:
            settle()
    if pending:
        settle()
    if progress is not None:
        progress(total, total)
    return capped


# --------------------------------------------------------------------------- public API


def check_file(
    data: bytes,
    *,
    user_id: str,
    db: Database,
    mapping: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    now_ms: int | None = None,
) -> ImportReport:
    """Dry-run an import: report rows, new ones, duplicates and every problem; publish nothing.

    Raises ``ImportFileError`` for a file that cannot be read at all.
    """
    return _run(data, user_id, db, mapping, progress, now_ms, None)


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
        progress,
        now,
        lambda fmt: _Publisher(producer, user_id, source, fmt, now, mapping, keep_ids),
    )


def _header_key(header: list[str]) -> list[str]:
    return [" ".join(str(h).lstrip("\ufeff").split()).lower() for h in header]


def save_mapping(db: Database, name: str, header: list[str], mapping: Mapping[str, str]) -> None:
    """Save (or replace) a named column mapping for files with ``header``."""
    if not name.strip():
        raise ValueError("a mapping needs a name")
    journal.save_mapping(db, name.strip(), list(header), dict(mapping), int(time.time() * 1000))


def list_mappings(db: Database) -> list[dict[str, Any]]:
    """Return the saved mappings: name, header (list), mapping (dict), created_at (ms), by name."""
    return journal.mappings(db)


def find_mapping(db: Database, header: list[str]) -> dict[str, Any] | None:
    """Return the newest saved mapping made for this header (case and spaces ignored), or None."""
    wanted = _header_key(header)
    found = [m for m in list_mappings(db) if _header_key(m["header"]) == wanted]
    return max(found, key=lambda m: m["created_at"]) if found else None
