"""News items for seed 003's ``stock_news_raw``: the stable id, symbol tagging, category and tags,
and the two ways items come in (a feed parsed by feedparser, a CSV or JSON-lines file).

* ``news_id`` is a hash of what identifies an item wherever it is seen again: its link (without
  tracking parameters and fragment) when it has one, else its source, title and publication time.
  A re-fetched or re-imported item gets the same id, so it is stored once.
* ``SymbolTagger`` finds symbols in a title and content from a symbol -> aliases map: a ticker as
  a whole upper-case word (``AAPL``, ``$AAPL``), a name (``Apple``, ``Vietcombank``, ``Ngoại
  thương``) as whole words starting with a capital (a proper noun: "apple pie" is no Apple),
  otherwise case- and accent-insensitively, after Unicode NFC. The map comes
  from ``DEFAULT_ALIASES`` (the default stock symbols and a few Vietnamese banks and companies,
  as the seed's examples are Vietnamese) plus ``NEWS_SYMBOL_ALIASES``.
* ``categorize`` gives seed 003's ``category`` (the first rule whose keywords appear) and ``tags``
  (every keyword found, in the item's language), English and Vietnamese.
* ``item_from_entry`` turns a feedparser entry into a ``NewsItem``; ``items_from_file`` reads a
  CSV (header ``title,published_at,...``) or JSON-lines file into items or per-row errors that
  name the line, the field, the value and the rule.

Pure functions; cost is a few regular expressions per item (the tagger compiles one pattern for
the whole map).
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline.errors import Violation

# Symbol -> names a news item may call it by. Tickers match as upper-case words on their own.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "AAPL": ("Apple", "iPhone"),
    "MSFT": ("Microsoft", "Azure"),
    "GOOGL": ("Alphabet", "Google"),
    "AMZN": ("Amazon",),
    "NVDA": ("Nvidia",),
    "TSLA": ("Tesla",),
    "META": ("Meta Platforms", "Facebook"),
    "VCB": ("Vietcombank", "Ngoại thương Việt Nam", "Ngân hàng Ngoại thương"),
    "BID": ("BIDV", "Đầu tư và Phát triển Việt Nam"),
    "CTG": ("VietinBank", "Công Thương Việt Nam"),
    "TCB": ("Techcombank", "Kỹ Thương Việt Nam"),
    "VNM": ("Vinamilk", "Sữa Việt Nam"),
    "VIC": ("Vingroup",),
    "HPG": ("Hòa Phát", "Hoa Phat"),
    "FPT": ("FPT Corporation", "Tập đoàn FPT"),
    "MWG": ("Thế Giới Di Động", "Mobile World"),
}

# (category, keywords) in order: the first category with a keyword in the item wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "corporate_action",
        (
            "tăng vốn",
            "phát hành",
            "cổ tức",
            "chia tách",
            "mua lại cổ phiếu",
            "dividend",
            "stock split",
            "buyback",
            "share repurchase",
            "rights issue",
            "capital increase",
        ),
    ),
    ("merger_acquisition", ("merger", "acquisition", "acquire", "takeover", "sáp nhập", "thâu tóm", "mua lại")),
    (
        "earnings",
        (
            "earnings",
            "quarterly results",
            "revenue",
            "profit",
            "net income",
            "guidance",
            "eps",
            "lợi nhuận",
            "doanh thu",
            "kết quả kinh doanh",
            "báo cáo tài chính",
        ),
    ),
    (
        "regulatory",
        (
            "sec",
            "lawsuit",
            "investigation",
            "fine",
            "antitrust",
            "regulator",
            "probe",
            "settlement",
            "thanh tra",
            "xử phạt",
            "khởi tố",
            "điều tra",
        ),
    ),
    ("analyst_rating", ("upgrade", "downgrade", "price target", "rating", "outperform", "underperform", "khuyến nghị")),
    ("product", ("launch", "unveil", "product", "recall", "ra mắt", "sản phẩm")),
    ("market", ("market", "index", "shares", "stock", "cổ phiếu", "thị trường", "vn-index", "chứng khoán")),
)
BREAKING_WORDS = (
    "breaking",
    "halt",
    "halted",
    "bankruptcy",
    "fraud",
    "default",
    "recall",
    "investigation",
    "plunge",
    "crash",
    "khẩn",
    "nóng",
    "phá sản",
    "khởi tố",
    "đình chỉ",
)
_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_[a-z]+|ref|cmpid)$", re.I)


def _fold(text: str) -> str:
    """Lower-case, NFC, accents kept (Vietnamese words differ by accent alone)."""
    return unicodedata.normalize("NFC", text).casefold()


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def canonical_url(url: str) -> str:
    """``url`` without its fragment and tracking parameters, scheme and host lower-cased."""
    parts = urlsplit(url.strip())
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, query, ""))


def news_id(*, source_url: str, source: str, title: str, published_at: str) -> str:
    """The item's stable id: ``n-`` and 20 hex digits of a SHA-256 of its link (canonical) or,
    without a link, of its source, title (whitespace and case folded) and publication time."""
    if source_url.strip():
        basis = "url\x00" + canonical_url(source_url)
    else:
        basis = "\x00".join(("text", _fold(source.strip()), " ".join(_fold(title).split()), published_at.strip()))
    return "n-" + hashlib.sha256(basis.encode()).hexdigest()[:20]


class SymbolTagger:
    """Finds the symbols a text names. Build once from a map; ``tag`` is safe from any thread."""

    def __init__(self, aliases: Mapping[str, Iterable[str]]) -> None:
        self.aliases = {s: tuple(dict.fromkeys(a)) for s, a in aliases.items()}
        names: dict[str, str] = {}  # accent-stripped folded name -> symbol
        for symbol, alias in self.aliases.items():
            for name in alias:
                names[_strip_accents(_fold(name))] = symbol
        self._names = names
        ordered = sorted(names, key=len, reverse=True)
        self._name_re = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in ordered) + r")(?!\w)", re.IGNORECASE)
            if ordered
            else None
        )
        symbols = sorted(self.aliases, key=len, reverse=True)
        self._ticker_re = (
            re.compile(r"(?<![\w.])\$?(" + "|".join(re.escape(s) for s in symbols) + r")(?![\w])") if symbols else None
        )

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.aliases)

    def tag(self, *texts: str) -> list[str]:
        """Return the symbols named in ``texts``, in order of first mention."""
        found: dict[str, None] = {}
        for text in texts:
            if not text:
                continue
            hits: list[tuple[int, str]] = []
            if self._ticker_re is not None:
                hits += [(m.start(), m.group(1)) for m in self._ticker_re.finditer(text)]
            if self._name_re is not None:
                plain = _strip_accents(unicodedata.normalize("NFC", text))
                hits += [
                    (m.start(), self._names[m.group(1).casefold()])
                    for m in self._name_re.finditer(plain)
                    if m.group(1)[0].isupper() and m.group(1).casefold() in self._names
                ]
            for _, symbol in sorted(hits):
                found.setdefault(symbol, None)
        return list(found)


def merged_aliases(extra: Mapping[str, tuple[str, ...]], symbols: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    """``DEFAULT_ALIASES`` with ``extra`` added, and every symbol of ``symbols`` (as its own ticker)."""
    out = dict(DEFAULT_ALIASES)
    for symbol in symbols:
        out.setdefault(symbol, ())
    for symbol, names in extra.items():
        out[symbol] = tuple(dict.fromkeys(out.get(symbol, ()) + names))
    return out


def _keyword_re(words: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(_fold(w)) for w in words) + r")(?!\w)")


_CATEGORY_RES = tuple((name, _keyword_re(words)) for name, words in CATEGORIES)
_BREAKING_RE = _keyword_re(BREAKING_WORDS)


def categorize(title: str, content: str) -> tuple[str, list[str]]:
    """Return (category, tags): the first matching category (``general`` when none) and every
    keyword found in the title and content, first mention first, at most 8."""
    text = _fold(f"{title}\n{content}")
    category = "general"
    tags: dict[str, None] = {}
    for name, pattern in _CATEGORY_RES:
        found = pattern.findall(text)
        if found and category == "general":
            category = name
        for word in found:
            tags.setdefault(word, None)
    return category, list(tags)[:8]


def is_breaking(title: str, tags: Iterable[str] = ()) -> bool:
    """Tell whether a headline reads as breaking news (a halt, a bankruptcy, "breaking", ...)."""
    return bool(_BREAKING_RE.search(_fold(title))) or any(_fold(t) == "breaking" for t in tags)


@dataclass(frozen=True)
class NewsItem:
    """One item as it came in, before it is tagged with symbols (one message per symbol)."""

    title: str
    content: str
    source: str
    source_url: str
    published_at: str  # ISO-8601 with an offset
    symbols: tuple[str, ...] = ()  # named by the source itself (a file's column); tagged otherwise
    category: str | None = None
    tags: tuple[str, ...] = field(default=())

    @property
    def news_id(self) -> str:
        return news_id(source_url=self.source_url, source=self.source, title=self.title, published_at=self.published_at)


def _clean_html(text: str) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")
    return " ".join(text.replace("&nbsp;", " ").split())


def _iso(value: Any) -> str | None:
    """An ISO-8601 time with an offset from a feed's or a file's time, or None."""
    if value is None or value == "":
        return None
    if hasattr(value, "tm_year"):  # feedparser's time.struct_time, in UTC
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC).isoformat()
    text = str(value).strip()
    if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
        number = float(text)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, tz=UTC).isoformat()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def item_from_entry(entry: Mapping[str, Any], source: str) -> tuple[NewsItem | None, list[Violation]]:
    """A feedparser entry as an item, or the rules it breaks (no title; no time)."""
    title = _clean_html(str(entry.get("title") or ""))
    published = _iso(entry.get("published_parsed") or entry.get("updated_parsed"))
    problems = []
    if not title:
        problems.append(Violation("title", entry.get("title"), "a title that is not blank"))
    if published is None:
        when = entry.get("published") or entry.get("updated")
        problems.append(Violation("published_at", when, "a publication time (published or updated)"))
    if problems:
        return None, problems
    assert published is not None
    content = ""
    for part in entry.get("content") or ():
        content = _clean_html(str(part.get("value") or ""))
        if content:
            break
    content = content or _clean_html(str(entry.get("summary") or ""))
    tags = tuple(str(t.get("term")) for t in entry.get("tags") or () if t.get("term"))
    return NewsItem(title, content, source, str(entry.get("link") or ""), published, tags=tags), []


FILE_FIELDS = ("title", "published_at", "content", "source", "source_url", "symbol", "category", "tags")


@dataclass(frozen=True)
class RowError:
    """A file row that is not an item: its line, and the rules it breaks."""

    line: int
    violations: list[Violation]
    raw: str

    def __str__(self) -> str:
        return f"line {self.line}: " + "; ".join(str(v) for v in self.violations)


def _row_item(row: Mapping[str, Any], default_source: str) -> tuple[NewsItem | None, list[Violation]]:
    title = str(row.get("title") or "").strip()
    raw_time = row.get("published_at") or row.get("published") or row.get("time")
    published = _iso(raw_time)
    problems = []
    if not title:
        problems.append(Violation("title", row.get("title"), "a title that is not blank"))
    if published is None:
        rule = "an ISO-8601 time (an offset, or UTC when none) or Unix epoch seconds or milliseconds"
        problems.append(Violation("published_at", raw_time, rule))
    symbols_raw = row.get("symbol") or row.get("symbols") or ""
    symbols = [str(s) for s in symbols_raw] if isinstance(symbols_raw, list) else re.split(r"[,;| ]+", str(symbols_raw))
    symbols = [s.strip().upper() for s in symbols if s.strip()]
    bad = [s for s in symbols if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}(?:\.[A-Z]{1,2})?", s)]
    if bad:
        problems.append(Violation("symbol", bad[0], "a stock symbol, e.g. VCB or AAPL"))
    if problems:
        return None, problems
    assert published is not None
    tags_raw = row.get("tags") or ()
    tags = tuple(tags_raw) if isinstance(tags_raw, list) else tuple(t.strip() for t in str(tags_raw).split("|"))
    return (
        NewsItem(
            title=title,
            content=str(row.get("content") or ""),
            source=str(row.get("source") or default_source),
            source_url=str(row.get("source_url") or row.get("url") or ""),
            published_at=published,
            symbols=tuple(dict.fromkeys(symbols)),
            category=str(row.get("category") or "") or None,
            tags=tuple(t for t in tags if t),
        ),
        [],
    )


def items_from_file(text: str, name: str) -> Iterator[NewsItem | RowError]:
    """Read a news file: JSON lines (``.jsonl``/``.json``, or text starting with ``{``) or CSV with a
    header naming at least ``title`` and ``published_at``. Yields an item or a ``RowError`` per row."""
    text = text.lstrip("\ufeff")
    if name.lower().endswith((".jsonl", ".json", ".ndjson")) or text.lstrip().startswith("{"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowError(line_no, [Violation("line", line[:80], f"a JSON object ({exc.msg})")], line)
                continue
            if not isinstance(row, dict):
                yield RowError(line_no, [Violation("line", line[:80], "a JSON object")], line)
                continue
            item, problems = _row_item(row, name)
            yield item if item is not None else RowError(line_no, problems, line)
        return
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [h for h in ("title", "published_at") if h not in header]
    if missing:
        yield RowError(1, [Violation("header", ",".join(header), f"names the columns {', '.join(missing)}")], "")
        return
    for row in reader:
        item, problems = _row_item(row, name)
        yield item if item is not None else RowError(reader.line_num, problems, ",".join(map(str, row.values())))


def news_fields(item: NewsItem, tagger: SymbolTagger, collected_at: str) -> list[dict[str, Any]]:
    """The ``StockNews`` fields of ``item``, one dict per symbol it names (its own symbols, else
    the tagger's); an item that names none gives none."""
    symbols = item.symbols or tuple(tagger.tag(item.title, item.content))
    if not symbols:
        return []
    category, tags = categorize(item.title, item.content)
    merged_tags = list(dict.fromkeys([*item.tags, *tags]))[:12]
    return [
        {
            "news_id": item.news_id,
            "symbol": symbol,
            "title": item.title,
            "content": item.content,
            "source": item.source,
            "source_url": item.source_url,
            "published_at": item.published_at,
            "collected_at": collected_at,
            "category": item.category or category,
            "tags": merged_tags,
        }
        for symbol in symbols
    ]
