"""AppTest of the Import page: the check before import with its per-row report, the import, a
re-import that adds nothing, and files that need a column mapping or cannot be read."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402 - after the sys.path insert above
from pipeline.topics import RAW_TRADES  # noqa: E402 - after the sys.path insert above

PAGE = str(ROOT / "views" / "imports.py")
TIMEOUT_S = 30.0
CSV = (
    "\ufeffDate(UTC),Pair,Side,Price,Executed,Amount,Fee\n"
    "2024-11-16 09:00:00,SOLUSDT,BUY,200,10SOL,2000USDT,0.1USDT\n"
    "2024-11-16 09:30:00,SOLUSDT,SELL,140,10SOL,1400USDT,0.1USDT\n"
    "2024-11-16 09:36:00,SOLUSDT,BUY,-3,20SOL,2820USDT,0.1USDT\n"
).encode()

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def desk(built_runtimes, monkeypatch: pytest.MonkeyPatch) -> list[runtime.Runtime]:
    monkeypatch.setenv("STAGES", "")
    monkeypatch.setenv("USER_ID", "trader")
    return built_runtimes


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _published(rt: runtime.Runtime) -> int:
    consumer = rt.bus.consumer(f"t-{uuid.uuid4().hex[:6]}", [RAW_TRADES])
    try:
        total, records = 0, consumer.poll(1000, 2.0)
        while records:
            total += len(records)
            records = consumer.poll(1000, 0.5)
        return total
    finally:
        consumer.close()


def test_empty_page_says_what_to_do(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert "Nothing to import yet" in at.info[0].value


def test_check_then_import_then_reimport_adds_nothing(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(("binance.csv", CSV, "text/csv")).run()
    assert not at.exception, at.exception
    metrics = _metrics(at)
    assert metrics["Format"] == "binance-spot"
    # An exchange export's rows are fills, counted as such (the journal makes round trips of them).
    assert (metrics["New fills"], metrics["Already in the journal"], metrics["Rejected rows"]) == ("2", "0", "1")
    assert not any(label.startswith("New trades") for label in metrics)
    report = at.dataframe[-1].value
    assert report.iloc[0]["row"] == 4 and report.iloc[0]["column"] == "Price" and report.iloc[0]["value"] == "-3"
    assert _published(desk[0]) == 0  # the check publishes nothing

    button = next(b for b in at.button if b.label.startswith("Import"))
    assert button.label == "Import 2 fills"
    button.click().run()
    assert not at.exception, at.exception
    assert any("Published 2 new fills from 3 rows" in s.value for s in at.success)
    assert _published(desk[0]) == 2
    # No journal stage runs here (STAGES is empty): the page says what is published and what is stored.
    metrics = _metrics(at)
    assert (metrics["Fills published"], metrics["Fills in the ledger"], metrics["Round trips in the journal"]) == (
        "2",
        "0",
        "…",
    )

    # The same file again, after the ledger knows the fills: all duplicates.
    rt = desk[0]
    rt.db.write(
        lambda d: d.conn.executemany(
            "INSERT INTO journal_fills (fill_id, seq, user_id, symbol, side, price, quantity, time, source, format) "
            "VALUES (?, ?, 'trader', 'SOLUSDT', 'BUY', 1, 1, 1, 'csv', 'binance-spot')",
            [(r["raw_id"], i) for i, r in enumerate(_raw_ids(rt))],
        )
    )
    again = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    again.file_uploader[0].set_value(("binance-again.csv", CSV, "text/csv")).run()
    metrics = _metrics(again)
    assert (metrics["New fills"], metrics["Already in the journal"]) == ("0", "2")
    assert next(b for b in again.button if b.label.startswith("Import")).disabled


def _raw_ids(rt: runtime.Runtime) -> list[dict]:
    import orjson

    consumer = rt.bus.consumer(f"t-{uuid.uuid4().hex[:6]}", [RAW_TRADES])
    try:
        return [orjson.loads(r.value or b"") for r in consumer.poll(1000, 2.0)]
    finally:
        consumer.close()


def test_unknown_columns_ask_for_a_mapping_and_a_binary_file_is_refused(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(
        ("mine.csv", b"when,what,px,qty,dir\n2024-11-16 09:00,SOLUSDT,200,1,buy\n", "text/csv")
    ).run()
    assert not at.exception
    assert any("match no known export" in w.value for w in at.warning)
    assert at.selectbox(key="map:symbol").options[1:] == ["when", "what", "px", "qty", "dir"]

    png = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    png.file_uploader[0].set_value(("trades.csv", b"\x89PNG\r\n\x1a\n" + bytes(200), "text/csv")).run()
    assert not png.exception
    assert png.error and "trades.csv" in png.error[0].value


def test_an_uploaded_header_and_file_name_are_shown_as_text_never_as_markdown(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    odd = b"**bold** :red[x] $x$"
    header = b"[click](http://evil.example),[click](http://evil.example)," + odd + b"," + odd + b"\n1,2,3,4\n"
    at.file_uploader[0].set_value(("[a](http://evil.example).csv", header, "text/csv")).run()
    assert not at.exception
    (error,) = at.error
    assert "repeats columns" in error.value
    # every Markdown mark is escaped: no link, bold, colour or formula can form
    assert "\\[click\\]\\(http\\:" in error.value and "\\*\\*bold\\*\\*" in error.value
    assert "\\:red\\[x\\]" in error.value and "\\$x\\$" in error.value
    assert "](http" not in error.value.replace("\\]\\(http", "")
