"""ID tokens: who the citizen behind the portal is.

The broker accepts an OIDC-style ID token (a JWS signed with EdDSA) only from
the one configured identity provider: right issuer, right audience, a known
signing key, not expired, not issued in the future, not too long-lived, and a
subject that is a valid personal identity number. In the embedded default the
provider is ``tillit idp``; a real deployment trusts its national e-ID broker's
key set instead (``[identity] jwks``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker import jws, personnummer
from broker.errors import InvalidSubjectId, Unauthenticated


@dataclass(frozen=True)
class Citizen:
    """A signed-in person, as vouched for by the identity provider."""

    subject_id: str
    issuer: str
    expires_at: int


class IdTokenVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        max_lifetime: int = 3600,
        leeway: int = 60,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys = dict(keys)
        self._max_lifetime = max_lifetime
        self._leeway = leeway

    def verify(self, token: str, *, now: float | None = None) -> Citizen:
        """The citizen the token vouches for, or ``Unauthenticated`` saying why not."""
        try:
            claims = jws.verify(token, self._keys, typ="JWT")
        except jws.JwsError as exc:
            raise Unauthenticated(
                f"the ID token is not valid: {exc}", reason="ID_TOKEN_INVALID"
            ) from exc
        now = time.time() if now is None else now
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise Unauthenticated("the ID token lacks exp or iat", reason="ID_TOKEN_INVALID")
        if claims.get("iss") != self.issuer:
            raise Unauthenticated(
                "the ID token is from an untrusted issuer", reason="ID_TOKEN_INVALID"
            )
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise Unauthenticated("the ID token is not meant for Tillit", reason="ID_TOKEN_INVALID")
        if exp + self._leeway < now:
            raise Unauthenticated(
                "the ID token has expired; sign in again", reason="ID_TOKEN_EXPIRED"
            )
        if iat - self._leeway > now or exp - iat > self._max_lifetime:
            raise Unauthenticated(
                "the ID token's lifetime is not acceptable", reason="ID_TOKEN_INVALID"
            )
        try:
            subject = personnummer.normalize(str(claims.get("sub", "")))
        except InvalidSubjectId as exc:
            raise Unauthenticated(
                "the ID token's subject is not a personal identity number",
                reason="ID_TOKEN_INVALID",
            ) from exc
        return Citizen(subject, self.issuer, exp)


def bearer(metadata: Mapping[str, str] | None) -> str:
    """The token from an ``authorization: Bearer <token>`` header."""
    value = (metadata or {}).get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "a citizen's ID token is required (authorization: Bearer ...)",
            reason="ID_TOKEN_MISSING",
        )
    return token.strip()


def mint(
    key: Ed25519PrivateKey,
    subject_id: str,
    *,
    issuer: str,
    audience: str,
    lifetime: int = 600,
    nonce: str = "",
    now: int | None = None,
) -> str:
    """An ID token as the development identity provider issues it."""
    issued = int(time.time()) if now is None else now
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": personnummer.normalize(subject_id),
        "iat": issued,
        "auth_time": issued,
        "exp": issued + lifetime,
        "acr": "dev",
        "jti": secrets.token_urlsafe(12),
    }
    if nonce:
        claims["nonce"] = nonce
    return jws.sign(claims, key)
