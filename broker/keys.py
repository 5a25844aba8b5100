"""Key material kept in the data directory, never in the repository.

- ``pseudonym.key``: 32 random bytes for the keyed pseudonyms (HMAC-SHA256) that
  stand for subjects in the consent store (and in audit entries made before epoch keys).
- ``pseudonym/<YYYY-MM>.key``: one key per month for the audit log's pseudonyms,
  destroyed after the retention period (``broker.shredding``).
- ``log-signing.key``: the Ed25519 key that signs audit checkpoints and receipts.
Files are created on first use with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.shredding import EpochKeyring

AUDIT_DOMAIN = "audit"


def _create_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first; use theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    if not path.exists():
        _create_private(path, secrets.token_bytes(size))
    data = path.read_bytes()
    if len(data) != size:
        raise ValueError(f"{path.name} must hold {size} bytes")
    return data


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _create_private(path, pem)
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path.name} is not an Ed25519 key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def dev_idp_key(keys_dir: Path) -> Ed25519PrivateKey:
    """The development identity provider's signing key; also writes its JWK Set.

    The broker trusts ``idp-jwks.json``; a real deployment points ``[identity] jwks``
    at its identity provider's published key set instead.
    """
    from broker.jws import jwks  # local: jws is only needed where tokens are used

    key = load_or_create_signing_key(keys_dir / "idp-signing.key")
    document = json.dumps(jwks([key.public_key()]), indent=2)
    target = keys_dir / "idp-jwks.json"
    if not target.exists() or target.read_text() != document:
        target.write_text(document)
    return key


class Pseudonymiser:
    """Keyed pseudonyms: the same subject always maps to the same token per domain,
    and nobody without the key can link a token back to an identity number.

    With an epoch keyring, the audit domain's pseudonyms are ``<epoch>:<hex>`` under the
    current month's key, which ``broker.shredding`` destroys after the retention period;
    every other domain (``consent``) keeps the one long-lived key and ``k1:<hex>``.
    """

    def __init__(
        self, key: bytes, key_id: str = "k1", *, epochs: EpochKeyring | None = None
    ) -> None:
        self._key = key
        self.key_id = key_id
        self._epochs = epochs

    @staticmethod
    def _token(prefix: str, key: bytes, subject_id: str, domain: str) -> str:
        digest = hmac.new(key, f"{domain}\x00{subject_id}".encode(), hashlib.sha256)
        return f"{prefix}:{digest.hexdigest()}"

    def pseudonym(self, subject_id: str, domain: str = AUDIT_DOMAIN) -> str:
        """The subject's pseudonym to record now (audit: under the current epoch's key)."""
        if domain == AUDIT_DOMAIN and self._epochs is not None:
            epoch, key = self._epochs.current()
            return self._token(epoch, key, subject_id, domain)
        return self._token(self.key_id, self._key, subject_id, domain)

    def pseudonyms(self, subject_id: str, domain: str = AUDIT_DOMAIN) -> list[str]:
        """Every pseudonym the subject may be recorded under, newest key first.

        For the audit domain with epoch keys: one per live (not yet shredded) epoch, then
        the long-lived key's, which entries made before epoch keys carry. Look entries up
        under all of them (``EntryFilter.subject_pseudonyms``).
        """
        if domain == AUDIT_DOMAIN and self._epochs is not None:
            tokens = [self._token(e, k, subject_id, domain) for e, k in self._epochs.live()]
            tokens.append(self._token(self.key_id, self._key, subject_id, domain))
            return tokens
        return [self.pseudonym(subject_id, domain)]
