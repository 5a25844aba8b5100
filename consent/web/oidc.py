"""The portal's side of OpenID Connect: discovery, code exchange, ID token checks.

Against the development provider or a real one alike: the provider's metadata
comes from ``/.well-known/openid-configuration``, its keys from ``jwks_uri``
(fetched again once when a token names an unknown key, for key rotation), and
an ID token is accepted only if ``consent.tokens.IdTokenVerifier`` accepts it
(signature, issuer, audience, lifetime, subject) and its nonce is the one this
sign-in sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker import jws
from broker.errors import Unauthenticated
from consent.tokens import Citizen, IdTokenVerifier
from consent.web.errors import SignInFailed

TIMEOUT = 10.0


@dataclass(frozen=True)
class SignInStart:
    """What the portal keeps while the citizen is at the provider, and where to send them."""

    state: str
    nonce: str
    verifier: str
    url: str


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OpenIdProvider:
    """One trusted provider, reached over HTTPS."""

    def __init__(
        self,
        base_url: str,
        *,
        issuer: str,
        client_id: str,
        ca_file: Path | None = None,
        max_lifetime: int = 3600,
        leeway: int = 60,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.issuer = issuer
        self.client_id = client_id
        self._max_lifetime = max_lifetime
        self._leeway = leeway
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
        self._http = httpx.AsyncClient(verify=verify, timeout=TIMEOUT, follow_redirects=False)
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, Ed25519PublicKey] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed(f"the identity provider did not answer: {exc}") from exc
        if not isinstance(document, dict):
            raise SignInFailed("the identity provider sent something unexpected")
        return document

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            document = await self._get_json(f"{self.base_url}/.well-known/openid-configuration")
            if document.get("issuer") != self.issuer:
                raise SignInFailed("the identity provider names another issuer")
            if "S256" not in document.get("code_challenge_methods_supported", []):
                raise SignInFailed("the identity provider does not support PKCE S256")
            self._metadata = document
        return self._metadata

    async def _refresh_keys(self) -> dict[str, Ed25519PublicKey]:
        document = await self._get_json(str((await self.metadata())["jwks_uri"]))
        try:
            self._keys = jws.keys_from_jwks(document)
        except jws.JwsError as exc:
            raise SignInFailed("the identity provider's keys are malformed") from exc
        return self._keys

    async def start(self, redirect_uri: str, language: str) -> SignInStart:
        """A fresh ``state``, ``nonce`` and PKCE pair, and the authorization URL."""
        endpoint = str((await self.metadata())["authorization_endpoint"])
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "ui_locales": language,
            }
        )
        return SignInStart(state, nonce, verifier, f"{endpoint}?{query}")

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The ID token for an authorization code (public client: PKCE, no secret)."""
        endpoint = str((await self.metadata())["token_endpoint"])
        try:
            response = await self._http.post(
                endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "client_id": self.client_id,
                    "code_verifier": verifier,
                },
            )
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed(f"the token request failed: {exc}") from exc
        if response.status_code != 200 or not isinstance(document, dict):
            error = document.get("error") if isinstance(document, dict) else None
            raise SignInFailed(f"the identity provider refused the code: {error}")
        token = document.get("id_token")
        if not isinstance(token, str) or not token:
            raise SignInFailed("the identity provider sent no ID token")
        return token

    async def verify(self, token: str, nonce: str) -> Citizen:
        """The citizen an ID token vouches for, if it is valid and carries ``nonce``."""
        keys = self._keys or await self._refresh_keys()
        try:
            claims = jws.verify(token, keys, typ="JWT")
        except jws.JwsError:
            keys = await self._refresh_keys()  # the provider may have rotated its key
            try:
                claims = jws.verify(token, keys, typ="JWT")
            except jws.JwsError as exc:
                raise SignInFailed(f"the ID token is not valid: {exc}") from exc
        verifier = IdTokenVerifier(
            self.issuer,
            self.client_id,
            keys,
            max_lifetime=self._max_lifetime,
            leeway=self._leeway,
        )
        try:
            citizen = verifier.verify(token)
        except Unauthenticated as exc:
            raise SignInFailed(exc.message) from exc
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise SignInFailed("the ID token's nonce does not match this sign-in")
        return citizen
