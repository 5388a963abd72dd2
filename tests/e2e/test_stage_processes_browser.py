"""The Signals, Portfolio and Pipeline pages with the ml, decision and virtual-exchange stages running
as processes of their own (``STAGE_PROCESSES``): the pages read what the stages publish, so they
show the stages running and what they say, as they do when the stages are threads of the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import Server, Tab, streamlit_server
from tests.e2e.test_browser import assert_healthy, open_app, table

pytestmark = pytest.mark.timeout(180)

PROCESSES = ("ml", "decision", "virtual-exchange")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with streamlit_server(
        tmp_path_factory.mktemp("processes"),
        {
            "STAGES": "simulator,market-store," + ",".join(PROCESSES),
            "STAGE_PROCESSES": ",".join(PROCESSES),
            "SYMBOLS": "BTCUSDT,ETHUSDT",
        },
    ) as s:
        yield s


def _wait_for_text(tab: Tab, server: Server, text: str, timeout_s: float = 60.0) -> None:
    try:
        tab.page.get_by_text(text, exact=False).first.wait_for(state="attached", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"the page never showed {text!r}; {server.describe()}")


def test_the_signals_page_shows_what_the_ml_process_says(tab: Tab, server: Server) -> None:
    page = open_app(tab, server, "signals")
    # No model is trained, so the ml process counts every tick as having none: it runs, and says so.
    _wait_for_text(tab, server, "ticks no model")
    assert page.get_by_text("The ml stage is not running").count() == 0
    assert_healthy(tab, server)


def test_the_portfolio_page_sees_the_exchange_and_decision_processes(tab: Tab, server: Server) -> None:
    page = open_app(tab, server, "portfolio")
    _wait_for_text(tab, server, "Orders the exchange rejected")
    page.wait_for_timeout(2500)  # two refreshes of the live fragment
    assert page.get_by_text("stage is not running").count() == 0, server.describe()
    assert_healthy(tab, server)


def test_the_pipeline_page_lists_the_processes_with_their_own_counters(tab: Tab, server: Server) -> None:
    open_app(tab, server, "pipeline")
    rows = table(tab.page, server, "stage", "process")
    kinds = {r["stage"]: r["kind"] for r in rows}
    assert {kinds.get(name) for name in PROCESSES} == {"process"}, rows
    ml = next(r for r in rows if r["stage"] == "ml")
    assert ml["running"] == "true", rows
    assert_healthy(tab, server)


def test_the_stage_processes_write_their_own_status_rows(server: Server) -> None:
    from storage import status
    from storage.db import Database

    db = Database(Path(server.data_dir) / "desk.db")
    try:
        shown = {s.name: s for s in status.stages(db)}
        for name in PROCESSES:
            assert shown[name].kind == "process" and shown[name].running, shown.get(name)
            assert shown[name].details.get("child_pid"), shown[name]
        assert shown["ml"].processed > 0 and shown["ml"].details["skipped"]["no model"] > 0
    finally:
        db.close()
