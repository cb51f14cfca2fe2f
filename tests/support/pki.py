"""Certificates for the TLS tests: a CA, a server and clients, written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_Signer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    directory: Path, name: str, issuer: _Signer | None, *, ca: bool = False, client: bool = False
) -> tuple[Issued, _Signer]:
    """A key and certificate signed by ``issuer`` (self-signed when None), written as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    files = Issued(directory / f"{name}.pem", directory / f"{name}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files, (cert, key)


@dataclass
class PKI:
    """The certificates a test needs, in one directory (where web.yml goes too).

    The ``pki`` fixture makes one per test module (``PKI.create``).
    """

    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA
    directory: Path
    _ca_signer: _Signer

    @classmethod
    def create(cls, directory: Path) -> PKI:
        """A CA, a server and a client certificate from it, and a client from another CA."""
        ca, signer = _issue(directory, "ca", None, ca=True)
        server, _ = _issue(directory, "server", signer)
        client, _ = _issue(directory, "client", signer, client=True)
        _, other_ca = _issue(directory, "other-ca", None, ca=True)
        stranger, _ = _issue(directory, "stranger", other_ca, client=True)
        return cls(ca, server, client, stranger, directory, signer)

    def issue_server(self, name: str) -> Issued:
        """Another server certificate from the CA, as ``name.pem`` and ``name.key`` (rotation)."""
        issued, _ = _issue(self.directory, name, self._ca_signer)
        return issued
