"""Test-time TLS material for the local broker: a CA, broker certificates, a client certificate.

Everything is PEM, as both sides take it: the broker reads a PEM key store (private key and
certificate chain in one file, ``ssl.keystore.type=PEM``) and a PEM trust store; Python's
``ssl`` reads the CA, the client certificate and its encrypted key. Needs the ``cryptography``
package (a dev dependency); the launcher imports this module only when a TLS listener is asked
for.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "TlsFiles", "ensure_tls_files"]

# Long enough for a kept --data-dir; the clock skew margin covers a VM's drifting clock.
_VALID_DAYS = 365
_SKEW = datetime.timedelta(hours=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "workbridge localkafka"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _key_pem(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    # PKCS#8: the only private-key form that Kafka's PEM key store reads.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that issues the broker's and the client's certificates."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "workbridge localkafka CA") -> CertificateAuthority:
        """A new CA with a fresh key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def pem(self) -> bytes:
        """The CA certificate (what a client's ``ca_file`` holds)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, common_name: str, *, hosts: Sequence[str] = (), client: bool = False
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for a server (with ``hosts`` as its SANs) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if hosts:
            builder = builder.add_extension(_subject_alt_names(hosts), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass(frozen=True)
class TlsFiles:
    """Where the TLS material of one local broker lies (all PEM)."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate: the broker's trust store and the clients' ``ca_file``."""
        return self.folder / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        """The client certificate for mutual TLS (``cert_file``)."""
        return self.folder / "client.pem"

    @property
    def client_key_file(self) -> Path:
        """The client's private key, encrypted with :attr:`client_key_password`."""
        return self.folder / "client.key"

    @property
    def client_key_password_file(self) -> Path:
        """The file with the client key's password (``key_password_file``)."""
        return self.folder / "client.key.password"

    @property
    def client_key_password(self) -> str:
        """The client key's password."""
        return self.client_key_password_file.read_text().strip()

    def keystore(self, name: str) -> Path:
        """A broker key store: private key followed by its certificate chain."""
        return self.folder / f"broker-{name}.keystore.pem"


def ensure_tls_files(folder: Path, keystores: Mapping[str, Sequence[str]]) -> TlsFiles:
    """Write a CA, one broker key store per entry of ``keystores`` (name: its hosts) and a
    client certificate into ``folder``; files already there are kept (a reused data folder
    keeps the CA its clients trust)."""
    files = TlsFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key_file = folder / "ca.key"
    if files.ca_file.is_file() and ca_key_file.is_file():
        loaded = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_file} is not an EC key")
        ca = CertificateAuthority(
            x509.load_pem_x509_certificate(files.ca_file.read_bytes()), loaded
        )
    else:
        ca = CertificateAuthority.create()
        _write_private(ca_key_file, _key_pem(ca.key))
        files.ca_file.write_bytes(ca.pem)
    for name, hosts in keystores.items():
        path = files.keystore(name)
        if path.is_file():
            continue
        cert, key = ca.issue(f"localkafka broker {name}", hosts=hosts)
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca.pem
        _write_private(path, _key_pem(key) + chain)
    if not (files.client_cert_file.is_file() and files.client_key_file.is_file()):
        password = secrets.token_urlsafe(18)
        cert, key = ca.issue("workbridge-client", client=True)
        _write_private(files.client_key_password_file, password.encode() + b"\n")
        _write_private(files.client_key_file, _key_pem(key, password))
        files.client_cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def _write_private(path: Path, content: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(content)
