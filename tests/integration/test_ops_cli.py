"""``python -m pipeline browse | redrive | offsets`` on the embedded bus in a DATA_DIR of the test's own:
pages and their cursors, one-line answers for a missing topic or partition and for a group with
members, dry runs that change nothing, and a redrive that publishes each message once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.bus.base import Record
from pipeline.bus.embedded import EmbeddedBus
from pipeline.dead_letters import publish_dead_letter
from pipeline.topics import CATALOG, MARKET_DATA, dlq_name
from tests.integration.test_runner import tick

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedBus]:
    """The desk's embedded bus under a DATA_DIR of this test's own, with 12 ticks on partition 0 of
    crypto.market_data (prices 1-12) and 5 dead letters of it."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    bus = EmbeddedBus(tmp_path / "bus.db", session_timeout_ms=1500)
    bus.create_topics(CATALOG.values())
    producer = bus.producer()
    for i in range(12):
        producer.produce(MARKET_DATA, tick("BTCUSDT", price=i + 1.0), key=b"BTCUSDT")
    for i in range(5):
        publish_dead_letter(
            producer,
            "volume=-1 breaks rule: volume >= 0",
            topic=MARKET_DATA,
            value=tick("ETHUSDT", price=100.0 + i),
            stage="market-store",
            key=b"ETHUSDT",
            partition=1,
            offset=i,
        )
    assert producer.flush() == 0
    yield bus
    bus.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def partition_of_btc(bus: EmbeddedBus) -> int:
    (state,) = bus.describe_topics([MARKET_DATA])
    return next(p.partition for p in state.partitions if p.end_offset)


def test_browse_pages_a_topic_both_ways_and_answers_a_missing_one_in_one_line(
    desk: EmbeddedBus, capsys: pytest.CaptureFixture[str]
) -> None:
    p = partition_of_btc(desk)
    code, out, _ = run(
        capsys, "browse", MARKET_DATA, "--partition", str(p), "--from-offset", "2", "--limit", "3", "--json"
    )
    page = json.loads(out)
    assert code == 0 and [r["offset"] for r in page["records"]] == [2, 3, 4]
    assert [r["value"]["price"] for r in page["records"]] == [3.0, 4.0, 5.0] and page["records"][0]["key"] == "BTCUSDT"
    assert page["after"] == {str(p): 5}

    code, out, _ = run(capsys, "browse", MARKET_DATA, "--partition", str(p), "--after", f"{p}:5", "--limit", "3")
    assert code == 0 and out.count("# ") == 3 and f"# {p}:5 " in out and '"price": 6.0' in out
    assert f"-- next page: --after {p}:8" in out and f"-- previous page: --before {p}:5" in out
    code, out, _ = run(capsys, "browse", MARKET_DATA, "--before", f"{p}:5", "--limit", "2", "--json")
    assert [r["offset"] for r in json.loads(out)["records"]] == [3, 4]

    code, out, _ = run(
        capsys, "browse", MARKET_DATA, "--grep", "btcusdt", "--path", "$.price", "--equals", "12", "--json"
    )
    assert [r["value"]["price"] for r in json.loads(out)["records"]] == [12.0], "newest first page, filtered"
    code, out, _ = run(capsys, "browse", MARKET_DATA, "--from-time=-1h", "--limit", "100", "--json")
    assert len(json.loads(out)["records"]) == 12

    code, out, err = run(capsys, "browse", "no-such-topic")
    assert code == 2 and out == "" and err.strip().count("\n") == 0
    assert err.startswith("error: there is no topic 'no-such-topic' on the embedded bus")
    code, _, err = run(capsys, "browse", MARKET_DATA, "--partition", "9")
    assert code == 2 and err.strip() == "error: topic 'crypto.market_data' has partitions 0-2; there is no partition 9"
    code, _, err = run(capsys, "browse", MARKET_DATA, "--path", "$[")
    assert code == 2 and err.startswith("error: the JSON path '$[' does not parse")


def test_redrive_publishes_each_dead_letter_once_and_a_dry_run_nothing(
    desk: EmbeddedBus, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq = dlq_name(MARKET_DATA)

    def redriven() -> int:
        return sum(
            1 for p in range(3) for r in desk.read(MARKET_DATA, p, 0, 1000) if r.header("redriven_from") is not None
        )

    code, out, _ = run(capsys, "redrive", dlq, "--dry-run")
    assert code == 0 and out.startswith(f"{dlq}: 5 selected, would publish 5, skipped 0, failed 0") and redriven() == 0
    code, out, _ = run(capsys, "redrive", dlq, "--filter", "stage=market-store", "--filter", "reason~VOLUME", "--json")
    report = json.loads(out)
    assert code == 0 and (report["published"], report["skipped"], report["failed"]) == (5, 0, 0)
    assert redriven() == 5
    code, out, _ = run(capsys, "redrive", dlq)
    assert code == 0 and "published 0, skipped 5" in out and "5 skipped: already published" in out
    assert redriven() == 5, "a second redrive published nothing"
    code, _, err = run(capsys, "redrive", MARKET_DATA)
    assert code == 2 and "is not a dead-letter topic" in err
    code, _, err = run(capsys, "redrive", dlq, "--filter", "colour=red")
    assert code == 2 and err.startswith("error: --filter 'colour=red': write FIELD=VALUE or FIELD~TEXT")


def test_offsets_resets_an_empty_group_and_refuses_one_with_members_in_one_line(
    desk: EmbeddedBus, capsys: pytest.CaptureFixture[str]
) -> None:
    group = "market-store"
    consumer = desk.consumer(group, [MARKET_DATA])
    got: list[Record] = []
    deadline = time.monotonic() + 30
    while len(got) < 12 and time.monotonic() < deadline:
        got.extend(consumer.poll(100, 0.2))
    consumer.commit(got)

    code, _, err = run(capsys, "offsets", group, "--reset-to", "earliest")
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("error: consumer group 'market-store' has 1 active member: its offsets are reset only")
    consumer.close()

    code, out, _ = run(capsys, "offsets", group)
    assert code == 0 and out.startswith("market-store: 0 member(s), lag 0")
    code, out, _ = run(capsys, "offsets", group, "--reset-to", "earliest", "--dry-run")
    assert code == 0 and "would reset to earliest" in out and "12 -> 0  lag 12" in out and "nothing changed" in out
    code, out, _ = run(capsys, "offsets", group)
    assert "lag 0" in out.splitlines()[0], "a dry run changed the group"
    code, out, _ = run(capsys, "offsets", group, "--reset-to", "4", "--topic", MARKET_DATA)
    assert code == 0 and "reset to 4" in out
    code, out, _ = run(capsys, "offsets", group)
    assert "lag 8" in out.splitlines()[0]
    code, _, err = run(capsys, "offsets", group, "--reset-to", "soon")
    assert code == 2 and err.startswith("error: --reset-to 'soon'")
