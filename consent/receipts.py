"""Signed consent receipts a citizen can keep and verify offline.

A receipt is a JWS (EdDSA, Ed25519) over a record shaped after the Kantara
Consent Receipt and ISO/IEC TS 27560: who gave what to whom, for which
purpose and on what lawful basis, under which notice, when, for how long, and
how to withdraw. It is made from the stored record and its events, so asking
again yields the same receipt (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker import jws
from consent.store import Consent

RECEIPT_TYPE = "tillit-consent-receipt+jws"
VERSION = "tillit-consent-receipt/1"
WITHDRAWAL = {
    "sv": "Återkalla när som helst i medborgarportalen (Mina samtycken) eller hos "
    "den mottagande myndigheten; återkallelsen gäller omedelbart.",
    "en": "Withdraw at any time in the citizen portal (My consents) or with the receiving "
    "agency; the withdrawal takes effect at once.",
}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ReceiptSigner:
    """Signs receipts with the broker's receipt key."""

    def __init__(self, key: Ed25519PrivateKey, issuer: str) -> None:
        self._key = key
        self.issuer = issuer

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def jwks(self) -> dict[str, Any]:
        return jws.jwks([self.public_key])

    def receipt(
        self,
        consent: Consent,
        subject_id: str,
        event: str,
        *,
        lawful_basis: str,
        category: str,
    ) -> str:
        if event == "withdrawn":
            if consent.withdrawn_at is None:
                raise ValueError("the consent has not been withdrawn")
            at = consent.withdrawn_at
        else:
            at = consent.given_at
        payload = {
            "version": VERSION,
            "iss": self.issuer,
            "jti": f"{consent.id}:{event}",
            "iat": int(at.timestamp()),
            "event": event,
            "event_time": _iso(at),
            "jurisdiction": consent.jurisdiction,
            "collection_method": consent.method,
            "pii_principal_id": subject_id,
            "given_by": consent.given_by,
            "language": consent.language,
            "record": {
                "consent_id": consent.id,
                "kind": str(consent.kind),
                "purpose": consent.purpose,
                "lawful_basis": lawful_basis,
                "recipient": {"agency": consent.requester, "service": consent.service},
                "source": {"agency": consent.provider},
                "dataset": consent.dataset,
                "data_category": category,
                "fields": list(consent.fields),
                "given_at": _iso(consent.given_at),
                "valid_from": _iso(consent.valid_from),
                "valid_until": _iso(consent.valid_until),
                "withdrawn_at": _iso(consent.withdrawn_at),
                "notice": {"version": consent.notice_version, "language": consent.language},
                "withdrawal": WITHDRAWAL.get(consent.language, WITHDRAWAL["en"]),
            },
        }
        return jws.sign(payload, self._key, typ=RECEIPT_TYPE)


def verify_receipt(token: str, keys: dict[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The receipt's content if it is intact and signed by one of ``keys``."""
    payload = jws.verify(token, keys, typ=RECEIPT_TYPE)
    if payload.get("version") != VERSION:
        raise jws.JwsError("not a Tillit consent receipt")
    return payload


def verify_receipt_file(path: Path, keys_path: Path) -> dict[str, Any]:
    return verify_receipt(path.read_text().strip(), jws.load_jwks(keys_path))


def write_jwks(path: Path, signer: ReceiptSigner) -> None:
    """Publish the receipt keys where offline verifiers can pick them up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(signer.jwks(), indent=2))
