"""The bridge on a secured broker: SASL_SSL (SCRAM, PLAIN), SASL_PLAINTEXT and mutual TLS.

One extra local broker (``secured_kafka``) serves every listener. The bridge connects only
through the secured listener under test; the tests' own readers and writers use the broker's
PLAINTEXT listener, so what they see does not depend on the code under test.

Refusals (wrong password, untrusted CA, wrong host name, ...) must stop start-up at once with
a message naming the configuration key, and no credential may show up in any log record (all
loggers at DEBUG, aiokafka's included), on stderr or in the exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.app import Bridge, StartupError
from adapters.config import Config, parse_config
from adapters.core.kafka import Topics
from adapters.localkafka.certs import CertificateAuthority
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import ce, moco_config, publish_command, read_records
from tests.integration.test_moco_commands import COMMANDS, activity, results, seed
from tests.integration.test_moco_polling import FAST, _wait_polled
from tests.integration.test_moco_webhooks import webhook_url
from tests.kafka_fixture import SECURED_USER, SecuredKafka

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Way:
    """How the bridge reaches the secured broker."""

    listener: str
    protocol: str
    mechanism: str | None = None
    client_cert: bool = False

    def __str__(self) -> str:
        return f"{self.protocol}-{self.mechanism or 'mtls'}"


SCRAM_512 = Way("SASL_SSL", "SASL_SSL", "SCRAM-SHA-512")
MTLS = Way("MTLS", "SSL", client_cert=True)


def kafka_section(
    secured: SecuredKafka,
    way: Way,
    tmp_path: Path,
    *,
    password: str | None = None,
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `kafka:` section of a config file for `way`, secrets given as `*_file` (as mounted
    from a Kubernetes Secret), with `tls` overriding the TLS keys."""
    raw: dict[str, Any] = {
        "bootstrap_servers": secured.bootstrap(way.listener),
        "security_protocol": way.protocol,
    }
    if way.protocol in ("SSL", "SASL_SSL"):
        files = secured.tls
        section: dict[str, Any] = {"ca_file": str(files.ca_file)}
        if way.client_cert:
            section |= {
                "cert_file": str(files.client_cert_file),
                "key_file": str(files.client_key_file),
                "key_password_file": str(files.client_key_password_file),
            }
        # an override of None removes the key
        raw["tls"] = {k: v for k, v in (section | (tls or {})).items() if v is not None}
    if way.mechanism is not None:
        password_file = tmp_path / "sasl-password"
        password_file.write_text((password or secured.password) + "\n")
        raw["sasl"] = {
            "mechanism": way.mechanism,
            "username": SECURED_USER,
            "password_file": str(password_file),
        }
    return raw


def secured_config(base: Config, kafka: dict[str, Any]) -> Config:
    """`base` (a `moco_config`) connecting as the `kafka` section says."""
    parsed = parse_config({"kafka": kafka}).kafka
    return msgspec.structs.replace(
        base,
        kafka=msgspec.structs.replace(
            base.kafka,
            bootstrap_servers=parsed.bootstrap_servers,
            security_protocol=parsed.security_protocol,
            tls=parsed.tls,
            sasl=parsed.sasl,
        ),
        # No load balancer to wait for: each of the many bridges here stops at once.
        server=msgspec.structs.replace(base.server, shutdown_delay_s=0.0),
    )


StartSecured = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def start_secured(
    secured_kafka: SecuredKafka, prefix: str, fake_moco: FakeMoco, tmp_path: Path
) -> AsyncIterator[StartSecured]:
    """Start bridges on the secured broker for this test (stopped at its end)."""
    bridges: list[Bridge] = []

    async def start(way: Way, **instance: Any) -> Bridge:
        assert fake_moco.base_url is not None
        base = moco_config(secured_kafka.plaintext, prefix, fake_moco.base_url, **instance)
        bridge = Bridge(secured_config(base, kafka_section(secured_kafka, way, tmp_path)))
        bridges.append(bridge)
        await bridge.start()
        return bridge

    yield start
    for bridge in bridges:
        await bridge.stop()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, aiokafka's included, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    # an earlier test may have run the CLI, which puts aiokafka at WARNING
    caplog.set_level(logging.DEBUG, logger="aiokafka")
    return caplog


def _retried_by_aiokafka(record: logging.LogRecord) -> bool:
    return record.name == "aiokafka.consumer.fetcher" and "NotLeaderForPartitionError" in (
        record.getMessage()
    )


def leaks(secrets: list[str], *texts: str) -> list[str]:
    """Which texts hold one of the secrets (reported by index, not by content)."""
    return [
        f"text {i} holds secret {j}"
        for i, text in enumerate(texts)
        for j, secret in enumerate(secrets)
        if secret in text
    ]


def key_body_line(path: Path) -> str:
    """A line of a PEM key's body: it must not appear anywhere either."""
    return path.read_text().splitlines()[1]


@pytest.mark.parametrize("way", [SCRAM_512, MTLS], ids=str)
async def test_webhooks_polling_and_commands_through_the_secured_listener(
    way: Way,
    secured_kafka: SecuredKafka,
    prefix: str,
    fake_moco: FakeMoco,
    start_secured: StartSecured,
    debug_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    company, project = seed(fake_moco)
    bridge = await start_secured(way, polling=FAST, commands=COMMANDS)

    # webhook -> events (non-transactional, idempotent producer)
    fake_moco.subscribe("Activity", "*", webhook_url(bridge.port))
    hooked = fake_moco.create_record("activities", {"description": "pump check", "hours": 1.5})
    await fake_moco.wait_deliveries_idle(10)
    assert [d.status for d in fake_moco.deliveries] == [200]

    # command -> vendor call -> result (transactional, consumer group)
    command_id = await publish_command(
        secured_kafka.plaintext,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"]),
        subject=f"project/{project['id']}",
    )
    [result] = await results(secured_kafka.plaintext, prefix, 1, settle=0.2)
    assert result["_commandid"] == command_id
    assert result["status"] == "succeeded", result
    created = result["response"]["id"]

    # polling -> events with cursors in the same transaction
    await _wait_polled(bridge)
    await fake_moco.wait_deliveries_idle(10)  # the command's echo webhook
    events = await read_records(
        secured_kafka.plaintext, Topics(prefix, "moco").events, count=4, settle=0.2
    )
    subjects = {ce(r).get_attributes()["subject"] for r in events}
    assert {
        f"company/{company['id']}",
        f"project/{project['id']}",
        f"activity/{hooked['id']}",
        f"activity/{created}",
    } <= subjects

    # The first consumer group on this fresh broker makes it create __consumer_offsets;
    # aiokafka's "coordinator not available" retries while it does are not errors.
    # And KRaft publishes a new partition's leader in the metadata a moment before the broker
    # acts as its leader: aiokafka logs the first offset lookup's NotLeaderForPartition at ERROR
    # and retries it. Neither touches the security setup this test is about.
    errors = [
        r for r in debug_logs.records if r.levelno >= logging.ERROR and not _retried_by_aiokafka(r)
    ]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]
    secrets = [secured_kafka.password, secured_kafka.tls.client_key_password]
    assert leaks(secrets, debug_logs.text, capfd.readouterr().err) == []


@pytest.mark.parametrize(
    "way",
    [
        Way("SASL_SSL", "SASL_SSL", "SCRAM-SHA-256"),
        Way("SASL_SSL", "SASL_SSL", "PLAIN"),
        Way("SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA-512"),
    ],
    ids=str,
)
async def test_other_mechanisms_connect_and_produce(
    way: Way,
    secured_kafka: SecuredKafka,
    prefix: str,
    fake_moco: FakeMoco,
    start_secured: StartSecured,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    bridge = await start_secured(way)
    fake_moco.subscribe("Project", "*", webhook_url(bridge.port))
    record = fake_moco.create_record("projects", {"name": "Line 4"})
    await fake_moco.wait_deliveries_idle(10)
    assert [d.status for d in fake_moco.deliveries] == [200]
    [event] = await read_records(secured_kafka.plaintext, Topics(prefix, "moco").events, count=1)
    assert ce(event).get_attributes()["subject"] == f"project/{record['id']}"
    # PLAIN sends the password itself; aiokafka logs that request at DEBUG.
    assert leaks([secured_kafka.password], debug_logs.text) == []


async def test_check_hostname_false_accepts_a_certificate_for_another_name(
    secured_kafka: SecuredKafka, prefix: str, fake_moco: FakeMoco, tmp_path: Path
) -> None:
    assert fake_moco.base_url is not None
    base = moco_config(secured_kafka.plaintext, prefix, fake_moco.base_url)
    kafka = kafka_section(
        secured_kafka, Way("WRONG_HOST", "SSL"), tmp_path, tls={"check_hostname": False}
    )
    bridge = Bridge(secured_config(base, kafka))
    try:
        await asyncio.wait_for(bridge.start(), 30)
        assert bridge.producer is not None
        await bridge.producer.send_and_wait(Topics(prefix, "moco").dlq, b"reached")
    finally:
        await bridge.stop()


WRONG_PASSWORD = "wrong-pw-5e0d41c7a9"


def _other_ca(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "other-ca.pem"
    path.write_bytes(CertificateAuthority.create("some other CA").pem)
    return {"ca_file": str(path)}


# (id, way, password, tls overrides, expected start of the message)
REFUSALS: list[tuple[str, Way, str | None, Callable[[Path], dict[str, Any]], str]] = [
    (
        "scram-512-wrong-password",
        SCRAM_512,
        WRONG_PASSWORD,
        lambda _: {},
        f"kafka.sasl.password: authentication failed for user '{SECURED_USER}' (SCRAM-SHA-512)",
    ),
    (
        "plain-wrong-password",
        Way("SASL_SSL", "SASL_SSL", "PLAIN"),
        WRONG_PASSWORD,
        lambda _: {},
        f"kafka.sasl.password: authentication failed for user '{SECURED_USER}' (PLAIN)",
    ),
    (
        "untrusted-ca",
        MTLS,
        None,
        _other_ca,
        "kafka.tls.ca_file: the broker's certificate is not signed by this CA",
    ),
    (
        "system-cas-only",
        SCRAM_512,
        None,
        lambda _: {"ca_file": None},
        "kafka.tls.ca_file: the broker's certificate is not signed by this CA (the system's",
    ),
    (
        "hostname-mismatch",
        Way("WRONG_HOST", "SSL", client_cert=True),
        None,
        lambda _: {},
        "kafka.tls.check_hostname: the broker certificate does not match host 127.0.0.1",
    ),
    (
        "no-client-certificate",
        Way("MTLS", "SSL"),
        None,
        lambda _: {},
        "kafka.tls.cert_file: the broker at 127.0.0.1:",
    ),
    (
        "wrong-key-password",
        MTLS,
        None,
        lambda _: {"key_password": WRONG_PASSWORD, "key_password_file": None},
        "kafka.tls.key_password: cannot decrypt the encrypted key",
    ),
    (
        "sasl-on-a-tls-only-listener",
        Way("MTLS", "SASL_SSL", "SCRAM-SHA-512", client_cert=True),
        None,
        lambda _: {},
        "kafka.security_protocol: SASL_SSL authenticates with SASL, but the listener",
    ),
]


@pytest.mark.parametrize(
    ("way", "password", "tls", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
async def test_refusal_stops_start_up_at_once_naming_the_key_and_no_secret(
    way: Way,
    password: str | None,
    tls: Callable[[Path], dict[str, Any]],
    expected: str,
    secured_kafka: SecuredKafka,
    prefix: str,
    fake_moco: FakeMoco,
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert fake_moco.base_url is not None
    kafka = kafka_section(secured_kafka, way, tmp_path, password=password, tls=tls(tmp_path))
    base = moco_config(secured_kafka.plaintext, prefix, fake_moco.base_url)
    # Today's code retried such failures until the startup timeout: one far longer than
    # the test waits shows whether start-up gives up at once.
    bridge = Bridge(secured_config(base, kafka), startup_timeout_s=120)
    started = time.monotonic()
    try:
        with pytest.raises(StartupError) as failed:
            await asyncio.wait_for(bridge.start(), 15)
        elapsed = time.monotonic() - started
    finally:
        await bridge.stop()
    message = str(failed.value)
    assert message.startswith(expected), message
    assert elapsed < 10, f"start-up took {elapsed:.1f} s to give up"

    secrets = [
        secured_kafka.password,
        WRONG_PASSWORD,
        secured_kafka.tls.client_key_password,
        key_body_line(secured_kafka.tls.client_key_file),
    ]
    stderr = capfd.readouterr().err
    assert leaks(secrets, message, repr(failed.value), debug_logs.text, stderr) == []
