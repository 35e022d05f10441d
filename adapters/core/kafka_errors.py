"""Why Kafka refused this client, in the configuration's words.

aiokafka's bootstrap turns every failed connection into ``KafkaConnectionError("Unable to
bootstrap from [...]")`` and only logs the cause, so a wrong password looks like a broker that
is down and start-up would retry it for minutes. What a single connection attempt raises does
tell them apart; measured against Kafka 4.1.1 with aiokafka 0.14 on Python 3.11:

- wrong SASL user or password (SCRAM-SHA-256/512, PLAIN):
  ``aiokafka.errors.SaslAuthenticationFailed`` (errno 58) with the broker's message;
- a mechanism the listener does not offer: ``UnsupportedSaslMechanismError`` (33);
- SASL towards a listener without SASL (SSL, PLAINTEXT): ``IllegalSaslStateError`` (34);
- broker certificate not signed by the trusted CA: ``ssl.SSLCertVerificationError`` with
  ``verify_code`` 19 (self-signed certificate in chain), or 20/21/2 for a missing issuer;
- broker certificate for another name: ``ssl.SSLCertVerificationError`` with ``verify_code``
  64 (IP address mismatch) or 62 (hostname mismatch);
- client certificate missing or from a CA the broker does not trust (``ssl.client.auth=required``):
  ``KafkaConnectionError("Connection at ... closed")`` whose ``__cause__`` is an
  ``ssl.SSLError`` with reason ``SSLV3_ALERT_BAD_CERTIFICATE`` / ``SSLV3_ALERT_CERTIFICATE_UNKNOWN``
  (TLS 1.3 reports the rejection after the handshake, on the first read).

These cannot heal by waiting: start-up stops at once with a :class:`KafkaAccessError` whose
message names the configuration key. A refused connection, a reset, an unknown host or a
timeout stays retriable. No message built here contains a credential: only the user name, the
mechanism, file names and what the broker or OpenSSL said (and even that is scrubbed of the
configured secrets).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from adapters.settings import KafkaConfig, TlsConfig

__all__ = ["KafkaAccessError", "classify_connect_error", "tls_context"]

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that mean "the CA you trust did not sign this".
_UNTRUSTED = {
    2: "unable to get issuer certificate",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    27: "certificate not trusted",
}
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64
# TLS alerts the broker sends when it rejects (or misses) the client certificate.
_CLIENT_CERT_REJECTED = {
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
}


class KafkaAccessError(Exception):
    """Kafka refuses this client's settings (credentials, TLS trust, protocol): retrying
    cannot help. The message starts with the configuration key; it never holds a secret."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def _secrets(cfg: KafkaConfig) -> list[str]:
    values = []
    if cfg.sasl is not None:
        values.append(cfg.sasl.password.reveal())
    if cfg.tls is not None and cfg.tls.key_password is not None:
        values.append(cfg.tls.key_password.reveal())
    return [v for v in values if v]


def _scrub(text: str, cfg: KafkaConfig) -> str:
    for secret in _secrets(cfg):
        text = text.replace(secret, "***")
    return text


def classify_connect_error(
    exc: BaseException, cfg: KafkaConfig, address: str
) -> KafkaAccessError | None:
    """The permanent refusal behind one failed connection to ``address``, or ``None`` when
    the failure may be transient (broker down, network, timeout) and is worth retrying."""
    found = _classify(exc, cfg, address)
    if found is None:
        return None
    key, problem = found
    return KafkaAccessError(key, _scrub(problem, cfg))


def _classify(exc: BaseException, cfg: KafkaConfig, address: str) -> tuple[str, str] | None:
    sasl = cfg.sasl
    if isinstance(exc, SaslAuthenticationFailed):
        user = sasl.username if sasl else "?"
        mechanism = sasl.mechanism if sasl else "?"
        said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc.description
        return (
            "kafka.sasl.password",
            f"authentication failed for user {user!r} ({mechanism}) at {address}: the broker "
            f'says "{said}"; check kafka.sasl.username and kafka.sasl.password',
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        mechanism = sasl.mechanism if sasl else "?"
        return (
            "kafka.sasl.mechanism",
            f"the broker at {address} does not offer {mechanism} on this listener; ask for "
            "the mechanisms its listener enables (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
        )
    if isinstance(exc, IllegalSaslStateError):
        return (
            "kafka.security_protocol",
            f"{cfg.security_protocol} authenticates with SASL, but the listener at {address} "
            "does not expect SASL; use the port of a SASL listener, or SSL / PLAINTEXT",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_refused(exc, cfg, address)
    cause = exc.__cause__
    if (
        isinstance(exc, KafkaConnectionError)
        and isinstance(cause, ssl.SSLError)
        and cause.reason in _CLIENT_CERT_REJECTED
    ):
        tls = cfg.tls
        if tls is None or not tls.cert_file:
            return (
                "kafka.tls.cert_file",
                f"the broker at {address} requires a client certificate (mutual TLS) and "
                f"none is configured ({cause.reason})",
            )
        return (
            "kafka.tls.cert_file",
            f"the broker at {address} refused the client certificate {tls.cert_file} "
            f"({cause.reason}): is it signed by a CA that the broker trusts?",
        )
    return None


def _certificate_refused(
    exc: ssl.SSLCertVerificationError, cfg: KafkaConfig, address: str
) -> tuple[str, str]:
    host = address.rsplit(":", 1)[0]
    code = exc.verify_code
    said = exc.verify_message or exc.reason or "certificate verify failed"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        return (
            "kafka.tls.check_hostname",
            f"the broker certificate does not match host {host} ({said}); use a host name "
            "that the certificate names in kafka.bootstrap_servers (and advertised.listeners), "
            "or set kafka.tls.check_hostname: false",
        )
    ca = cfg.tls.ca_file if cfg.tls and cfg.tls.ca_file else None
    trusted = f"the CA in {ca}" if ca else "the system's CA bundle (no kafka.tls.ca_file set)"
    if code in _UNTRUSTED:
        return (
            "kafka.tls.ca_file",
            f"the broker's certificate is not signed by this CA ({trusted}) at {address}: "
            f"{said}; point kafka.tls.ca_file at the CA that signed the broker certificate",
        )
    return (
        "kafka.tls.ca_file",
        f"the broker's certificate at {address} failed verification against {trusted}: {said}",
    )


def tls_context(tls: TlsConfig | None) -> ssl.SSLContext:
    """The client TLS context for ``kafka.tls`` (as aiokafka's ``create_ssl_context`` makes
    it), raising :class:`KafkaAccessError` that names the key of an unusable file.

    An encrypted key without ``key_password`` fails instead of making OpenSSL prompt on the
    terminal, which would block a service.
    """
    ca_file = tls.ca_file if tls else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except ssl.SSLError as exc:
        raise KafkaAccessError(
            "kafka.tls.ca_file", f"{ca_file} holds no PEM certificate ({exc.reason})"
        ) from None
    except OSError as exc:
        raise KafkaAccessError(
            "kafka.tls.ca_file", f"cannot read {ca_file}: {exc.strerror or exc}"
        ) from None
    if tls is not None and tls.cert_file:
        _load_client_certificate(context, tls)
    if tls is not None and not tls.check_hostname:
        context.check_hostname = False
    return context


def _load_client_certificate(context: ssl.SSLContext, tls: TlsConfig) -> None:
    assert tls.cert_file is not None
    password = tls.key_password.reveal() if tls.key_password else ""
    key_file = tls.key_file or tls.cert_file
    for key, path in (("kafka.tls.cert_file", tls.cert_file), ("kafka.tls.key_file", key_file)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise KafkaAccessError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise KafkaAccessError(
                "kafka.tls.key_file", f"{key_file} is not the key of {tls.cert_file}"
            ) from None
        if _encrypted(key_file):
            what = "is wrong" if tls.key_password else "is missing"
            raise KafkaAccessError(
                "kafka.tls.key_password",
                f"cannot decrypt the encrypted key {key_file}: kafka.tls.key_password {what}",
            ) from None
        raise KafkaAccessError(
            "kafka.tls.cert_file",
            f"cannot load the client certificate {tls.cert_file} with key {key_file}: "
            f"{exc.reason or 'not PEM'}",
        ) from None


def _encrypted(key_file: str) -> bool:
    try:
        head = Path(key_file).read_bytes()[:4096]
    except OSError:
        return False
    return b"ENCRYPTED" in head
