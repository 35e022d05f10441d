"""Test TLS material for HTTPS and mutual-TLS fakes: a CA, a server certificate, client
certificates (one from that CA, one from ANOTHER CA), all PEM files in one folder.

    tls = make_tls_files(tmp_path, client_key_password="pw")
    fake = FakeCmo(ssl_context=tls.server_context())          # mTLS: CERT_REQUIRED
    client = tls.client_context()                            # trusted, right certificate
    stranger = tls.client_context(cert="other")              # certificate from another CA
    anonymous = tls.client_context(cert="none")              # no certificate

The certificates come from `adapters.localkafka.certs.CertificateAuthority` (EC P-256, a
year's validity). The client key can be encrypted (PKCS#8), as `ClientTls.key_password` reads
it; the other keys are not.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.localkafka.certs import CertificateAuthority

__all__ = ["TlsFiles", "make_tls_files"]

# The names the server certificate is valid for: what tests connect to.
SERVER_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """Where the PEM files lie, and SSL contexts built from them."""

    folder: Path
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    # None: the client key is not encrypted.
    client_key_password: str | None
    # A client certificate from another CA (the server does not trust it), and that CA.
    other_ca_file: Path
    other_client_cert_file: Path
    other_client_key_file: Path
    # SHA-1 of the client certificates' DER, upper-case hex (CMO's "thumbprint").
    client_thumbprint: str
    other_client_thumbprint: str

    def server_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        """The server's context: its certificate, and client certificates verified against
        the CA only (`CERT_REQUIRED`: mutual TLS; else `CERT_OPTIONAL`)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.server_cert_file), str(self.server_key_file))
        context.load_verify_locations(cafile=str(self.ca_file))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        return context

    def client_context(
        self, *, cert: Literal["good", "other", "none"] = "good", trust: bool = True
    ) -> ssl.SSLContext:
        """A client's context that trusts the server (unless `trust` is off) and presents the
        good client certificate, the one from the other CA, or none."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if trust else None)
        if cert == "good":
            password = self.client_key_password
            context.load_cert_chain(
                str(self.client_cert_file),
                str(self.client_key_file),
                password=lambda: password or "",
            )
        elif cert == "other":
            context.load_cert_chain(
                str(self.other_client_cert_file), str(self.other_client_key_file)
            )
        return context


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def _write(path: Path, content: bytes, *, private: bool = False) -> Path:
    if private:
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
    path.write_bytes(content)
    return path


def make_tls_files(
    folder: Path,
    *,
    client_key_password: str | None = None,
    hosts: tuple[str, ...] = SERVER_HOSTS,
    client_name: str = "workbridge-client",
) -> TlsFiles:
    """Write a fresh CA, a server certificate for `hosts`, a client certificate (its key
    encrypted with `client_key_password` when given) and a client certificate of another CA
    into `folder` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create("workbridge test CA")
    other_ca = CertificateAuthority.create("another test CA")
    server_cert, server_key = ca.issue("workbridge test server", hosts=hosts)
    client_cert, client_key = ca.issue(client_name, client=True)
    other_cert, other_key = other_ca.issue(client_name, client=True)
    return TlsFiles(
        folder=folder,
        ca_file=_write(folder / "ca.pem", ca.pem),
        server_cert_file=_write(folder / "server.pem", _pem(server_cert) + ca.pem),
        server_key_file=_write(folder / "server.key", _key(server_key), private=True),
        client_cert_file=_write(folder / "client.pem", _pem(client_cert)),
        client_key_file=_write(
            folder / "client.key", _key(client_key, client_key_password), private=True
        ),
        client_key_password=client_key_password,
        other_ca_file=_write(folder / "other-ca.pem", other_ca.pem),
        other_client_cert_file=_write(folder / "other-client.pem", _pem(other_cert)),
        other_client_key_file=_write(folder / "other-client.key", _key(other_key), private=True),
        client_thumbprint=_thumbprint(client_cert),
        other_client_thumbprint=_thumbprint(other_cert),
    )
