"""JSON Web Signatures (RFC 7515) with Ed25519 only (RFC 8037 ``EdDSA``), strictly.

Used for consent receipts and for ID tokens. Only the compact serialisation,
only ``alg: EdDSA``, only known key ids: no algorithm negotiation, no embedded
keys, no ``none``. Keys travel as JWK Sets (RFC 7517) of ``OKP``/``Ed25519`` keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_TOKEN = 64 * 1024


class JwsError(ValueError):
    """A token that is malformed, unsigned by a known key, or otherwise not acceptable."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise JwsError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw_public(key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


def jwk(key: Ed25519PublicKey, use: str = "sig") -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw_public(key)),
        "kid": key_id(key),
        "alg": "EdDSA",
        "use": use,
    }


def jwks(keys: list[Ed25519PublicKey]) -> dict[str, Any]:
    return {"keys": [jwk(k) for k in keys]}


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key, for every Ed25519 key in a JWK Set."""
    found: dict[str, Ed25519PublicKey] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise JwsError("a JWK Set needs a 'keys' list")
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise JwsError("a JWK must be an object")
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        raw = b64url_decode(str(entry.get("x", "")))
        if len(raw) != 32:
            raise JwsError("an Ed25519 key is 32 bytes")
        key = Ed25519PublicKey.from_public_bytes(raw)
        found[str(entry.get("kid") or key_id(key))] = key
    return found


def load_jwks(path: Path) -> dict[str, Ed25519PublicKey]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JwsError(f"cannot read the key set {path.name}") from exc
    return keys_from_jwks(document)


def sign(payload: Mapping[str, Any], key: Ed25519PrivateKey, *, typ: str = "JWT") -> str:
    """Compact JWS of ``payload`` (JSON, sorted keys) signed with ``key``."""
    header = {"alg": "EdDSA", "kid": key_id(key.public_key()), "typ": typ}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        + "."
        + b64url(
            json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        )
    )
    return signing_input + "." + b64url(key.sign(signing_input.encode("ascii")))


def verify(
    token: str, keys: Mapping[str, Ed25519PublicKey], *, typ: str | None = None
) -> dict[str, Any]:
    """The payload of ``token`` if it is validly signed by one of ``keys``."""
    if len(token) > MAX_TOKEN:
        raise JwsError("token too large")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwsError("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwsError("malformed JWS") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JwsError("malformed JWS")
    if header.get("alg") != "EdDSA":
        raise JwsError("only EdDSA is accepted")
    if set(header) - {"alg", "kid", "typ"}:
        raise JwsError("unsupported JWS header parameter")
    if typ is not None and header.get("typ") != typ:
        raise JwsError(f"expected a {typ}")
    key = keys.get(str(header.get("kid", "")))
    if key is None:
        raise JwsError("signed by an unknown key")
    try:
        key.verify(b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature as exc:
        raise JwsError("bad signature") from exc
    return payload
