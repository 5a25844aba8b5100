"""A development PKI: one CA and a certificate per party, made with ``cryptography``.

Every party is named by a URI subject alternative name,
``spiffe://tillit.test/<role>/<agency>[/<service>]``, so the broker learns who is
calling, and in which role, from the verified client certificate alone.
Production deployments bring their own CA; only the URI scheme matters.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "tillit.test"


@dataclass(frozen=True)
class Party:
    """A certificate holder: file stem, role, agency and optional e-service."""

    name: str
    role: str
    agency: str
    service: str = ""

    @property
    def uri(self) -> str:
        path = f"{self.role}/{self.agency}" + (f"/{self.service}" if self.service else "")
        return f"spiffe://{TRUST_DOMAIN}/{path}"


# The demo's parties. Agencies are invented, modelled on Swedish ones.
DEMO_PARTIES: tuple[Party, ...] = (
    Party("broker", "broker", "tillit"),
    Party("opa", "opa", "tillit"),
    Party("tax-agency", "provider", "tax-agency"),
    Party("population-register", "provider", "population-register"),
    Party("social-insurance", "provider", "social-insurance"),
    Party("exempelby-preschool-fee", "requester", "exempelby-kommun", "preschool-fee"),
    Party("exempelby-housing-allowance", "requester", "exempelby-kommun", "housing-allowance"),
    Party("social-insurance-parental-benefit", "requester", "social-insurance", "parental-benefit"),
    Party("citizen-portal", "portal", "tillit", "citizen-portal"),
    Party("dpo", "dpo", "tillit", "dpo"),
    # Serves the development identity provider over HTTPS; calls nothing.
    Party("dev-idp", "idp", "tillit", "dev-idp"),
)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a party's key, certificate and the CA certificate."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """Return (ca, cert, key) PEM bytes."""
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def tls_files(pki_dir: Path, name: str) -> TlsFiles:
    """Where ``name``'s certificate and key live in ``pki_dir``."""
    return TlsFiles(pki_dir / "ca.crt", pki_dir / f"{name}.crt", pki_dir / f"{name}.key")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_pki(
    pki_dir: Path,
    parties: tuple[Party, ...] = DEMO_PARTIES,
    *,
    force: bool = False,
    days: int = 825,
) -> list[Path]:
    """Create the CA (if missing) and a certificate for every party that lacks one.

    Returns the files written. Existing files are kept unless ``force``.
    """
    pki_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pki_dir, 0o700)
    written: list[Path] = []
    now = dt.datetime.now(dt.UTC)
    ca_cert_path, ca_key_path = pki_dir / "ca.crt", pki_dir / "ca.key"
    if force or not ca_cert_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tillit development"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Tillit development CA"),
            ]
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days + 365))
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(ca_key_path, _key_pem(ca_key))
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        written += [ca_cert_path, ca_key_path]
        force = True  # a new CA invalidates every leaf
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    for party in parties:
        files = tls_files(pki_dir, party.name)
        if files.cert.exists() and not force:
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, party.agency),
                        x509.NameAttribute(NameOID.COMMON_NAME, party.service or party.name),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(party.uri),
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                        x509.IPAddress(ipaddress.IPv6Address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(loaded.public_key()), False
            )
            .sign(loaded, hashes.SHA256())
        )
        _write_private(files.key, _key_pem(key))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        written += [files.cert, files.key]
    return written
