"""Consumer-group lag over time: the ``lag-history`` worker samples every group's lag per partition
from the bus into ``lag_samples`` (both buses), the history fills as samples come and stays bounded
however long it runs (every sample of the last hour, one a minute of the last day), and the Pipeline
page's chart reads it (``views.pipeline_lag``). Clocks are injected: no test waits for real time."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.bus.base import Bus, Record
from pipeline.jobs.lag_history import LagRecorder
from pipeline.topics import TopicSpec
from storage import lag_history
from storage.db import Database
from storage.lag_history import LagSample
from tests.integration.test_runner import tick, wait_for
from views.pipeline_lag import lag_frame

T0 = 1_749_999_960.0  # on a minute


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_worker_stores_each_groups_lag_per_partition_on_both_buses(bus: Bus, tmp_path: Path) -> None:
    topic = f"test.lag.{uuid.uuid4().hex[:8]}"
    group = f"test-lag-{uuid.uuid4().hex[:6]}"
    bus.create_topics([TopicSpec(topic, 1, 3_600_000)])
    producer = bus.producer()
    for i in range(10):
        producer.produce(topic, tick(price=100.0 + i), key=b"BTCUSDT")
    assert producer.flush() == 0
    consumer = bus.consumer(group, [topic])
    got: list[Record] = []
    wait_for(lambda: len(got.__iadd__(consumer.poll(100, 0.2))) >= 10, timeout=60)
    consumer.commit(got[:4])
    db = Database(tmp_path / "desk.db")
    clock = Clock(T0)
    recorder = LagRecorder(db, bus, clock=clock)
    assert recorder.sample_once() >= 1
    consumer.commit(got)
    clock.now += 5
    recorder.sample_once()
    consumer.close()
    mine = lag_history.history(db, group, since=T0 - 60, now=clock.now)
    assert [(s.topic, s.partition, s.at, s.lag) for s in mine] == [(topic, 0, T0, 6), (topic, 0, T0 + 5, 0)]
    frame = lag_frame(db, group, 3600.0, clock.now)  # what the Pipeline page charts
    assert list(frame["lag"]) == [6, 0] and set(frame["partition"]) == {f"{topic}[0]"}
    db.close()


def test_the_history_fills_and_stays_bounded_over_a_day_and_more(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    step, hours = 5.0, 26
    for minute in range(hours * 60):  # a sample every 5 s, pruned once a minute as the worker does
        start = T0 + minute * 60
        samples = [
            LagSample("store", "ticks", p, start + k * step, minute * 10 + k + p)
            for k in range(int(60 / step))
            for p in (0, 1)
        ]

        def write(w, samples=samples, start=start) -> None:
            lag_history.record(w.conn, samples)
            lag_history.prune(w.conn, start)

        db.write(write)
        if minute == 29:  # half an hour in: every sample is there, nothing pruned yet
            filled = lag_history.history(db, "store", since=0, now=start + 60 - step)
            assert len(filled) == 2 * 30 * 12 and filled[-1].at == start + 60 - step
    now = T0 + hours * 3600 - step
    per_partition_bound = 3600 / step + 12 + 86_400 / 60 + 1  # one hour fine, a day coarse, a minute's slack
    assert lag_history.count(db) <= 2 * per_partition_bound
    day = lag_history.history(db, "store", since=now - 86_400, now=now)
    fine = [s for s in day if s.at >= now - 3600]
    coarse = [s for s in day if s.at < now - 3600]
    assert len(fine) == 2 * (3600 / step + 1), "every sample of the last hour (both ends), both partitions"
    assert 2 * 23 * 60 <= len(coarse) <= 2 * (23 * 60 + 1), "one a minute before it"
    assert all(s.at % 60 == pytest.approx(0) for s in coarse)
    # a minute holds its last sample: at minute m, partition 0's last lag is m*10 + 11
    assert {s.lag - int((s.at - T0) // 60) * 10 for s in coarse if s.partition == 0} == {11}
    assert min(s.at for s in day) >= now - 86_400
    db.close()
