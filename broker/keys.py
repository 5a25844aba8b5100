"""Key material kept in the data directory, never in the repository.

- ``pseudonym.key``: 32 random bytes for the keyed pseudonyms (HMAC-SHA256) that
  stand for subjects in the audit log and the consent store.
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
    and nobody without the key can link a token back to an identity number."""

    def __init__(self, key: bytes, key_id: str = "k1") -> None:
        self._key = key
        self.key_id = key_id

    def pseudonym(self, subject_id: str, domain: str = "audit") -> str:
        digest = hmac.new(self._key, f"{domain}\x00{subject_id}".encode(), hashlib.sha256)
        return f"{self.key_id}:{digest.hexdigest()}"
