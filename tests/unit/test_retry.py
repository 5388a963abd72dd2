"""The delay topics' names and headers, and the order in which held retries are released."""

from __future__ import annotations

from pipeline.bus.base import Record
from pipeline.retry import HeldRetries, origin, retry_count, retry_headers, retry_info
from pipeline.topics import CATALOG, retry_name, retry_names, retry_source


def test_every_topic_has_three_delay_topics_of_1_2_and_4_seconds_in_the_catalog() -> None:
    assert retry_names("raw-trades") == ["raw-trades_retry_1s", "raw-trades_retry_2s", "raw-trades_retry_4s"]
    assert retry_source("crypto.market_data_retry_4s") == "crypto.market_data"
    assert retry_source("crypto.market_data_retry_3s") is None and retry_source("raw-trades_dlq") is None
    sources = [s for s in CATALOG.values() if not s.is_dead_letter and not s.is_retry and s.name != "health-check"]
    for spec in sources:
        assert all(n in CATALOG and CATALOG[n].cleanup == "delete" for n in retry_names(spec.name)), spec.name


def record(topic: str, offset: int, headers: list[tuple[str, bytes]]) -> Record:
    return Record(topic, 0, offset, b"k", b"{}", 0, tuple(headers))


def test_retry_headers_carry_the_count_the_error_the_stage_the_due_time_and_the_source() -> None:
    source = Record("raw-trades", 2, 41, b"k", b"{}", 5, (("feed", b"replay"),))
    headers = retry_headers(source, count=1, error="TransientError: busy", stage="normalizer", due_ms=1000)
    delayed = Record(retry_name("raw-trades", 0), 0, 7, b"k", b"{}", 6, tuple(headers))
    info = retry_info(delayed)
    assert info is not None and (info.count, info.stage, info.due_ms, info.last_error) == (
        1,
        "normalizer",
        1000,
        "TransientError: busy",
    )
    back = origin(delayed, info)
    assert (back.topic, back.partition, back.offset) == ("raw-trades", 2, 41)
    assert back.header("feed") == b"replay" and retry_count(back) == 1
    again = retry_headers(back, count=2, error="e", stage="normalizer", due_ms=3000)
    assert [k for k, _ in again].count("retry_count") == 1, "the headers of the last retry are replaced"
    assert retry_info(record("raw-trades", 0, headers)) is None, "only a delay topic's record is a retry"


def test_held_retries_are_released_in_order_once_due_and_other_stages_at_once() -> None:
    topic = retry_name("t", 0)

    def retry(offset: int, due: int, stage: str = "me") -> Record:
        source = Record("t", 0, offset, b"k", b"{}", 0)
        return record(topic, offset, retry_headers(source, count=1, error="e", stage=stage, due_ms=due))

    held = HeldRetries("me")
    held.add([retry(0, 100), retry(1, 50, stage="other"), retry(2, 150)])
    assert held.next_due_ms() == 100 and len(held) == 3
    assert held.release(99) == [], "the other stage's record waits behind the first, as on the partition"
    assert [r.offset for r in held.release(100)] == [0, 1]
    assert held.next_due_ms() == 150
    held.drop([(topic, 0)])
    assert len(held) == 0 and held.next_due_ms() is None and held.release(10**12) == []
