"""Shared fixtures: a real Kafka broker for the session, and the ``bus`` fixture that runs a test
once on the embedded SQLite log and once on Kafka.

The ``kafka`` marker is put on the Kafka half so ``-m "not kafka"`` runs without a broker. Nothing
here ever skips: a broker that cannot start fails the Kafka tests with the script's stderr.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so ``pipeline`` imports however pytest is started
    sys.path.insert(0, str(ROOT))

KAFKA_SCRIPT = ROOT / "scripts" / "kafka.sh"

log = logging.getLogger(__name__)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kafka: needs a Kafka broker (started by scripts/kafka.sh unless "
                   "KAFKA_BOOTSTRAP_SERVERS is set); deselect with -m 'not kafka'")


# -- the broker --------------------------------------------------------------------------------

def _kafka_script(command: str, *, check: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAFKA_SCRIPT), command], cwd=ROOT, capture_output=True, text=True,
                          check=check, timeout=600)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a running broker: ``$KAFKA_BOOTSTRAP_SERVERS``, one already started
    by ``scripts/kafka.sh``, or one this fixture starts (and then stops at the end of the session)."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    status = _kafka_script("status", check=False)
    if status.returncode == 0 and status.stdout.strip():
        yield status.stdout.strip().splitlines()[-1]
        return
    try:
        started = _kafka_script("start", check=True)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"scripts/kafka.sh start failed (exit {exc.returncode}):\n{exc.stderr}",
                    pytrace=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/kafka.sh start did not finish: {exc}", pytrace=False)
    lines = started.stdout.strip().splitlines()
    if not lines:
        pytest.fail(f"scripts/kafka.sh start printed no address; stderr:\n{started.stderr}",
                    pytrace=False)
    try:
        yield lines[-1].strip()
    finally:
        _kafka_script("stop", check=False)


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
        client.close()  # type: ignore[attr-defined]
    except RuntimeError:  # a confluent-kafka client closed already by the test
        pass
    except Exception as exc:  # teardown must not hide the test's own failure
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
        try:
            fut.result()
        except Exception:  # unknown group/topic (never created), group not empty yet: fine
            pass


@pytest.fixture(params=[
    pytest.param("embedded", id="embedded"),
    pytest.param("kafka", id="kafka", marks=pytest.mark.kafka),
])
def bus(request: pytest.FixtureRequest, tmp_path: Path, names: _Names):
    """The bus under test: the embedded SQLite log, then a real Kafka broker."""
    if request.param == "embedded":
        from pipeline.bus.embedded import EmbeddedBus

        the_bus = EmbeddedBus(tmp_path / "bus.db", session_timeout_ms=1500,
                              maintenance_interval_s=0.2, poll_interval_s=0.02)
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
