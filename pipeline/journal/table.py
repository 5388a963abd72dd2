"""A trade file as a table: the header and the rows, whatever the bytes were.

``open_table`` turns an upload into a ``Table`` (header, its line, and an iterator of rows with
their line numbers) and handles what the file is rather than what its columns mean:

* ``.xlsx`` and ``.xls`` workbooks (the first sheet, read with python-calamine);
* UTF-8 with or without a BOM, UTF-16 with a BOM (as Excel saves "Unicode text"), cp1252 as a
  fallback with a warning, a BOM before every cell (OKEx), a BOM mangled into ``?`` (Coinmate);
* ``,``, ``;`` and tab separators, CRLF line ends, blank lines;
* preamble and disclaimer lines before the header (``UID: ...``, ``Name: ...``, a sentence): the
  header is the first line ``is_header`` accepts, else the first line that looks like one;
* rows quoted whole after a spreadsheet round trip (the whole row one quoted cell, its inner
  quotes doubled), and unquoted rows whose quotes were doubled: read again from the text inside;
* decimal commas (``0,5``) next to thousands separators (``7,550.71``): each number cell is read
  by its own unambiguous form; a cell like ``1,234`` that could be either is converted only when
  the file's other cells say which it is, and otherwise reported as a problem, never guessed.

Numbers with a decimal comma are rewritten with a point in the row handed on, so the row the
journal stores means the same thing to every later reader. A row's ``problems`` name its line,
column, value and rule. Nothing here knows a layout; the formats package does.

Cost: one pass over the bytes for the encoding check, one streaming pass for the rows; a
workbook is read whole into memory by calamine (100,000 rows take a few seconds).

About 450 lines, on purpose: every quirk above is a branch of one streaming reader, and the
number rules need the whole file's evidence; split, the parts would share the reader's state.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Literal

from pipeline.errors import PipelineError, Violation

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
SNIFF_BYTES = 65_536
HEADER_SEARCH_LINES = 30

_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a ZIP archive (or an .xlsx workbook)",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
}
_OLE = b"\xd0\xcf\x11\xe0"  # an old Office document: an .xls workbook, or a Word file
_CONTROL = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r\f") | {"\x7f"}
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
_AMBIGUOUS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+")
_THOUSANDS_DOT = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+\.\d+")
_POINT = re.compile(r"[+-]?\d*\.\d+")  # 0.5123: a decimal point, unless it is 1.500 (see _DOTS)
_DOTS = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+")  # 1.500: 1.5, or 1500 with European thousands dots
_EUROPEAN = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+,\d+")  # 1.500,25
_PREAMBLE = re.compile(r"^\s*[\w .&/()-]{1,40}:\s")

DecimalStyle = Literal["point", "comma", "mixed", "unknown"]
AMBIGUOUS_RULE = (
    "an unambiguous number: {value} may be {a} or {b}, and the file's other numbers do not say "
    "which separator is the decimal one"
)


class FileReadError(PipelineError):
    """A file that is not a readable table at all: empty, too big, binary, or unreadable text."""


@dataclass
class Row:
    """One data row: its line in the file (the first line is 1), its cells, and reading problems."""

    line: int
    cells: list[str]
    problems: list[Violation] = field(default_factory=list)


@dataclass
class Table:
    """A file's header and rows. ``rows()`` may be iterated once; ``position()`` is bytes read."""

    header: list[str]
    header_line: int
    encoding: str
    delimiter: str
    decimal: DecimalStyle
    warnings: list[str]
    _rows: Iterator[Row]
    _position: Callable[[], int]
    size: int
    workbook: bool = False

    def rows(self) -> Iterator[Row]:
        return self._rows

    def position(self) -> int:
        return self._position()


# --------------------------------------------------------------------------- bytes to text


def decode(data: bytes) -> tuple[str, list[str]]:
    """Return the encoding to read ``data`` with, and warnings; raise for files that are not text."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise FileReadError(
            f"the file is {len(data) / 1e6:.1f} MB ({len(data)} bytes); "
            f"the limit is {MAX_UPLOAD_BYTES // (1024 * 1024)} MB ({MAX_UPLOAD_BYTES} bytes)"
        )
    if not data[:SNIFF_BYTES].strip() and not data.strip():
        raise FileReadError("the file is empty")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        head = data[:SNIFF_BYTES]
        for magic, what in (*_MAGIC.items(), (_OLE, "an old Excel/Office document")):
            if head.startswith(magic):
                raise FileReadError(f"the file is not a CSV text file: it looks like {what}")
        if b"\x00" in head:
            raise FileReadError("the file is not a CSV text file: it has binary content (NUL bytes)")
        encoding = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    warnings: list[str] = []
    if not _decodes(data, encoding):
        if encoding == "utf-16":
            raise FileReadError("the file starts with a UTF-16 mark but is not valid UTF-16 text")
        encoding = "cp1252" if _decodes(data, "cp1252") else "latin-1"
        warnings.append(
            f"the file is not UTF-8; it was read as {encoding} (Windows/Western European "
            "text): check accented letters in notes"
        )
    sample = data[:SNIFF_BYTES].decode(encoding, errors="ignore")
    if sum(ch in _CONTROL for ch in sample) > 2 + len(sample) // 100:
        raise FileReadError("the file is not a CSV text file: it has binary content (control characters)")
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


def delimiter_of(line: str) -> str:
    """Return the separator of a header line: the most frequent of ``,``, ``;`` and tab."""
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def is_workbook(data: bytes) -> bool:
    """Say whether ``data`` is an .xlsx (a ZIP holding ``xl/workbook.xml``) or an .xls workbook."""
    if data.startswith(_OLE):
        return True
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "xl/workbook.xml" in z.namelist()
    except zipfile.BadZipFile:
        return False


# --------------------------------------------------------------------------- cells


def clean_cell(cell: str) -> str:
    """Drop BOMs a cell may carry (OKEx puts one before every cell)."""
    return cell.replace("\ufeff", "") if "\ufeff" in cell else cell


def clean_header(cells: list[str]) -> list[str]:
    """Drop BOMs, outer spaces and tabs, and a BOM mangled into a leading ``?``."""
    out = [clean_cell(c).strip() for c in cells]
    if out and out[0].startswith("?") and len(out[0]) > 1 and out[0][1].isalpha():
        out[0] = out[0][1:]
    return out


def decimal_style(cells: Iterator[str]) -> DecimalStyle:
    """Judge from sample cells whether commas in numbers are decimal points, thousands, or both."""
    comma = point = False
    for cell in cells:
        s = cell.strip()
        if _THOUSANDS_DOT.fullmatch(s) or (_POINT.fullmatch(s) and not _DOTS.fullmatch(s)):
            point = True
        elif (_DECIMAL_COMMA.fullmatch(s) and not _AMBIGUOUS.fullmatch(s)) or _EUROPEAN.fullmatch(s):
            comma = True
    if comma and point:
        return "mixed"
    return "comma" if comma else "point" if point else "unknown"


def _number_cell(cell: str, style: DecimalStyle, default: DecimalStyle) -> tuple[str, str | None]:
    """Return the cell with a decimal comma made a point, and a rule broken (or None)."""
    s = cell.strip()
    if style == "comma" and "." in s:
        if _EUROPEAN.fullmatch(s):
            return s.replace(".", "").replace(",", "."), None
        if _DOTS.fullmatch(s):
            return cell, AMBIGUOUS_RULE.format(value=s, a=s, b=s.replace(".", ""))
        return cell, None
    if "," not in s or not _DECIMAL_COMMA.fullmatch(s):
        return cell, None
    if not _AMBIGUOUS.fullmatch(s):
        return s.replace(",", "."), None
    known = style if style in ("comma", "point") else default
    if known == "comma" and s.count(",") == 1:
        return s.replace(",", "."), None
    if known == "point" or (known == "comma" and s.count(",") > 1):
        return cell, None  # thousands separators: the parsers read them
    return cell, AMBIGUOUS_RULE.format(value=s, a=s.replace(",", ""), b=s.replace(",", ".", 1))


# --------------------------------------------------------------------------- workbooks


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def _workbook_rows(data: bytes) -> list[list[str]]:
    from python_calamine import CalamineWorkbook  # loads only for workbooks

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        sheet = book.get_sheet_by_index(0)
        return [[_text(v) for v in row] for row in sheet.to_python(skip_empty_area=False)]
    except Exception as exc:  # noqa: BLE001 - calamine raises its own error types for damaged files
        raise FileReadError(f"the workbook cannot be read: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- the table


class _Lines:
    """Text lines for ``csv.reader`` that remember the raw text of the last row and count bytes."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self.raw = io.BytesIO(data)
        self.text = io.TextIOWrapper(self.raw, encoding=encoding, newline="")
        self.last: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for line in self.text:
            self.last.append(line)
            yield line

    def take(self) -> str:
        text = "".join(self.last)
        self.last = []
        return text

    def position(self) -> int:
        return self.raw.tell()


def _requoted(cells: list[str], raw: str, width: int, delimiter: str) -> list[str] | None:
    """Return the cells of a row a spreadsheet quoted whole (one cell holding the separators) or of
    an unquoted row with doubled quotes; None when the row is neither (or its inside is no CSV row:
    a quoted line break, say; the row is then refused as it stands)."""
    try:
        if width > 1 and len(cells) == 1 and delimiter in cells[0]:
            inner = next(csv.reader([cells[0]], delimiter=delimiter), [])
            return inner if len(inner) > 1 else None
        if len(cells) > width and '""' in raw and not raw.lstrip().startswith('"'):
            inner = next(csv.reader([raw.rstrip("\r\n").replace('""', '"')], delimiter=delimiter), [])
            return inner if len(inner) == width else None
    except csv.Error:
        return None
    return None


def _looks_like_header(cells: list[str]) -> bool:
    filled = [c for c in cells if c.strip()]
    if len(filled) < 2 or _PREAMBLE.match(cells[0]):
        return False
    return sum(bool(re.fullmatch(r"[\d\s.,:/+-]+", c)) for c in filled) * 2 < len(filled)


def open_table(data: bytes, is_header: Callable[[list[str]], bool] = lambda h: False) -> Table:
    """Read ``data`` as a table; ``is_header`` says which line is a known layout's header.

    Raises ``FileReadError`` for a file that is not a readable table (nothing in it is used)."""
    if is_workbook(data):
        if len(data) > MAX_UPLOAD_BYTES:
            decode(data)  # raises the size error
        return _from_lines(
            [(i + 1, r) for i, r in enumerate(_workbook_rows(data))], "xlsx", [], ",", is_header, len(data)
        )
    encoding, warnings = decode(data)
    lines = _Lines(data, encoding)
    sample = data[:SNIFF_BYTES].decode(encoding, errors="ignore").lstrip("\ufeff")
    first = next((ln for ln in sample.splitlines() if ln.strip() and not _PREAMBLE.match(ln)), "")
    delimiter = delimiter_of(first)
    reader = csv.reader(lines, delimiter=delimiter)
    table = _header(reader, lines, delimiter, is_header)
    if table is None:
        raise FileReadError("the file is empty")
    header_line, header, buffered, consumed = table
    style = decimal_style(c for row in csv.reader(sample.splitlines()[1:200], delimiter=delimiter) for c in row)
    default: DecimalStyle = "point" if delimiter == "," else "unknown"
    return Table(
        header=header,
        header_line=header_line,
        encoding=encoding.replace("-sig", ""),
        delimiter=delimiter,
        decimal=style,
        warnings=warnings,
        _rows=_csv_rows(reader, lines, buffered, consumed, header, delimiter, style, default),
        _position=lines.position,
        size=len(data),
    )


def _header(
    reader: Iterator[list[str]], lines: _Lines, delimiter: str, is_header: Callable[[list[str]], bool]
) -> tuple[int, list[str], list[tuple[int, list[str], str]], int] | None:
    """Find the header: the first line ``is_header`` accepts among the first lines, else the first
    that looks like a header. Return (its line, its cells, the rows read after it, lines read)."""
    seen: list[tuple[int, list[str], str]] = []
    line = 0
    try:
        for cells in reader:
            raw = lines.take()
            start, line = line + 1, line + _count(raw)
            if not "".join(cells).strip():
                continue
            fixed = _requoted(cells, raw, 2, delimiter) or cells
            seen.append((start, fixed, raw))
            if is_header(clean_header(fixed)) or len(seen) >= HEADER_SEARCH_LINES:
                break
    except csv.Error as exc:
        raise FileReadError(f"the header row cannot be read as CSV: {exc}") from None
    if not seen:
        return None
    pick = next((i for i, (_, c, _) in enumerate(seen) if is_header(clean_header(c))), None)
    if pick is None:
        pick = next((i for i, (_, c, _) in enumerate(seen) if _looks_like_header(c)), 0)
    start, cells, _ = seen[pick]
    return start, clean_header(cells), seen[pick + 1 :], line


def _count(raw: str) -> int:
    """The physical lines a record's text spans."""
    return max(raw.count("\n") + (0 if raw.endswith("\n") else 1), 1)


def _csv_rows(
    reader: Iterator[list[str]],
    lines: _Lines,
    buffered: list[tuple[int, list[str], str]],
    line: int,
    header: list[str],
    delimiter: str,
    style: DecimalStyle,
    default: DecimalStyle,
) -> Iterator[Row]:
    width = len(header)
    for start, cells, raw in buffered:
        yield _row(start, cells, raw, width, delimiter, style, default)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raw = lines.take()
            start, line = line + 1, line + _count(raw)
            yield Row(start, [], [Violation("(whole row)", raw.strip()[:200], f"a well-formed CSV row ({exc})")])
            continue
        raw = lines.take()
        start, line = line + 1, line + _count(raw)
        if not "".join(cells).strip():
            continue
        yield _row(start, cells, raw, width, delimiter, style, default)


def _row(
    line: int, cells: list[str], raw: str, width: int, delimiter: str, style: DecimalStyle, default: DecimalStyle
) -> Row:
    cells = _requoted(cells, raw, width, delimiter) or cells
    # Trailing empty cells past the header (a trailing separator, Huobi) carry nothing.
    while len(cells) > width and not cells[-1].strip():
        cells = cells[:-1]
    problems: list[Violation] = []
    out: list[str] = []
    for cell in cells:
        cell = clean_cell(cell)
        text, rule = _number_cell(cell, style, default)
        if rule is not None:
            problems.append(Violation("", cell, rule))
        out.append(text)
    return Row(line, out, problems)


def _from_lines(
    numbered: list[tuple[int, list[str]]],
    encoding: str,
    warnings: list[str],
    delimiter: str,
    is_header: Callable[[list[str]], bool],
    size: int,
) -> Table:
    filled = [(n, cells) for n, cells in numbered if any(c.strip() for c in cells)]
    if not filled:
        raise FileReadError("the workbook's first sheet is empty")
    head = filled[:HEADER_SEARCH_LINES]
    pick = next((i for i, (_, c) in enumerate(head) if is_header(clean_header(c))), None)
    if pick is None:
        pick = next((i for i, (_, c) in enumerate(head) if _looks_like_header(c)), 0)
    header_line, header = filled[pick][0], clean_header(filled[pick][1])
    while header and not header[-1]:
        header.pop()
    width = len(header)
    rows = filled[pick + 1 :]
    done = [0]

    def iterate() -> Iterator[Row]:
        for n, cells in rows:
            done[0] = n
            trimmed = cells[:width] if not any(c.strip() for c in cells[width:]) else cells
            yield Row(n, [clean_cell(c) for c in trimmed])

    last = numbered[-1][0] if numbered else 1
    return Table(
        header=header,
        header_line=header_line,
        encoding=encoding,
        delimiter=delimiter,
        decimal="point",
        warnings=warnings,
        _rows=iterate(),
        _position=lambda: int(size * done[0] / max(last, 1)),
        size=size,
        workbook=True,
    )
