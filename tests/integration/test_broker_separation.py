"""The tests' Kafka broker and the desk's never share state, so nothing a test (or a benchmark)
makes is ever seen by the desk that ``make kafka-up`` and ``make run`` start afterwards.

Cheaper than cloning the repository and running ``make test`` then the desk, and it checks the
same things: ``scripts/kafka.sh`` gives the two brokers different ports and log folders whatever
the environment; the broker these tests use is the tests' own; two brokers started from one
checkout, the way ``make test`` and ``make kafka-up`` start them, do not share a topic, a message
or a group; the tests never follow ``KAFKA_BOOTSTRAP_SERVERS``; and a benchmark on a broker leaves
the catalog's topics as they were and takes its own topics and groups away.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pipeline.topics import CATALOG

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"
# What decides where either broker goes; everything else in the environment is left alone.
KAFKA_VARS = ("KAFKA_HOME_DIR", "KAFKA_PORT", "KAFKA_TEST_PORT")


def where(env: dict[str, str], *, test: bool) -> dict[str, str]:
    """``scripts/kafka.sh [--test] where`` as key -> value."""
    done = subprocess.run(
        [str(SCRIPT), *(["--test"] if test else []), "where"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def shell(**kafka: str) -> dict[str, str]:
    """This environment with only the given Kafka variables set (as a trader's shell might have)."""
    env = {k: v for k, v in os.environ.items() if k not in KAFKA_VARS}
    env.update(kafka)
    return env


def ports(w: dict[str, str]) -> set[int]:
    return {int(w["port"]), int(w["controller_port"])}


@pytest.mark.parametrize(
    "kafka",
    [{}, {"KAFKA_PORT": "39500"}, {"KAFKA_TEST_PORT": "39700"}, {"KAFKA_PORT": "39500", "KAFKA_TEST_PORT": "39300"}],
    ids=["defaults", "KAFKA_PORT", "KAFKA_TEST_PORT", "both"],
)
def test_the_two_brokers_never_share_a_port_or_a_log_folder(kafka: dict[str, str]) -> None:
    env = shell(**kafka)
    desk, tests = where(env, test=False), where(env, test=True)
    assert not ports(desk) & ports(tests), (desk, tests)
    assert desk["log_dirs"] == str(ROOT / ".kafka" / "data")  # where make kafka-up keeps the desk's log
    assert Path(tests["log_dirs"]).is_relative_to(ROOT / ".kafka" / "test")
    for a, b in ((desk, tests), (tests, desk)):
        assert not Path(a["log_dirs"]).is_relative_to(b["log_dirs"]), (desk, tests)


def test_a_test_port_on_the_desks_ports_is_refused() -> None:
    done = subprocess.run(
        [str(SCRIPT), "--test", "where"],
        env=shell(KAFKA_PORT="39500", KAFKA_TEST_PORT="39501"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "kafka.sh: KAFKA_TEST_PORT=39501 collides with the desk's broker on 39500 and 39501: pick another"
    )


def broker_log_dirs(bootstrap: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    return admin.describe_configs([resource], request_timeout=10)[resource].result()["log.dirs"].value


def test_the_broker_these_tests_use_is_not_the_desks(kafka_bootstrap: str) -> None:
    desk = where(shell(**{k: os.environ[k] for k in KAFKA_VARS if k in os.environ}), test=False)
    assert int(kafka_bootstrap.rsplit(":", 1)[1]) not in ports(desk)
    assert broker_log_dirs(kafka_bootstrap) != desk["log_dirs"]
    if not os.environ.get("KAFKA_TEST_BOOTSTRAP_SERVERS"):  # started (or found) by the fixture: the tests' own
        tests = where(dict(os.environ), test=True)
        assert kafka_bootstrap == f"127.0.0.1:{tests['port']}"
        assert broker_log_dirs(kafka_bootstrap) == tests["log_dirs"]


def test_the_tests_never_follow_the_desks_bootstrap_servers(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A trader's shell that exports KAFKA_BOOTSTRAP_SERVERS for the desk does not move the tests."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os\n\n\ndef test_probe(kafka_bootstrap):\n"
        "    print('BOOTSTRAP', kafka_bootstrap, 'ENV', repr(os.environ['KAFKA_BOOTSTRAP_SERVERS']),\n"
        "          'DATA_DIR', os.environ['DATA_DIR'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_TEST_BOOTSTRAP_SERVERS"}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATA_DIR": str(ROOT / "data")})
    if os.environ.get("KAFKA_TEST_BOOTSTRAP_SERVERS"):
        env["KAFKA_TEST_BOOTSTRAP_SERVERS"] = os.environ["KAFKA_TEST_BOOTSTRAP_SERVERS"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(tmp_path),
            str(probe),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if "BOOTSTRAP" in x).split()
    assert line[1] == kafka_bootstrap  # the tests' broker (already running: found, not started again)
    assert line[3] == "''"  # the desk's variable is emptied for every test
    assert not Path(line[5]).is_relative_to(ROOT), line  # DATA_DIR is a temporary folder, never data/


def _free_base_port() -> int:
    """A port P with P..P+3 free: the desk's broker and controller, then the tests' pair."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 3 > 65535:
            continue
        try:
            for p in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    pytest.fail("no four free ports in a row on 127.0.0.1")


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[dict[str, str]]:
    """One checkout's Kafka home in a temporary folder (the jars linked, not fetched again), and the
    environment both brokers start with; stops whatever the test started there."""
    home = tmp_path / "kafka"
    home.mkdir()
    (home / "libs").symlink_to(ROOT / ".kafka" / "libs")
    env = shell(KAFKA_HOME_DIR=str(home), KAFKA_PORT=str(_free_base_port()), KAFKA_HEAP="256m")
    try:
        yield env
    finally:
        for flag in (["--test"], []):
            subprocess.run(
                [str(SCRIPT), *flag, "stop"], env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
            )


def _start(env: dict[str, str], *, test: bool) -> str:
    done = subprocess.run(
        [str(SCRIPT), *(["--test"] if test else []), "start"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_what_a_test_makes_on_its_broker_is_not_on_the_desks_broker_of_the_same_checkout(
    checkout: dict[str, str],
) -> None:
    tests = _start(checkout, test=True)  # as make test starts it
    name = f"test-only.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": tests})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result()
    producer = Producer({"bootstrap.servers": tests})
    producer.produce(name, b"a test's message")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": tests, "group.id": name, "auto.offset.reset": "earliest"})
    consumer.subscribe([name])
    message = None
    for _ in range(60):
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            break
    assert message is not None and message.value() == b"a test's message"
    consumer.commit(message=message, asynchronous=False)
    consumer.close()

    desk = _start(checkout, test=False)  # as make kafka-up starts it, in the same checkout and shell
    assert desk != tests
    desk_admin = AdminClient({"bootstrap.servers": desk})
    assert name in admin.list_topics(timeout=10).topics
    assert not [t for t in desk_admin.list_topics(timeout=10).topics if not t.startswith("__")]
    assert name in {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid}
    assert not desk_admin.list_consumer_groups(request_timeout=10).result().valid
    assert broker_log_dirs(desk) == where(checkout, test=False)["log_dirs"] != broker_log_dirs(tests)


def test_a_benchmark_leaves_the_catalogs_topics_as_they_were_and_takes_its_own_away(kafka_bootstrap: str) -> None:
    from pipeline.bus.kafka import KafkaBus

    bus = KafkaBus(kafka_bootstrap)
    try:
        bus.create_topics(CATALOG.values())
        before = {t.name: t.end_offset for t in bus.describe_topics(CATALOG)}
        groups_before = {g.group_id for g in bus.describe_groups()}
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
        done = subprocess.run(
            [sys.executable, "-m", "bench.journal", "--trades", "300", "--backend", "kafka"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert '"trades": 300' in done.stdout  # it ran: every trade reached its journal
        after = {t.name: t.end_offset for t in bus.describe_topics(CATALOG)}
        assert after == before, "a benchmark wrote to the catalog's topics, which the desk reads"
        leftovers = [t.name for t in bus.describe_topics() if ".bench-" in t.name]
        assert leftovers == []
        assert {g.group_id for g in bus.describe_groups()} - groups_before == set()
    finally:
        bus.close()
