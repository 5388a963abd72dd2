"""AppTest of the Journal page: empty state, the journal with its analytics and alerts, the entry
form's errors and success, and the trader's annotations.

The page runs in this process on the embedded bus with no stages, so what a test publishes stays
on ``raw-trades`` and what it shows comes from rows written straight into the journal tables.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `import runtime` must work however pytest was started
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402 - after the sys.path insert above
from pipeline.topics import RAW_TRADES  # noqa: E402 - after the sys.path insert above
from storage import journal  # noqa: E402 - after the sys.path insert above
from storage.db import Database  # noqa: E402 - after the sys.path insert above

PAGE = str(ROOT / "views" / "journal.py")
TIMEOUT_S = 30.0
USER = "trader"
HOUR = 3_600_000
T0 = 1_731_700_000_000  # 2024-11-15 19:46:40 UTC
EMPTY = "No trades yet: add one above or import a CSV on the Import page."

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded bus in ``tmp_path`` with no stages."""
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("STAGES", "")
    monkeypatch.setenv("USER_ID", USER)
    return tmp_path


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[MediaFileManager]:
    """The media managers AppTest creates per run, so a test can run a download button's callable."""
    made: list[MediaFileManager] = []

    class Recording(MediaFileManager):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", Recording)
    return made


def downloaded(at: AppTest, managers: list[MediaFileManager], label: str) -> bytes:
    """Click-free download: run the deferred callable of the button ``label`` of the last run."""
    (found,) = [b for b in at.get("download_button") if b.proto.label == label]
    manager = managers[-1]
    url = manager.execute_deferred(found.proto.deferred_file_id)
    storage = manager._storage
    assert isinstance(storage, MemoryMediaFileStorage)  # what AppTest's manager keeps files in
    return storage.get_file(url.rsplit("/", 1)[1]).content


def trade_row(trade_id: str, **over: object) -> dict:
    row = {
        "trade_id": trade_id,
        "user_id": USER,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "kind": "trade",
        "entry_price": 100.0,
        "exit_price": 110.0,
        "quantity": 1.0,
        "entry_time": T0,
        "exit_time": T0 + HOUR,
        "pnl": 10.0,
        "fees": 0.5,
        "stop_loss": None,
        "notes": None,
        "tags": [],
        "setup": None,
        "emotion": None,
        "lot_id": None,
        "fill_ids": [],
        "source": "manual",
        "context": {
            "entry": {"price": 100.0, "change_24h_pct": 2.5, "volatility_pct": 1.2, "trend": "up"},
            "exit": {"missing": True},
        },
        "stored_at": T0,
    }
    row.update(over)
    return row


def seed(path: Path) -> None:
    """Write a small journal (net P&L +20 over five closed trades, one open lot) and one alert."""
    rows = [
        trade_row("t1", pnl=100.0, fees=1.0, tags=["breakout"], setup="breakout", stop_loss=90.0),
        trade_row(
            "t2",
            symbol="ETHUSDT",
            pnl=-50.0,
            fees=1.0,
            tags=["fomo"],
            entry_time=T0 + 2 * HOUR,
            exit_time=T0 + 3 * HOUR,
            notes='=HYPERLINK("x")',
        ),
        trade_row("t3", pnl=30.0, entry_time=T0 + 25 * HOUR, exit_time=T0 + 26 * HOUR),
        trade_row("t4", symbol="ETHUSDT", pnl=-80.0, entry_time=T0 + 27 * HOUR, exit_time=T0 + 28 * HOUR),
        trade_row(
            "lot-a",
            kind="lot",
            entry_price=90.0,
            exit_price=None,
            exit_time=None,
            pnl=None,
            quantity=2.0,
            entry_time=T0 + 40 * HOUR,
            lot_id="lot-a",
            source="csv",
        ),
        trade_row(
            "rt-1",
            kind="round_trip",
            entry_price=90.0,
            exit_price=100.0,
            quantity=0.5,
            pnl=20.0,
            entry_time=T0 + 40 * HOUR,
            exit_time=T0 + 50 * HOUR,
            lot_id="lot-a",
            source="csv",
        ),
    ]
    alert = (
        "a1",
        USER,
        "revenge_trading",
        "high",
        T0 + 4 * HOUR,
        json.dumps(["t2", "t4"]),
        "Two fast trades right after a loss",
        json.dumps({}),
        T0,
    )

    def write(d) -> None:
        for row in rows:
            values = {k: json.dumps(v) if k in ("tags", "fill_ids", "context") else v for k, v in row.items()}
            d.conn.execute(
                f"INSERT INTO journal_trades ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})",
                values,
            )
        d.conn.execute("INSERT INTO journal_alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", alert)

    store = Database(path / "desk.db")
    store.write(write)
    store.close()


def new_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    at.run()
    no_exception(at)
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def journal_table(at: AppTest):
    (table,) = [d.value for d in at.dataframe if "trade_id" in d.value.columns]
    return table


def positions_table(at: AppTest):
    (table,) = [d.value for d in at.dataframe if "avg_entry_price" in d.value.columns]
    return table


def raw_trades_published() -> int:
    (topic,) = [t for t in runtime.get_runtime().topics() if t.name == RAW_TRADES]
    return topic.messages


def button(at: AppTest, label: str):
    (found,) = [b for b in at.button if b.label == label]
    return found


def fill_entry(at: AppTest, **values: Any) -> None:
    at.text_input(key="je_symbol").input(values.get("symbol", "BTCUSDT"))
    at.number_input(key="je_quantity").set_value(values.get("quantity", 0.5))
    at.number_input(key="je_entry_price").set_value(values.get("entry_price", 100.0))
    if "exit_price" in values:
        at.number_input(key="je_exit_price").set_value(values["exit_price"])


def test_an_empty_journal_says_what_to_do(desk: Path) -> None:
    at = new_page()
    assert [t.value for t in at.title] == ["Journal"]
    assert EMPTY in [i.value for i in at.info]
    assert not at.metric and not at.get("plotly_chart")
    assert not at.error
    assert at.text_input(key="je_symbol").label == "Symbol"


def test_the_journal_shows_trades_metrics_charts_positions_and_alerts(desk: Path) -> None:
    seed(desk)
    at = new_page()
    assert not at.error
    shown = metrics(at)
    assert shown["Net P&L"] == "+20.00"
    assert shown["Win rate"] == "60%"
    assert shown["Profit factor"] == f"{150 / 130:.2f}"
    assert shown["Expectancy"] == "+4.00"
    assert shown["Max drawdown"] == "100.00"
    assert shown["Average R"] == "+10.00 R"  # only t1 has a stop: 100 / |100 - 90|
    assert shown["Closed trades"] == "5"

    table = journal_table(at)
    assert table["trade_id"].tolist() == ["rt-1", "lot-a", "t4", "t3", "t2", "t1"]  # newest first
    assert table.set_index("trade_id").loc["lot-a", "open_quantity"] == pytest.approx(1.5)
    positions = positions_table(at)
    assert positions[["symbol", "side", "open_quantity"]].values.tolist() == [["BTCUSDT", "BUY", 1.5]]

    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2 + 5 + 2 + 5  # equity, calendar, five breakdowns; in R: two charts, five breakdowns
    heatmap = [t for c in charts for t in c["data"] if t["type"] == "heatmap"]
    assert len(heatmap) == 1 and heatmap[0]["zmid"] == 0

    markdown = " ".join(m.value for m in at.markdown)
    assert "revenge trading" in markdown and ":red-badge[" in markdown
    assert "Two fast trades right after a loss" in [t.value for t in at.text]
    assert any("`t2`, `t4`" in c.value for c in at.caption)


def test_export_csv_has_the_filtered_journal_with_text_cells_escaped(desk: Path, downloads: list) -> None:
    seed(desk)
    at = new_page()
    at.selectbox(key="jf_symbol").select("ETHUSDT").run()
    rows = list(csv.DictReader(io.StringIO(downloaded(at, downloads, "Export CSV").decode())))
    assert [r["trade_id"] for r in rows] == ["t4", "t2"]
    t2 = rows[1]
    assert t2["notes"] == '\'=HYPERLINK("x")'  # a formula is neutralised
    assert t2["tags"] == "fomo"
    assert t2["entry_time"] == "2024-11-15T21:46:40Z" and t2["exit_time"] == "2024-11-15T22:46:40Z"
    assert float(t2["pnl"]) == -50.0  # numbers stay numbers


def test_filters_narrow_the_table_and_the_metrics(desk: Path) -> None:
    seed(desk)
    at = new_page()
    at.selectbox(key="jf_symbol").select("ETHUSDT").run()
    no_exception(at)
    assert journal_table(at)["trade_id"].tolist() == ["t4", "t2"]
    assert metrics(at)["Net P&L"] == "-130.00"
    assert metrics(at)["Profit factor"] == "0.00"

    at.selectbox(key="jf_symbol").select("All")
    at.selectbox(key="jf_tag").select("fomo").run()
    assert journal_table(at)["trade_id"].tolist() == ["t2"]

    at.selectbox(key="jf_tag").select("All").run()
    at.date_input(key="jf_dates").set_value((journal_day(T0 + 26 * HOUR), journal_day(T0 + 28 * HOUR))).run()
    no_exception(at)
    assert journal_table(at)["trade_id"].tolist() == ["t4", "t3"]


def journal_day(ms: int):
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, UTC).date()


def test_a_bad_price_names_the_field_and_publishes_nothing(desk: Path) -> None:
    at = new_page()
    fill_entry(at, entry_price=0.0)
    button(at, "Add trade").click().run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("Entry price" in e and "entry_price" in e and "0.0" in e and "> 0" in e for e in errors), errors
    assert "Nothing was saved: fix the fields above." in errors
    assert not at.success
    assert raw_trades_published() == 0


def test_an_exit_price_without_exit_time_is_refused(desk: Path) -> None:
    at = new_page()
    fill_entry(at, exit_price=120.0)
    button(at, "Add trade").click().run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("exit_time" in e for e in errors), errors
    assert raw_trades_published() == 0


def test_a_good_entry_is_published_with_its_trade_id(desk: Path) -> None:
    at = new_page()
    fill_entry(at)
    at.multiselect(key="je_tags").set_value(["breakout", "A+"])
    at.selectbox(key="je_emotion").select("calm")
    button(at, "Add trade").click().run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    (success,) = at.success
    assert success.value.startswith("Trade `t-") and "sent to the journal" in success.value
    assert raw_trades_published() == 1


def test_editing_notes_tags_and_setup_saves_an_annotation(desk: Path) -> None:
    seed(desk)
    at = new_page()
    at.selectbox(key="je_edit_trade").select("t1").run()
    at.text_area(key="je_edit_notes_t1").input("Waited for the retest")
    at.multiselect(key="je_edit_tags_t1").set_value(["patience"])
    at.selectbox(key="je_edit_setup_t1").select("breakout")
    button(at, "Save").click().run()
    no_exception(at)
    assert any("t1" in s.value for s in at.success)
    row = journal.trades(runtime.get_runtime().db, USER).set_index("trade_id").loc["t1"]
    assert (row["notes"], row["tags"], row["setup"]) == ("Waited for the retest", ["patience"], "breakout")
    at.run()
    assert journal_table(at).set_index("trade_id").loc["t1", "tags"] == ["patience"]
