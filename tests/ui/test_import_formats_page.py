"""AppTest of the Import page with the formats and files traders really have: a broker file whose
local times are shown in UTC and in the chosen zone before anything is published, a mapping form
filled with the best guess, and a file of another kind named instead of mapped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402 - after the sys.path insert above
from pipeline.journal.formats import LABELS  # noqa: E402

PAGE = str(ROOT / "views" / "imports.py")
TIMEOUT_S = 30.0
TRADERVUE = b"Date,Time,Symbol,Quantity,Price,Side\n07/01/2025,09:30:00,AAPL,10,210.5,Buy\n"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def desk(built_runtimes, monkeypatch: pytest.MonkeyPatch) -> list[runtime.Runtime]:
    monkeypatch.setenv("STAGES", "")
    monkeypatch.setenv("USER_ID", "trader")
    monkeypatch.setenv("IMPORT_TIMEZONE", "America/New_York")
    return built_runtimes


def test_local_times_are_previewed_in_utc_and_in_the_chosen_zone(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    assert at.text_input[0].value == "America/New_York"
    at.file_uploader[0].set_value(("tradervue.csv", TRADERVUE, "text/csv")).run()
    assert not at.exception, at.exception
    times = next(d.value for d in at.dataframe if "UTC" in d.value.columns)
    assert times.iloc[0]["UTC"] == "2025-07-01 13:30:00 UTC"
    assert times.iloc[0]["America/New_York"] == "2025-07-01 09:30:00 EDT"
    assert {m.label: m.value for m in at.metric}["Format"] == "tradervue"
    assert f"Read as: {LABELS['tradervue']}." in [c.value for c in at.caption]
    # another zone changes what will be stored, and the preview says so before the import
    at.text_input[0].set_value("Europe/Berlin").run()
    times = next(d.value for d in at.dataframe if "UTC" in d.value.columns)
    assert times.iloc[0]["UTC"] == "2025-07-01 07:30:00 UTC"


def test_an_unknown_layout_opens_the_mapping_with_the_best_guess(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    data = b"Trade Date;Product;Trade Type;Traded Price;Amount;Fee\n2020/09/29 17:55:30;LTC/USD;Buy;46,43;0,9;0\n"
    at.file_uploader[0].set_value(("bitflyer.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="map:symbol").value == "Product"
    assert at.selectbox(key="map:price").value == "Traded Price"
    assert at.selectbox(key="map:time").value == "Trade Date"
    assert at.text_input[-2].value == "%Y/%m/%d %H:%M:%S"


def test_a_file_of_another_kind_is_named(desk) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    data = b"User_ID,UTC_Time,Account,Operation,Coin,Change,Remark\n1,2021-01-01 00:00:00,Spot,Deposit,BTC,1,\n"
    at.file_uploader[0].set_value(("statement.csv", data, "text/csv")).run()
    assert not at.exception
    assert at.error and "Binance transaction history" in at.error[0].value
    assert not any("match no known export" in w.value for w in at.warning)
