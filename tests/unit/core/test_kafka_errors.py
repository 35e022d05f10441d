"""Kafka refusals are told apart from outages and named by their configuration key.

The exceptions here are built the way aiokafka 0.14 and Python's ssl raise them against
Kafka 4.1.1 (see the module docstring of adapters.core.kafka_errors and the integration test
tests/integration/test_kafka_security.py, which meets the real ones).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    NodeNotReadyError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from cryptography.hazmat.primitives import serialization

from adapters.config import KafkaConfig, parse_config
from adapters.core.kafka_errors import KafkaAccessError, classify_connect_error, tls_context
from adapters.localkafka.certs import CertificateAuthority, ensure_tls_files

ADDRESS = "broker-1.example:9093"
PASSWORD = "s3cret-pw-6f1e"
WRONG_KEY_PASSWORD = "not-the-key-pw-91c2"


def kafka(**section: Any) -> KafkaConfig:
    raw = {"bootstrap_servers": ADDRESS, **section}
    return parse_config({"kafka": raw}).kafka


SCRAM = kafka(
    security_protocol="SASL_SSL",
    sasl={"mechanism": "SCRAM-SHA-512", "username": "alice", "password": PASSWORD},
    tls={"ca_file": "/etc/kafka/ca.pem"},
)


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    return exc


def closed_by_alert(reason: str) -> KafkaConnectionError:
    alert = ssl.SSLError(1, f"[SSL: {reason}] alert")
    alert.reason = reason
    exc = KafkaConnectionError(f"Connection at {ADDRESS} closed")
    exc.__cause__ = alert
    return exc


def test_wrong_password_names_the_password_key_user_and_mechanism() -> None:
    exc = SaslAuthenticationFailed(
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-512"
    )
    refusal = classify_connect_error(exc, SCRAM, ADDRESS)
    assert refusal is not None and refusal.key == "kafka.sasl.password"
    assert str(refusal).startswith(
        f"kafka.sasl.password: authentication failed for user 'alice' (SCRAM-SHA-512) at {ADDRESS}"
    )
    assert "invalid credentials" in str(refusal)


def test_a_secret_in_the_brokers_words_is_scrubbed() -> None:
    exc = SaslAuthenticationFailed(f"no user with password {PASSWORD}")
    refusal = classify_connect_error(exc, SCRAM, ADDRESS)
    assert refusal is not None
    assert PASSWORD not in str(refusal) and "***" in str(refusal)


@pytest.mark.parametrize(
    ("exc", "key"),
    [
        (UnsupportedSaslMechanismError("no"), "kafka.sasl.mechanism"),
        (IllegalSaslStateError("no"), "kafka.security_protocol"),
        (verify_error(19, "self-signed certificate in certificate chain"), "kafka.tls.ca_file"),
        (verify_error(20, "unable to get local issuer certificate"), "kafka.tls.ca_file"),
        (verify_error(10, "certificate has expired"), "kafka.tls.ca_file"),
        (verify_error(62, "Hostname mismatch"), "kafka.tls.check_hostname"),
        (verify_error(64, "IP address mismatch"), "kafka.tls.check_hostname"),
        (closed_by_alert("SSLV3_ALERT_BAD_CERTIFICATE"), "kafka.tls.cert_file"),
        (closed_by_alert("SSLV3_ALERT_CERTIFICATE_UNKNOWN"), "kafka.tls.cert_file"),
    ],
)
def test_permanent_refusals_are_classified(exc: BaseException, key: str) -> None:
    refusal = classify_connect_error(exc, SCRAM, ADDRESS)
    assert refusal is not None
    assert refusal.key == key
    assert str(refusal).startswith(f"{key}: ")


def test_messages_say_what_to_check() -> None:
    untrusted = classify_connect_error(
        verify_error(19, "self-signed certificate in certificate chain"), SCRAM, ADDRESS
    )
    assert str(untrusted).startswith(
        "kafka.tls.ca_file: the broker's certificate is not signed by this CA "
        "(the CA in /etc/kafka/ca.pem)"
    )
    mismatch = classify_connect_error(verify_error(62, "Hostname mismatch"), SCRAM, ADDRESS)
    assert str(mismatch).startswith(
        "kafka.tls.check_hostname: the broker certificate does not match host broker-1.example"
    )
    no_cert = classify_connect_error(closed_by_alert("SSLV3_ALERT_BAD_CERTIFICATE"), SCRAM, ADDRESS)
    assert "requires a client certificate (mutual TLS) and none is configured" in str(no_cert)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(),
        OSError(-2, "Name or service not known"),
        TimeoutError(),
        asyncio.IncompleteReadError(b"", 4),
        KafkaConnectionError(f"Connection at {ADDRESS} closed"),
        NodeNotReadyError("starting"),
        closed_by_alert("WRONG_VERSION_NUMBER"),
    ],
)
def test_outages_stay_retriable(exc: BaseException) -> None:
    assert classify_connect_error(exc, SCRAM, ADDRESS) is None


# ---------------------------------------------------------------- TLS files


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    ensure_tls_files(folder, {"default": ("127.0.0.1", "localhost")})
    return folder


def client_tls(tls_dir: Path, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "ca_file": str(tls_dir / "ca.pem"),
        "cert_file": str(tls_dir / "client.pem"),
        "key_file": str(tls_dir / "client.key"),
        "key_password": (tls_dir / "client.key.password").read_text().strip(),
    }
    section.update(overrides)
    return {k: v for k, v in section.items() if v is not None}


def context_for(section: dict[str, Any]) -> ssl.SSLContext:
    return tls_context(kafka(security_protocol="SSL", tls=section).tls)


def test_a_usable_client_certificate_gives_a_context(tls_dir: Path) -> None:
    context = context_for(client_tls(tls_dir))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert not context_for(client_tls(tls_dir, check_hostname=False)).check_hostname


def test_no_tls_section_uses_the_system_cas() -> None:
    context = tls_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def _other_key(tmp_path: Path) -> str:
    _, key = CertificateAuthority.create("x").issue("stranger", client=True)
    path = tmp_path / "stranger.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        (
            {"ca_file": "/nonexistent/ca.pem"},
            "kafka.tls.ca_file",
            "cannot read /nonexistent/ca.pem",
        ),
        ({"ca_file": "KEY"}, "kafka.tls.ca_file", "holds no PEM certificate"),
        ({"cert_file": "/nonexistent/c.pem"}, "kafka.tls.cert_file", "cannot read"),
        ({"key_file": "/nonexistent/c.key"}, "kafka.tls.key_file", "cannot read"),
        ({"key_password": WRONG_KEY_PASSWORD}, "kafka.tls.key_password", "key_password is wrong"),
        ({"key_password": None}, "kafka.tls.key_password", "key_password is missing"),
        ({"key_file": "OTHER"}, "kafka.tls.key_file", "is not the key of"),
    ],
)
def test_unusable_tls_files_name_their_key(
    tls_dir: Path, tmp_path: Path, overrides: dict[str, Any], key: str, says: str
) -> None:
    resolved = {
        name: (
            str(tls_dir / "client.key")
            if value == "KEY"
            else _other_key(tmp_path)
            if value == "OTHER"
            else value
        )
        for name, value in overrides.items()
    }
    section = client_tls(tls_dir, **resolved)
    with pytest.raises(KafkaAccessError) as raised:
        context_for(section)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"{key}: ")
    assert says in str(raised.value)
    key_body = (tls_dir / "client.key").read_text().splitlines()[1]
    password = (tls_dir / "client.key.password").read_text().strip()
    for secret in (key_body, password, WRONG_KEY_PASSWORD):
        assert secret not in str(raised.value)
