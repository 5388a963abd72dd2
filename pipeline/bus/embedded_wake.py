"""Wake-ups across processes for a shared embedded bus: a reader learns of another process's commit
at once, without watching the file.

Each bus instance opened ``shared`` binds one Unix datagram socket in Linux's abstract namespace (no
file on disk, so no stale socket files and no 108-byte path limit) and lists its address in the
log's ``wakers`` table (``pipeline.bus.embedded_log.SCHEMA``). After every commit, the instance's
writer thread sends one byte to every other listed address. A listener thread per instance turns
a datagram into the same wake-up the instance's own writer gives its consumers (the bus's commit
counter and condition).

* A datagram that cannot be sent because the receiver's buffer is full is dropped: that receiver
  already has a wake-up pending, and one is all it needs.
* An address nobody listens on any more (its process died) is refused by the kernel; it is
  forgotten and its row deleted.
* The list of addresses is re-read at most once every ``REFRESH_S``; until a new process is on it,
  its consumers are woken by their own fallback check of the file's data version (every
  ``poll_interval_s``), as they are if datagrams ever go missing.

Cost: one ``sendto`` per other process per commit (a few microseconds each); an idle listener is a
thread blocked in ``recv`` and uses no CPU. Abstract sockets are Linux's: elsewhere ``available()``
is False and a shared bus falls back to watching the data version every 10 ms, as before.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

REFRESH_S = 1.0

_STOP = b"\x00"
_WAKE = b"\x01"
_numbers = itertools.count(1)


def available() -> bool:
    """True where abstract Unix sockets exist (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")


def address_for(path: Path) -> bytes:
    """A fresh abstract address for one bus instance on ``path`` (unique per process and instance)."""
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return f"\0trading-desk-bus/{digest}/{os.getpid()}/{next(_numbers)}".encode()


class WakeLine:
    """One bus instance's end of the line: a listener for others' commits and a sender for its own.

    ``on_wake`` runs on the listener thread for every batch of datagrams received. ``notify_others``
    runs on the instance's writer thread after each commit, with the writer's connection.
    """

    def __init__(self, on_wake: Callable[[], None], address: bytes) -> None:
        self.address = address
        self._on_wake = on_wake
        self._peers: list[bytes] = []
        self._refreshed = 0.0
        self._gone: list[bytes] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._listener.bind(address)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._thread = threading.Thread(target=self._listen, name="bus-wake", daemon=True)
        self._thread.start()

    def register(self, conn: sqlite3.Connection) -> None:
        """List this instance's address (run on the writer thread, inside its transaction)."""
        conn.execute("INSERT OR REPLACE INTO wakers VALUES (?, ?)", (self.address, os.getpid()))

    def unregister(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM wakers WHERE address=?", (self.address,))

    def notify_others(self, conn: sqlite3.Connection) -> None:
        """Send one byte to every other listed address; forget the ones nobody listens on."""
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_S:
            self._refreshed = now
            if self._gone:
                self._forget(conn)
            rows = conn.execute("SELECT address FROM wakers").fetchall()
            self._peers = [bytes(a) for (a,) in rows if bytes(a) != self.address]
        for peer in self._peers:
            try:
                self._sender.sendto(_WAKE, peer)
            except BlockingIOError:
                pass  # its buffer is full: it has wake-ups pending already
            except (ConnectionRefusedError, FileNotFoundError):
                self._gone.append(peer)
        if self._gone:
            self._peers = [p for p in self._peers if p not in self._gone]

    def _forget(self, conn: sqlite3.Connection) -> None:
        try:
            conn.executemany("DELETE FROM wakers WHERE address=?", [(a,) for a in self._gone])
        except sqlite3.OperationalError as exc:  # another process holds the write lock: next time
            log.debug("could not forget dead bus listeners yet: %s", exc)
            return
        self._gone = []

    def _listen(self) -> None:
        sock = self._listener
        while True:
            data = sock.recv(16)
            sock.setblocking(False)
            try:  # one wake-up for everything queued
                while data != _STOP:
                    data = sock.recv(16)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if data == _STOP:
                return
            self._on_wake()

    def close(self) -> None:
        self._sender.setblocking(True)
        self._sender.sendto(_STOP, self.address)
        self._thread.join(timeout=5)
        self._listener.close()
        self._sender.close()
