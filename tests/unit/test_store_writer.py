"""The desk's store (``storage.db.Database``) runs each write on the calling thread while it holds
the writer's lock (``writer="caller"``), or on a writer thread of its own (``writer="thread"``, the
older way): either way writes of many threads take turns, each is one transaction that commits or
rolls back whole, and a closed store refuses writes with a clear error."""

from __future__ import annotations

import threading

import pytest
import sqlite_utils

from storage.db import Database

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("writer", ["caller", "thread"])
def test_writes_of_many_threads_take_turns_and_a_failed_one_leaves_nothing(tmp_path, writer) -> None:
    db = Database(tmp_path / "desk.db", writer=writer)
    try:
        db.write(lambda d: d.conn.execute("CREATE TABLE n (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)"))
        db.write(lambda d: d.conn.execute("INSERT INTO n VALUES (0, 0)"))
        ran_on: set[int] = set()

        def bump(d: sqlite_utils.Database) -> None:  # read, then write: wrong if two ran at once
            ran_on.add(threading.get_ident())
            (v,) = d.conn.execute("SELECT v FROM n WHERE k = 0").fetchone()
            d.conn.execute("UPDATE n SET v = ? WHERE k = 0", (v + 1,))

        callers: set[int] = set()

        def work() -> None:
            callers.add(threading.get_ident())
            for _ in range(50):
                db.write(bump)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert db.query("SELECT v FROM n")[0]["v"] == 200
        # caller: each write ran on the thread that asked for it; thread: all on the store's own
        assert (ran_on == callers) is (writer == "caller")

        def half(d: sqlite_utils.Database) -> None:
            d.conn.execute("UPDATE n SET v = -1 WHERE k = 0")
            raise ValueError("refused halfway")

        with pytest.raises(ValueError, match="refused halfway"):
            db.write(half)
        assert db.query("SELECT v FROM n")[0]["v"] == 200  # rolled back
        db.write(bump)  # and the writer goes on
        assert db.query("SELECT v FROM n")[0]["v"] == 201
    finally:
        db.close()


def test_a_write_waits_its_turn_and_a_closed_store_refuses_writes(tmp_path) -> None:
    db = Database(tmp_path / "desk.db")
    db.write(lambda d: d.conn.execute("CREATE TABLE n (v INTEGER)"))
    inside, release = threading.Event(), threading.Event()

    def slow(d: sqlite_utils.Database) -> None:
        d.conn.execute("INSERT INTO n VALUES (1)")
        inside.set()
        assert release.wait(30)

    t = threading.Thread(target=db.write, args=(slow,))
    t.start()
    assert inside.wait(30)
    with pytest.raises(TimeoutError, match="nothing was written"):
        db.write(lambda d: d.conn.execute("INSERT INTO n VALUES (2)"), timeout=0.2)
    release.set()
    t.join(30)
    assert [r["v"] for r in db.query("SELECT v FROM n")] == [1]  # the one that timed out never ran
    db.close()
    with pytest.raises(RuntimeError, match="is closed"):
        db.write(lambda d: d.conn.execute("INSERT INTO n VALUES (3)"))
