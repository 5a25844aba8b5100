from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import Unauthenticated
from broker.identity import Identity, Role, identity_from_pem, parse_identity_uri
from broker.pki import DEMO_PARTIES, init_pki, tls_files


def test_every_demo_party_has_a_certificate_with_its_identity(pki_dir: Path) -> None:
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for party in DEMO_PARTIES:
        files = tls_files(pki_dir, party.name)
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        identity = identity_from_pem(files.cert.read_bytes())
        assert identity == Identity(Role(party.role), party.agency, party.service)
        assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600


def test_init_keeps_existing_certificates_unless_forced(tmp_path: Path) -> None:
    written = init_pki(tmp_path)
    assert tmp_path / "ca.key" in written
    before = (tmp_path / "broker.crt").read_bytes()
    assert init_pki(tmp_path) == []
    assert (tmp_path / "broker.crt").read_bytes() == before
    init_pki(tmp_path, force=True)
    assert (tmp_path / "broker.crt").read_bytes() != before


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "spiffe://tillit.test/requester/exempelby-kommun/preschool-fee",
            Identity(Role.REQUESTER, "exempelby-kommun", "preschool-fee"),
        ),
        ("spiffe://tillit.test/dpo/tillit", Identity(Role.DPO, "tillit")),
    ],
)
def test_identity_uri_is_parsed(uri: str, expected: Identity) -> None:
    assert parse_identity_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://other.test/requester/a/b",
        "https://tillit.test/requester/a/b",
        "spiffe://tillit.test/superuser/a",
        "spiffe://tillit.test/requester",
        "spiffe://tillit.test/requester/a/b/c",
    ],
)
def test_foreign_or_malformed_identities_are_refused(uri: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_identity_uri(uri)
