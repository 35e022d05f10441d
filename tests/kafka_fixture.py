"""Pytest plugin: a real Kafka broker for integration tests.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.kafka_fixture"]``.

Fixtures (all session-scoped unless said otherwise):

``kafka_bootstrap`` (str)
    ``bootstrap_servers`` of a real broker, chosen in this order:

    1. ``$KAFKA_BOOTSTRAP_SERVERS`` if set (a broker you run yourself);
    2. a testcontainers Kafka (``$WORKBRIDGE_KAFKA_IMAGE``, default ``confluentinc/cp-kafka:8.1.0``,
       i.e. Kafka 4.1) if a Docker engine answers within two seconds;
    3. :class:`adapters.localkafka.launcher.LocalKafka`: the real Apache Kafka 4.x jars run with
       the local ``java`` (fetched once with ``mvn``).

    ``WORKBRIDGE_TEST_KAFKA=local`` (or ``docker``) forces one of the last two.

``local_kafka`` (LocalKafka)
    The launcher's broker, for tests that stop and restart it (``stop_broker()`` /
    ``start_broker()``, async ``pause()`` / ``resume()``). Skipped when the broker comes from
    ``$KAFKA_BOOTSTRAP_SERVERS`` or testcontainers.

``restartable_kafka`` (LocalKafka, function-scoped)
    ``local_kafka``, restarted after the test if the test left the broker stopped, so that
    later tests find it up.

``kafka_backend`` (KafkaBackend)
    Which of the three is in use, with its bootstrap servers.

``secured_kafka`` (SecuredKafka)
    A second, separate launcher broker with secured listeners (see :data:`SECURED_LISTENERS`)
    and SCRAM/PLAIN user :data:`SECURED_USER`, plus its PLAINTEXT listener for test helpers.
    Always the launcher's (it generates the certificates), whatever ``kafka_backend`` is;
    started only by the tests that ask for it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapters.localkafka.launcher import KAFKA_VERSION, Listener, LocalKafka

if TYPE_CHECKING:
    from adapters.localkafka.certs import TlsFiles

__all__ = ["SECURED_LISTENERS", "SECURED_USER", "KafkaBackend", "SecuredKafka"]

_DEFAULT_IMAGE = "confluentinc/cp-kafka:8.1.0"  # Confluent Platform 8.1 = Apache Kafka 4.1


@dataclass(frozen=True)
class KafkaBackend:
    """The broker that this test session uses."""

    bootstrap_servers: str
    kind: str  # "env", "testcontainers" or "local"
    local: LocalKafka | None = None


def _reporter(config: pytest.Config) -> Callable[[str], None]:
    """Write progress lines to the terminal even while output is captured."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(message: str) -> None:
        suspended = (
            capture.global_and_fixture_disabled()
            if capture is not None
            else contextlib.nullcontext()
        )
        with suspended:
            if terminal is not None:
                terminal.write_line(f"[kafka] {message}")
            else:  # pragma: no cover - terminal plugin disabled
                print(f"[kafka] {message}", flush=True)

    return write


def _docker_answers(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` seconds."""
    if not os.environ.get("DOCKER_HOST") and not any(
        Path(sock).exists()
        for sock in ("/var/run/docker.sock", Path.home() / ".docker" / "run" / "docker.sock")
    ):
        return False
    try:
        docker = importlib.import_module("docker")  # optional, untyped
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _testcontainers_kafka(say: Callable[[str], None]) -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    image = os.environ.get("WORKBRIDGE_KAFKA_IMAGE", _DEFAULT_IMAGE)
    say(f"starting testcontainers Kafka ({image}) ...")
    container = (
        KafkaContainer(image)
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container:
        yield str(container.get_bootstrap_server())


@pytest.fixture(scope="session")
def kafka_backend(request: pytest.FixtureRequest) -> Iterator[KafkaBackend]:
    """The session's broker: env, testcontainers or the local launcher (in that order)."""
    say = _reporter(request.config)
    forced = os.environ.get("WORKBRIDGE_TEST_KAFKA", "").strip().lower()
    env_servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env_servers and forced in ("", "env"):
        say(f"using KAFKA_BOOTSTRAP_SERVERS={env_servers}")
        yield KafkaBackend(env_servers, "env")
        return
    if forced == "docker" or (forced == "" and _docker_answers()):
        with _testcontainers_kafka(say) as servers:
            say(f"testcontainers Kafka on {servers}")
            yield KafkaBackend(servers, "testcontainers")
        return
    say(f"no Docker engine: starting a local Apache Kafka {KAFKA_VERSION} broker (java)")
    kafka = LocalKafka(progress=say)
    kafka.start()
    try:
        yield KafkaBackend(kafka.bootstrap_servers, "local", kafka)
    finally:
        kafka.stop()


SECURED_USER = "alice"
"""The SASL user of ``secured_kafka`` (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN)."""

SECURED_LISTENERS = (
    Listener("SASL_SSL", "SASL_SSL"),
    Listener("SASL_PLAINTEXT", "SASL_PLAINTEXT"),
    Listener("MTLS", "SSL", client_auth="required"),
    # A certificate for another name, signed by the same CA: hostname checks must refuse it.
    Listener("WRONG_HOST", "SSL", cert_hosts=("wrong-host.example",)),
)
"""The listeners of ``secured_kafka``, besides PLAINTEXT (for reading and writing in tests)."""


@dataclass(frozen=True)
class SecuredKafka:
    """The secured broker: its listeners, TLS files and the user's (per-session) password."""

    kafka: LocalKafka
    password: str

    @property
    def plaintext(self) -> str:
        """Bootstrap servers of the PLAINTEXT listener (test helpers read and write there)."""
        return self.kafka.bootstrap_servers

    def bootstrap(self, listener: str) -> str:
        """Bootstrap servers of one of :data:`SECURED_LISTENERS`."""
        return self.kafka.listener_bootstrap(listener)

    @property
    def tls(self) -> TlsFiles:
        """CA, client certificate and encrypted client key made for this broker."""
        return self.kafka.tls


@pytest.fixture(scope="session")
def secured_kafka(request: pytest.FixtureRequest) -> Iterator[SecuredKafka]:
    """A separate local broker with TLS, mutual TLS, SASL/SCRAM and SASL/PLAIN listeners."""
    say = _reporter(request.config)
    # Fresh per session, so a leak check can look for it without false matches.
    password = f"pw-{secrets.token_hex(12)}"
    kafka = LocalKafka(
        progress=say,
        heap="384m",
        listeners=SECURED_LISTENERS,
        sasl_users={SECURED_USER: password},
    )
    say(f"starting a secured local Apache Kafka {KAFKA_VERSION} broker (TLS, SASL)")
    kafka.start()
    try:
        yield SecuredKafka(kafka, password)
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_backend: KafkaBackend) -> str:
    """``bootstrap_servers`` of the session's real Kafka broker."""
    return kafka_backend.bootstrap_servers


@pytest.fixture(scope="session")
def local_kafka(kafka_backend: KafkaBackend) -> LocalKafka:
    """The launcher's own broker, which tests may stop and restart; skips otherwise."""
    if kafka_backend.local is None:
        pytest.skip(
            f"needs the launcher's own broker to stop/restart it, but the session's broker "
            f"comes from {kafka_backend.kind} ({kafka_backend.bootstrap_servers})"
        )
    return kafka_backend.local


@pytest.fixture
def restartable_kafka(local_kafka: LocalKafka) -> Iterator[LocalKafka]:
    """``local_kafka`` for one test; the broker is running again after the test."""
    yield local_kafka
    if not local_kafka.is_running:
        local_kafka.start_broker()
