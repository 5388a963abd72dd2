"""Shared fixtures: the tests' own Kafka broker for the session, and the ``bus`` fixture that runs a
test once on the embedded SQLite log and once on Kafka.

The tests never touch the desk's state: their broker is ``scripts/kafka.sh --test`` (its log in
``.kafka/test``, its own port), never the desk's ``make kafka-up`` broker (``.kafka/data``) and never
``KAFKA_BOOTSTRAP_SERVERS`` (which names the desk's broker); ``KAFKA_TEST_BOOTSTRAP_SERVERS`` points
them at another broker of their own. For the whole session ``DATA_DIR`` is a temporary folder and
``KAFKA_BOOTSTRAP_SERVERS`` is empty, so a test that builds the app from the environment runs on the
embedded bus in that folder, whatever the shell or a ``.env`` says.

The ``kafka`` marker is put on the Kafka half so ``-m "not kafka"`` runs without a broker. Nothing
here ever skips: a broker that cannot start fails the Kafka tests with the script's stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so ``pipeline`` imports however pytest is started
    sys.path.insert(0, str(ROOT))

KAFKA_SCRIPT = ROOT / "scripts" / "kafka.sh"
TEST_BOOTSTRAP_ENV = "KAFKA_TEST_BOOTSTRAP_SERVERS"
_DATA_DIR = pytest.StashKey[str]()

log = logging.getLogger(__name__)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kafka: needs a Kafka broker (the tests' own, started by scripts/kafka.sh --test "
        f"unless {TEST_BOOTSTRAP_ENV} is set); deselect with -m 'not kafka'",
    )
    config.stash[_DATA_DIR] = os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="desk-tests-")
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = ""


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_DATA_DIR, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


# -- the broker --------------------------------------------------------------------------------


def kafka_script(
    command: str, *, check: bool, env: dict[str, str] | None = None, test: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/kafka.sh [--test] COMMAND``; ``test=False`` is the desk's broker (make kafka-up)."""
    args = [str(KAFKA_SCRIPT), *(["--test"] if test else []), command]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=check, timeout=600, env=env)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of the tests' broker: ``$KAFKA_TEST_BOOTSTRAP_SERVERS``, the one
    ``scripts/kafka.sh --test`` already runs, or one this fixture starts (and stops at the end)."""
    env = os.environ.get(TEST_BOOTSTRAP_ENV)
    if env:
        yield env
        return
    status = kafka_script("status", check=False)
    if status.returncode == 0 and status.stdout.strip():
        yield status.stdout.strip().splitlines()[-1]
        return
    try:
        started = kafka_script("start", check=True)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"scripts/kafka.sh --test start failed (exit {exc.returncode}):\n{exc.stderr}", pytrace=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/kafka.sh --test start did not finish: {exc}", pytrace=False)
    lines = started.stdout.strip().splitlines()
    if not lines:
        pytest.fail(f"scripts/kafka.sh --test start printed no address; stderr:\n{started.stderr}", pytrace=False)
    try:
        yield lines[-1].strip()
    finally:
        kafka_script("stop", check=False)


# -- unique names ------------------------------------------------------------------------------


class _Names:
    """Unique topic and group names for one test; remembers them so Kafka can be tidied after."""

    def __init__(self, test_name: str) -> None:
        base = "".join(ch if ch.isalnum() else "-" for ch in test_name.split("[")[0])
        self.prefix = f"contract.{base[-60:]}"
        self.topics: list[str] = []
        self.groups: list[str] = []

    def topic(self, label: str = "t") -> str:
        name = f"{self.prefix}.{label}.{uuid.uuid4().hex[:10]}"
        self.topics.append(name)
        return name

    def group(self, label: str = "g") -> str:
        name = f"{self.prefix}.{label}.{uuid.uuid4().hex[:10]}"
        self.groups.append(name)
        return name


@pytest.fixture
def names(request: pytest.FixtureRequest) -> _Names:
    return _Names(request.node.name)


@pytest.fixture
def topic_name(names: _Names) -> Callable[..., str]:
    """Factory: ``topic_name("orders")`` gives a topic name no other test (or run) uses."""
    return names.topic


@pytest.fixture
def group_name(names: _Names) -> Callable[..., str]:
    """Factory: ``group_name("readers")`` gives a consumer-group id no other test (or run) uses."""
    return names.group


# -- the bus -----------------------------------------------------------------------------------


def _track(bus):
    """Make ``bus.producer()`` / ``bus.consumer()`` remember what they open, so teardown closes
    every client (before the bus) even when a test fails half-way."""
    opened: list[object] = []
    make_producer, make_consumer = bus.producer, bus.consumer

    def producer(*args, **kwargs):
        p = make_producer(*args, **kwargs)
        opened.append(p)
        return p

    def consumer(*args, **kwargs):
        c = make_consumer(*args, **kwargs)
        opened.append(c)
        return c

    bus.producer, bus.consumer = producer, consumer
    return opened


def _close_quietly(client: object) -> None:
    try:
        client.close()  # type: ignore[attr-defined]  # a producer or a consumer
    except RuntimeError:  # a confluent-kafka client closed already by the test
        pass
    except Exception as exc:  # noqa: BLE001 - teardown must not hide the test's own failure
        log.warning("closing %r failed: %s", client, exc)


def _tidy_kafka(bootstrap: str, names: _Names) -> None:
    """Delete this test's topics and groups so the shared broker does not fill up across runs."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = {}
    if names.groups:
        futures.update(admin.delete_consumer_groups(names.groups, request_timeout=10))
    if names.topics:
        futures.update(admin.delete_topics(names.topics, operation_timeout=10, request_timeout=10))
    for fut in futures.values():
        # An unknown group or topic (never created) or a group not empty yet is fine here.
        with contextlib.suppress(Exception):
            fut.result()


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("kafka", id="kafka", marks=pytest.mark.kafka),
    ]
)
def bus(request: pytest.FixtureRequest, tmp_path: Path, names: _Names):
    """The bus under test: the embedded SQLite log, then a real Kafka broker."""
    from pipeline.bus.base import Bus

    if request.param == "embedded":
        from pipeline.bus.embedded import EmbeddedBus

        the_bus: Bus = EmbeddedBus(
            tmp_path / "bus.db", session_timeout_ms=1500, maintenance_interval_s=0.2, poll_interval_s=0.02
        )
        bootstrap = None
    else:
        from pipeline.bus.kafka import KafkaBus

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        the_bus = KafkaBus(bootstrap, session_timeout_ms=6000)
    opened = _track(the_bus)
    try:
        yield the_bus
    finally:
        for client in reversed(opened):
            _close_quietly(client)
        the_bus.close()
        if bootstrap is not None:
            _tidy_kafka(bootstrap, names)


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server():
    """A real ``redis-server`` of the tests' own (Debian's package; scripts/setup-redis.sh), for the session."""
    from tests.fakes.redis_server import RedisServer

    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


# -- PostgreSQL (the desk's store when DATABASE_URL is set) -----------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server of the tests' own (Debian's package; scripts/setup-postgres.sh) in a
    temporary cluster on a free loopback port, for the session, with ``desk_template``: a database
    with every migration applied, which each test's database copies."""
    from storage.postgres import PostgresDatabase
    from tests.fakes.postgres_server import PostgresServer

    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        PostgresDatabase(server.create_database("desk_template")).close()
        yield server


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a fresh migrated PostgreSQL database of this test's own (dropped after it)."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name, template="desk_template")
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """The desk's store, once on SQLite (a file under tmp_path) and once on the tests' PostgreSQL."""
    if request.param == "sqlite":
        from storage.db import Database

        db = Database(tmp_path / "desk.db")
    else:
        from storage.postgres import PostgresDatabase

        db = PostgresDatabase(request.getfixturevalue("postgres_url"))  # type: ignore[assignment]
    try:
        yield db
    finally:
        db.close()
