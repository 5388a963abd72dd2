"""The Pipeline page's client rates (views/pipeline_clients.py): differences of the stages' client
counters between two samples, none for a counter that fell (its client was made again)."""

from __future__ import annotations

from storage.status import StageStatus
from views.pipeline_clients import counters, rates


def row(name: str, sent: int, consumed: int, bytes_in: int) -> StageStatus:
    topics = {"t": {"out_messages": sent, "out_bytes": 10 * sent, "in_messages": consumed, "in_bytes": bytes_in}}
    client = {"source": "embedded", "sent": sent, "send_errors": 0, "consumed": consumed, "lag": 0, "topics": topics}
    return StageStatus(name, "stage", True, metrics={"client": client})


def test_rates_are_counter_differences_over_time_and_skip_a_reset() -> None:
    first = counters([row("a", 10, 100, 1000), StageStatus("simulator", "source", True)])
    assert set(first) == {"a"}, "a worker without client figures has no rates"
    assert rates({}, first, 100.0) == [], "no rate from one sample"
    second = counters([row("a", 20, 50, 6000)])  # consumed fell: its consumer was made again
    got = {p["series"]: p["rate"] for p in rates({"a": (100.0, first["a"])}, second, 105.0)}
    assert got == {
        "a sent/s": 2.0,
        "a send errors/s": 0.0,
        "a bytes out/s": 20.0,
        "a bytes in/s": 1000.0,
    }
