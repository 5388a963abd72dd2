"""A real PostgreSQL server (Debian's ``postgresql``, installed by ``scripts/setup-postgres.sh``)
started by the tests and benchmarks in a temporary cluster: ``initdb`` then ``pg_ctl start``,
listening on 127.0.0.1 only, on a free port, trust authentication (loopback only), its socket and
files in a temporary folder that ``stop`` deletes.

initdb refuses to run as root: when this process is root, the server runs as the system user
``desk-pg`` (created by scripts/setup-postgres.sh), which owns the folder. ``durable=False`` (the
tests) turns fsync off; the benchmarks keep PostgreSQL's defaults (fsync on, synchronous commit).
``create_database(name, template=...)`` copies a database, which is how each test gets a fresh
migrated store in a few milliseconds.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

RUN_AS = "desk-pg"


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb, pg_ctl and postgres."""
    found = sorted(
        (Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d, "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL's initdb is missing: run scripts/setup-postgres.sh (installs Debian's postgresql)"
        )
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``postgres`` on 127.0.0.1:``port`` with superuser ``desk`` (no password) and database ``desk``."""

    def __init__(self, port: int | None = None, *, durable: bool = False) -> None:
        self.bin = postgres_bin()
        self.port = port or free_port()
        self.durable = durable
        self.folder = Path(tempfile.mkdtemp(prefix="desk-pg-"))
        self.data = self.folder / "data"
        self._user: str | None = None
        if os.getuid() == 0:
            try:
                entry = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise RuntimeError(
                    f"running as root and the user {RUN_AS!r} is missing: run scripts/setup-postgres.sh"
                ) from None
            self._user = RUN_AS
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.started = False

    def url(self, dbname: str = "desk") -> str:
        return f"postgresql://desk@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "desk", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"
            )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options
        )
        self.started = True
        self.create_database("desk")

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` when given); return its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")
            finally:
                self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
