"""The development identity provider's code flow, through its ASGI app (no sockets)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import jws, personnummer
from consent.tokens import IdTokenVerifier
from consent.web.idp import Client, IdpConfig, Persona, create_idp_app, s256
from consent.web.oidc import pkce_pair

BASE = "https://idp.test"
CLIENT = "tillit-citizen-portal"
REDIRECT = "https://127.0.0.1:8443/auth/callback"
SUBJECT = "198507179862"
_HIDDEN = re.compile(r'name="(rid|csrf)" value="([^"]*)"')


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_client(key: Ed25519PrivateKey, code_lifetime: int = 60) -> httpx.AsyncClient:
    app = create_idp_app(
        IdpConfig(
            issuer="tillit-dev-idp",
            base_url=BASE,
            key=key,
            clients={CLIENT: Client(CLIENT, "Tillit", (REDIRECT,))},
            personas=[Persona("persona_guardian", SUBJECT, 41)],
            token_lifetime=900,
            code_lifetime=code_lifetime,
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
async def idp(key: Ed25519PrivateKey) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(key) as client:
        yield client


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "ui_locales": "en",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v}


async def sign_in(
    idp: httpx.AsyncClient, challenge: str, subject: str = SUBJECT, **overrides: str
) -> httpx.Response:
    page = await idp.get("/authorize", params=authorize_params(challenge, **overrides))
    assert page.status_code == 200, page.text
    fields = dict(_HIDDEN.findall(page.text))
    return await idp.post("/authorize", data={**fields, "subject": subject})


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def redeem(idp: httpx.AsyncClient, code: str, verifier: str, **overrides: str) -> Any:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT,
        "code_verifier": verifier,
    }
    form.update(overrides)
    return await idp.post("/token", data=form)


async def test_discovery_and_keys_describe_the_provider(
    idp: httpx.AsyncClient, key: Ed25519PrivateKey
) -> None:
    document = (await idp.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == "tillit-dev-idp"
    assert document["authorization_endpoint"] == f"{BASE}/authorize"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["id_token_signing_alg_values_supported"] == ["EdDSA"]
    keys = jws.keys_from_jwks((await idp.get("/jwks.json")).json())
    assert list(keys) == [jws.key_id(key.public_key())]


async def test_code_flow_issues_an_id_token_the_broker_accepts(
    idp: httpx.AsyncClient, key: Ed25519PrivateKey
) -> None:
    verifier, challenge = pkce_pair()
    assert s256(verifier) == challenge
    answer = query(await sign_in(idp, challenge))
    assert answer["state"] == "the-state"
    assert answer["iss"] == "tillit-dev-idp"
    response = await redeem(idp, answer["code"], verifier)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    token = response.json()["id_token"]
    claims = jws.verify(token, {jws.key_id(key.public_key()): key.public_key()}, typ="JWT")
    assert claims["sub"] == SUBJECT
    assert claims["aud"] == CLIENT
    assert claims["nonce"] == "the-nonce"
    assert claims["acr"] == "dev"
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    assert claims["auth_time"] <= claims["iat"]
    verifier_of_broker = IdTokenVerifier(
        "tillit-dev-idp", CLIENT, {jws.key_id(key.public_key()): key.public_key()}
    )
    assert verifier_of_broker.verify(token).subject_id == SUBJECT


async def test_a_code_works_once(idp: httpx.AsyncClient) -> None:
    verifier, challenge = pkce_pair()
    code = query(await sign_in(idp, challenge))["code"]
    assert (await redeem(idp, code, verifier)).status_code == 200
    again = await redeem(idp, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_a_wrong_verifier_fails_and_burns_the_code(idp: httpx.AsyncClient) -> None:
    verifier, challenge = pkce_pair()
    code = query(await sign_in(idp, challenge))["code"]
    other, _ = pkce_pair()
    assert (await redeem(idp, code, other)).json()["error"] == "invalid_grant"
    assert (await redeem(idp, code, verifier)).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "override",
    [{"redirect_uri": "https://127.0.0.1:8443/elsewhere"}, {"client_id": "someone-else"}],
)
async def test_the_code_is_bound_to_client_and_redirect(
    idp: httpx.AsyncClient, override: dict[str, str]
) -> None:
    verifier, challenge = pkce_pair()
    code = query(await sign_in(idp, challenge))["code"]
    assert (await redeem(idp, code, verifier, **override)).json()["error"] == "invalid_grant"


async def test_an_expired_code_is_refused(key: Ed25519PrivateKey) -> None:
    async with make_client(key, code_lifetime=0) as idp:
        verifier, challenge = pkce_pair()
        code = query(await sign_in(idp, challenge))["code"]
        assert (await redeem(idp, code, verifier)).json()["error"] == "invalid_grant"


async def test_confidential_client_authentication_is_not_offered(idp: httpx.AsyncClient) -> None:
    response = await idp.post("/token", data={}, headers={"authorization": "Basic eDp5"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_unregistered_redirect_is_shown_not_followed(idp: httpx.AsyncClient) -> None:
    _, challenge = pkce_pair()
    for uri in ("https://evil.example/auth/callback", "http://127.0.0.1:8443/auth/callback"):
        page = await idp.get("/authorize", params=authorize_params(challenge, redirect_uri=uri))
        assert page.status_code == 400
        assert "location" not in page.headers


async def test_any_loopback_port_is_accepted_for_a_loopback_client(
    idp: httpx.AsyncClient,
) -> None:
    _, challenge = pkce_pair()
    other = "https://localhost:40000/auth/callback"
    answer = query(await sign_in(idp, challenge, redirect_uri=other))
    assert "code" in answer


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"nonce": ""}, "invalid_request"),
        ({"state": ""}, "invalid_request"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_bad_requests_go_back_to_the_client_with_an_error(
    idp: httpx.AsyncClient, override: dict[str, str], error: str
) -> None:
    _, challenge = pkce_pair()
    response = await idp.get("/authorize", params=authorize_params(challenge, **override))
    assert query(response)["error"] == error


async def test_the_sign_in_form_needs_its_token_and_browser(idp: httpx.AsyncClient) -> None:
    _, challenge = pkce_pair()
    page = await idp.get("/authorize", params=authorize_params(challenge))
    fields = dict(_HIDDEN.findall(page.text))
    wrong = await idp.post("/authorize", data={**fields, "csrf": "x", "subject": SUBJECT})
    assert wrong.status_code == 403
    idp.cookies.clear()
    no_cookie = await idp.post("/authorize", data={**fields, "subject": SUBJECT})
    assert no_cookie.status_code == 403


async def test_only_valid_synthetic_numbers_sign_in(idp: httpx.AsyncClient) -> None:
    _, challenge = pkce_pair()
    invalid = await sign_in(idp, challenge, subject="19850717-9863")
    assert invalid.status_code == 400
    assert "not a valid personal identity number" in invalid.text
    real_looking = await sign_in(
        idp, challenge, subject="19850717-123" + personnummer.check_digit("850717123")
    )
    assert real_looking.status_code == 400
    assert "only synthetic numbers" in real_looking.text


async def test_cancelling_tells_the_client(idp: httpx.AsyncClient) -> None:
    _, challenge = pkce_pair()
    page = await idp.get("/authorize", params=authorize_params(challenge))
    fields = dict(_HIDDEN.findall(page.text))
    answer = query(await idp.post("/authorize", data={**fields, "cancel": "1"}))
    assert answer == {
        "error": "access_denied",
        "error_description": "the person cancelled",
        "iss": "tillit-dev-idp",
        "state": "the-state",
    }


async def test_pages_say_development_only_and_send_strict_headers(
    idp: httpx.AsyncClient,
) -> None:
    _, challenge = pkce_pair()
    page = await idp.get("/authorize", params=authorize_params(challenge))
    assert "not for production" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "form-action 'self' https://127.0.0.1:8443" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "__Host-tillit-idp=" in page.headers["set-cookie"]
    assert "Secure" in page.headers["set-cookie"]
    assert "HttpOnly" in page.headers["set-cookie"]
