"""The Pipeline page's operating tabs in a real browser: edit a dead letter and redrive it (refused
while it breaks the contract, published once however often it is sent), find it with the message
browser (which joins no group), and reset an empty group's offsets (refused for a group with members).

The test writes dead letters and a consumer group into the app's embedded bus from this process,
as a second writer of the same SQLite file (as ``pipeline run`` in another terminal would).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pipeline.bus.base import Record
from pipeline.bus.embedded import EmbeddedBus
from pipeline.dead_letters import publish_dead_letter
from pipeline.topics import CATALOG, MARKET_DATA, dlq_name
from tests.e2e.conftest import Server, Tab
from tests.e2e.test_browser import assert_healthy, open_app, table, wait_for
from tests.integration.test_runner import tick

pytestmark = pytest.mark.timeout(180)

DLQ = dlq_name(MARKET_DATA)
PRICE = 4242.5  # the edited price, found again by the browser


@pytest.fixture
def desk_bus(server: Server) -> Iterator[EmbeddedBus]:
    path = server.data_dir / "bus.db"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    bus = EmbeddedBus(path, session_timeout_ms=1500)
    bus.create_topics(CATALOG.values())  # idempotent: the app creates them too, on its first page
    yield bus
    bus.close()


def visible(page: Page, testid: str, label: str) -> Locator:
    return page.locator(f"[data-testid='{testid}']:visible").filter(has_text=label).first


def choose(page: Page, label: str, option: str) -> None:
    box = visible(page, "stSelectbox", label).locator("input")
    box.click()
    box.fill(option)  # filters the options (sorted, so the exact name comes first) and focuses the first
    page.locator("[role='option'][data-focused='true']").filter(has_text=option).first.wait_for()
    box.press("Enter")
    page.wait_for_function(
        "([el, want]) => el.value === want && el.getAttribute('aria-expanded') !== 'true'",
        arg=[box.element_handle(), option],
    )


def message(page: Page, server: Server, kind: str, text: str) -> str:
    """The first st.success/st.error/... alert containing ``text``."""
    selector = f"[data-testid='stAlertContent{kind}']:visible"
    try:
        page.locator(selector).filter(has_text=text).first.wait_for(timeout=30_000)
    except PlaywrightTimeout:
        shown = page.locator("[data-testid^='stAlertContent']").all_inner_texts()
        pytest.fail(f"no {kind} alert with {text!r} (shown: {shown}); {server.describe()}")
    return page.locator(selector).filter(has_text=text).first.inner_text()


def test_a_dead_letter_is_edited_refused_redriven_once_and_browsed(
    tab: Tab, server: Server, desk_bus: EmbeddedBus
) -> None:
    producer = desk_bus.producer()
    for i in range(3):
        publish_dead_letter(
            producer,
            "volume=-1 breaks rule: volume >= 0",
            topic=MARKET_DATA,
            value=tick("ETHUSDT", price=100.0 + i),
            stage="market-store",
            key=b"ETHUSDT",
            partition=1,
            offset=10_000 + i,
        )
    assert producer.flush() == 0

    page = open_app(tab, server, "pipeline")
    wait_for(page, server, "h1:has-text('Pipeline')", "Pipeline title")
    # The metrics tab (first): the health check's round trip went through the bus, and the stages' numbers.
    wait_for(page, server, "[data-testid='stMetricValue']:has-text(' ms')", "health-check round trip")
    deadline = time.monotonic() + 30  # the tab redraws every 5 s; the store has work from the simulator
    while True:
        (store,) = [r for r in table(page, server, "worker", "market-store") if r["worker"] == "market-store"]
        if int(store["processed"]) > 0 or time.monotonic() > deadline:
            break
        page.wait_for_timeout(1000)
    assert int(store["processed"]) > 0 and store["retried"] == "0" and int(store["batches"]) > 0, store
    page.get_by_role("tab", name="Dead letters").click()
    choose(page, "Dead-letter topic", DLQ)
    rows = table(page, server, "at", "market-store")
    assert len(rows) == 3 and {r["source"] for r in rows} == {f"{MARKET_DATA}[1]@{10_000 + i}" for i in range(3)}
    assert all(r["reason"].startswith("volume=-1") for r in rows)

    edit = visible(page, "stTextArea", "Message").locator("textarea")
    bad = orjson.loads(edit.input_value())
    bad["price"] = -1.0
    edit.fill(orjson.dumps(bad).decode())
    page.get_by_role("button", name="Redrive this message").click()
    refused = message(page, server, "Error", "Not published")
    assert "price=-1.0 breaks rule: price > 0" in refused, refused

    good = {**bad, "price": PRICE}
    edit.fill(orjson.dumps(good).decode())
    page.get_by_role("button", name="Redrive this message").click()
    message(page, server, "Success", "published 1 · skipped 0 · failed 0")
    edit.fill(orjson.dumps({**good, "price": PRICE + 1}).decode())
    page.get_by_role("button", name="Redrive this message").click()
    message(page, server, "Success", "published 0 · skipped 1 · failed 0")

    redriven: list[Record] = []
    (state,) = desk_bus.describe_topics([MARKET_DATA])
    for p in state.partitions:
        redriven += [
            r for r in desk_bus.read(MARKET_DATA, p.partition, 0, 100_000) if dict(r.headers).get("redriven_from")
        ]
    assert [orjson.loads(r.value or b"")["price"] for r in redriven] == [PRICE], "published once, as edited"

    groups_before = {g.group_id for g in desk_bus.describe_groups()} - {"market-store"}  # the app's stage
    page.get_by_role("tab", name="Browse").click()
    choose(page, "Topic", MARKET_DATA)
    choose(page, "Start", "beginning")
    visible(page, "stTextInput", "Value contains").locator("input").fill(str(PRICE))
    page.get_by_role("button", name="Open page").click()
    found = table(page, server, "partition", "ETHUSDT")
    assert len(found) == 1 and str(PRICE) in found[0]["value"] and "redriven_from" in found[0]["headers"]
    groups_after = {g.group_id for g in desk_bus.describe_groups()} - {"market-store"}
    assert groups_after == groups_before, "the browser joined no group"
    assert_healthy(tab, server)


def test_an_empty_groups_offsets_are_reset_and_a_live_groups_refused(
    tab: Tab, server: Server, desk_bus: EmbeddedBus
) -> None:
    group = "replay-readers"
    consumer = desk_bus.consumer(group, [MARKET_DATA])
    got: list[Record] = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        got.extend(consumer.poll(500, 0.2))
    consumer.commit(got)
    consumer.close()
    (mine,) = [g for g in desk_bus.describe_groups() if g.group_id == group]
    assert mine.members == 0 and any(p.committed for p in mine.partitions)

    page = open_app(tab, server, "pipeline")
    wait_for(page, server, "h1:has-text('Pipeline')", "Pipeline title")
    page.get_by_role("tab", name="Consumer groups").click()
    choose(page, "Group", group)
    visible(page, "stCheckbox", "Dry run").locator("label").click()
    page.get_by_role("button", name="Reset offsets").click()
    done = message(page, server, "Success", f"Reset {group} to earliest")
    (after,) = [g for g in desk_bus.describe_groups() if g.group_id == group]
    (state,) = desk_bus.describe_topics([MARKET_DATA])
    starts = {p.partition: p.start_offset for p in state.partitions}
    assert {p.partition: p.committed for p in after.partitions} == starts, done

    choose(page, "Group", "market-store")
    message(page, server, "Info", "active member")
    visible(page, "stCheckbox", "Dry run").locator("label").click()
    page.get_by_role("button", name="Reset offsets").click()
    refused = message(page, server, "Error", "only while it has none")
    assert "market-store" in refused
    assert_healthy(tab, server)
