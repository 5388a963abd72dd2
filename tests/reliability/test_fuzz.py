"""Property-based fuzzing (Hypothesis) of the importer, the trades API and every topic's contract.

Properties: no input makes a 5xx or an unnamed error; every refused row or field is named (column or
field, value, rule); good rows come out unchanged. The CI profile runs a few hundred inputs per
entry point; ``HYPOTHESIS_PROFILE=long`` runs 10,000 (the closing figure).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.api.app import create_app
from pipeline.config import load_config
from pipeline.errors import BadMessageError
from pipeline.journal.importer import ImportFileError, check_file
from pipeline.messages import MODELS, decode, encode
from pipeline.wiring import Runtime, build_runtime
from storage.db import Database

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytestmark = pytest.mark.timeout(3600)

NOW_MS = int(datetime(2025, 1, 10, tzinfo=UTC).timestamp() * 1000)
BINANCE = "Date(UTC),Pair,Side,Price,Executed,Amount,Fee"
BYBIT = (
    "Spot Pairs,Order Type,Direction,Filled Value,Filled Price,Filled Quantity,Fees,Transaction ID,Order No.,"
    "Timestamp (UTC)"
)
GENERIC = "trade_id,symbol,side,entry_price,exit_price,quantity,entry_time,exit_time,pnl,notes,fees,tags"

# Cells a real file or a hostile one may hold.
ugly = st.sampled_from(
    ["", " ", "NaN", "Infinity", "-0", "1e309", "1e309BTC", "0x10", "1_000", "=1+1", "\x00", "\u2028", "SELL", "--"]
)
cell = st.one_of(ugly, st.text(max_size=30), st.decimals(allow_nan=True, allow_infinity=True).map(str))


@st.composite
def hostile_file(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from([BINANCE, BYBIT, GENERIC, "a,b,c", ""]))
    width = max(len(header.split(",")), 1)
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=width + 2), max_size=8))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    text = "\n".join([header.replace(",", delimiter), *(delimiter.join(r) for r in rows)])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


@st.composite
def good_binance_row(draw: st.DrawFn) -> tuple[str, dict[str, float | str | int]]:
    base, price = draw(st.sampled_from([("BTC", 60000.0), ("ETH", 3000.0), ("SOL", 150.0), ("1INCH", 0.4)]))
    price = round(price * draw(st.floats(0.5, 2.0)), 4)
    qty = round(draw(st.floats(0.0001, 1000.0)), 4)
    when = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 150_000_000)))
    side = draw(st.sampled_from(["BUY", "SELL"]))
    line = f"{when:%Y-%m-%d %H:%M:%S},{base}USDT,{side},{price},{qty}{base},{price * qty:.8f}USDT,0.1USDT"
    return line, {
        "symbol": f"{base}USDT",
        "side": side,
        "price": price,
        "quantity": qty,
        "time": int(when.timestamp() * 1000),
    }


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(tmp_path_factory.mktemp("fuzz") / "desk.db")
    yield database
    database.close()


@given(hostile_file())
@example(b'Date(UTC),Pair,Side,Price,Executed,Amount,Fee\n"\n,')  # a quoted line break in a one-cell row
def test_the_importer_names_every_refusal_and_never_fails_otherwise(db: Database, data: bytes) -> None:
    try:
        report = check_file(data, user_id="fuzz", db=db, now_ms=NOW_MS)
    except ImportFileError as exc:
        assert str(exc)  # a whole-file refusal says why
        return
    assert report.rows == report.accepted + report.duplicates + report.rejected_rows
    assert all(e.column and e.reason for e in report.rejected), report.rejected


@given(st.lists(good_binance_row(), min_size=1, max_size=20))
def test_good_rows_import_unchanged(db: Database, rows: list[tuple[str, dict[str, float | str | int]]]) -> None:
    from pipeline.journal.formats import parse_row

    data = "\n".join([BINANCE, *(line for line, _ in rows)]).encode()
    report = check_file(data, user_id="fuzz-good", db=db, now_ms=NOW_MS)
    assert report.rejected == [] and report.accepted + report.duplicates == len(rows)
    for line, want in rows:
        fill = parse_row("binance-spot", dict(zip(BINANCE.split(","), line.split(","))), now_ms=NOW_MS)
        got = {"symbol": fill.symbol, "side": fill.side, "price": fill.price, "quantity": fill.quantity}  # type: ignore[union-attr]
        assert got == {k: want[k] for k in got} and fill.time == want["time"]  # type: ignore[union-attr]


json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
TRADE_FIELDS = ["symbol", "side", "entry_price", "exit_price", "quantity", "entry_time", "exit_time", "pnl", "notes"]
trade_body = st.dictionaries(st.sampled_from([*TRADE_FIELDS, "user_id", "source", "tags", "fees"]), json_value)
near_good = st.fixed_dictionaries(
    {
        "symbol": st.one_of(st.sampled_from(["BTCUSDT", "AAPL", "eth/usdt"]), st.text(max_size=12)),
        "side": st.one_of(st.sampled_from(["BUY", "sell", "long"]), st.text(max_size=5)),
        "entry_price": st.one_of(st.floats(allow_nan=False), st.text(max_size=8)),
        "quantity": st.one_of(st.floats(allow_nan=False), st.integers()),
        "entry_time": st.one_of(st.integers(-(2**40), 2**50), st.text(max_size=20)),
    }
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    rt: Runtime = build_runtime(
        load_config({"DATA_DIR": str(tmp_path_factory.mktemp("api")), "STAGES": "", "USER_ID": "fuzz"})
    )
    ctx = rt.api_context()
    token = ctx.tokens.token_for("fuzz")
    yield TestClient(create_app(ctx), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"})
    rt.stop()


@given(st.one_of(trade_body, near_good, json_value))
def test_the_trades_api_never_answers_5xx_and_names_every_bad_field(api: TestClient, body: object) -> None:
    response = api.post("/api/trades", content=json.dumps(body).encode())  # json: ints past 64 bits too
    assert response.status_code in (201, 403, 413, 422), response.text
    if response.status_code == 422:
        detail = response.json()["detail"]
        assert detail and all(d["field"] and d["rule"] for d in detail), detail


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_the_trades_api_survives_any_bytes(api: TestClient, raw: bytes) -> None:
    assert api.post("/api/trades", content=raw).status_code in (201, 403, 413, 422)


@given(st.sampled_from(sorted(MODELS)), st.dictionaries(st.text(max_size=16), json_value, max_size=12))
def test_every_contract_refuses_by_name_or_accepts_and_round_trips(topic: str, fields: dict[str, object]) -> None:
    raw = json.dumps(fields).encode()
    try:
        message = decode(topic, raw)
    except BadMessageError as exc:
        assert exc.violations and all(v.rule for v in exc.violations)
        return
    again = decode(topic, encode(message))
    assert again == message
    for value in message.__dict__.values():
        if isinstance(value, float):
            assert math.isfinite(value)


@given(st.sampled_from(sorted(MODELS)), st.binary(max_size=200))
def test_every_contract_refuses_any_bytes_by_name(topic: str, raw: bytes) -> None:
    try:
        decode(topic, raw)
    except BadMessageError as exc:
        assert exc.violations and all(v.rule for v in exc.violations)


def test_the_profile_in_force_is_stated(request: pytest.FixtureRequest) -> None:
    assert settings().max_examples in (300, 10_000)
    assert Path(__file__).name == "test_fuzz.py"
