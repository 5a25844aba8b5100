"""``tillit idp``: a development OpenID Connect provider. Not for production.

It signs in nobody for real: the person at the keyboard picks one of the
synthetic citizens (or types a synthetic personal identity number) and gets an
ID token for them. Everything else is the real shape of the authorization code
flow, so the portal does exactly what it would do against a national e-ID
broker: ``state``, ``nonce``, PKCE (S256 only), registered redirect URIs (any
port on loopback, RFC 8252 section 7.3), one-time codes that expire in a minute,
and EdDSA ID tokens signed with ``broker.keys.dev_idp_key``, whose JWK Set the
broker trusts.

    GET  /.well-known/openid-configuration
    GET  /jwks.json
    GET  /authorize        the sign-in page
    POST /authorize        the person chosen -> redirect with code and state
    POST /token            code + code_verifier -> id_token (public client)
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from broker import jws, personnummer
from broker.errors import InvalidSubjectId
from consent.web import i18n
from consent.web.pages import static_files, templates
from consent.web.security import CSP, SecurityHeaders, is_loopback

BROWSER_COOKIE = "__Host-tillit-idp"
REQUEST_LIFETIME = 600.0
_PKCE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
MAX_PENDING = 10_000


@dataclass(frozen=True)
class Persona:
    """A synthetic citizen offered on the sign-in page."""

    key: str
    subject_id: str
    age: int


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]

    def allows(self, redirect_uri: str) -> bool:
        """Exact match, or any loopback host and port for a registered loopback URI
        (RFC 8252 section 7.3), same path."""
        if redirect_uri in self.redirect_uris:
            return True
        asked = urlsplit(redirect_uri)
        if asked.scheme != "https" or not asked.hostname or not is_loopback(asked.hostname):
            return False
        for registered in map(urlsplit, self.redirect_uris):
            if (
                registered.scheme == asked.scheme
                and is_loopback(registered.hostname or "")
                and registered.path == asked.path
                and not asked.query
                and not asked.fragment
            ):
                return True
        return False


@dataclass
class IdpConfig:
    issuer: str
    base_url: str
    key: Ed25519PrivateKey
    clients: Mapping[str, Client]
    personas: Sequence[Persona] = ()
    token_lifetime: int = 900
    code_lifetime: int = 60


@dataclass
class _AuthRequest:
    client: Client
    redirect_uri: str
    state: str
    nonce: str
    challenge: str
    lang: str
    browser: str
    csrf: str
    expires: float


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    subject: str
    auth_time: int
    expires: float


@dataclass
class _State:
    requests: dict[str, _AuthRequest] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)

    def sweep(self) -> None:
        now = time.time()
        for rid in [r for r, req in self.requests.items() if req.expires <= now]:
            del self.requests[rid]
        for code in [c for c, grant in self.codes.items() if grant.expires <= now]:
            del self.codes[code]
        if len(self.requests) > MAX_PENDING:
            self.requests.clear()


class _AuthorizeError(Exception):
    """An OAuth error that can be sent back to the (already verified) redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def s256(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def create_idp_app(config: IdpConfig) -> Starlette:
    """The provider's ASGI app."""
    pages = templates()
    state = _State()

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        lang = context.setdefault("lang", i18n.DEFAULT_LANGUAGE)
        context.setdefault("t", i18n.Translator(lang))
        return pages.TemplateResponse(request, name, context, status_code=status)

    def error_page(request: Request, lang: str, message: str, status: int) -> Response:
        return page(request, "idp_error.html", {"lang": lang, "message": message}, status)

    async def discovery(request: Request) -> Response:
        base = config.base_url
        return JSONResponse(
            {
                "issuer": config.issuer,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks.json",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["EdDSA"],
                "scopes_supported": ["openid"],
                "claims_supported": [
                    "iss",
                    "aud",
                    "sub",
                    "iat",
                    "exp",
                    "auth_time",
                    "nonce",
                    "acr",
                ],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "ui_locales_supported": list(i18n.LANGUAGES),
                "acr_values_supported": ["dev"],
                "authorization_response_iss_parameter_supported": True,
            },
            headers={"cache-control": "public, max-age=300"},
        )

    async def jwks_document(request: Request) -> Response:
        return JSONResponse(
            jws.jwks([config.key.public_key()]), headers={"cache-control": "public, max-age=300"}
        )

    def redirect_error(req_uri: str, error: str, description: str, req_state: str) -> Response:
        params = {"error": error, "error_description": description, "iss": config.issuer}
        if req_state:
            params["state"] = req_state
        return RedirectResponse(_with_query(req_uri, params), status_code=303)

    def render_sign_in(
        request: Request, rid: str, req: _AuthRequest, problem: str = "", typed: str = ""
    ) -> Response:
        response = page(
            request,
            "idp_authorize.html",
            {
                "lang": req.lang,
                "rid": rid,
                "csrf": req.csrf,
                "client": req.client.name,
                "personas": config.personas,
                "problem": problem,
                "typed": typed,
            },
            400 if problem else 200,
        )
        # The form's post ends in a redirect to the client, which form-action must allow.
        response.headers["content-security-policy"] = CSP.replace(
            "form-action 'self'", f"form-action 'self' {_origin(req.redirect_uri)}"
        )
        return response

    async def authorize(request: Request) -> Response:
        q = request.query_params
        lang = i18n.language((q.get("ui_locales") or "").split(" ")[0])
        client = config.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None:
            return error_page(
                request, lang, i18n.text(lang, "idp_error_request", detail="unknown client_id"), 400
            )
        if not client.allows(redirect_uri):
            return error_page(
                request,
                lang,
                i18n.text(lang, "idp_error_request", detail="redirect_uri is not registered"),
                400,
            )
        req_state = q.get("state", "")
        try:
            if q.get("response_type") != "code":
                raise _AuthorizeError("unsupported_response_type", "only response_type=code")
            if "openid" not in q.get("scope", "").split():
                raise _AuthorizeError("invalid_scope", "scope must include openid")
            if q.get("code_challenge_method") != "S256":
                raise _AuthorizeError("invalid_request", "PKCE with S256 is required")
            if not _CHALLENGE.match(q.get("code_challenge", "")):
                raise _AuthorizeError("invalid_request", "code_challenge is malformed")
            if not req_state or len(req_state) > 512:
                raise _AuthorizeError("invalid_request", "state is required")
            nonce = q.get("nonce", "")
            if not nonce or len(nonce) > 512:
                raise _AuthorizeError("invalid_request", "nonce is required")
        except _AuthorizeError as exc:
            return redirect_error(redirect_uri, exc.error, exc.description, req_state)
        state.sweep()
        browser = request.cookies.get(BROWSER_COOKIE) or secrets.token_urlsafe(24)
        rid = secrets.token_urlsafe(24)
        req = _AuthRequest(
            client=client,
            redirect_uri=redirect_uri,
            state=req_state,
            nonce=nonce,
            challenge=q["code_challenge"],
            lang=lang,
            browser=browser,
            csrf=secrets.token_urlsafe(24),
            expires=time.time() + REQUEST_LIFETIME,
        )
        state.requests[rid] = req
        response = render_sign_in(request, rid, req)
        response.set_cookie(
            BROWSER_COOKIE, browser, secure=True, httponly=True, samesite="lax", path="/"
        )
        return response

    async def sign_in(request: Request) -> Response:
        form = await request.form()
        rid = str(form.get("rid", ""))
        req = state.requests.get(rid)
        if req is None or req.expires <= time.time():
            state.requests.pop(rid, None)
            lang = i18n.language(str(form.get("lang", "")))
            return error_page(request, lang, i18n.text(lang, "idp_error_expired"), 400)
        sent = str(form.get("csrf", ""))
        cookie = request.cookies.get(BROWSER_COOKIE, "")
        if not (
            hmac.compare_digest(sent.encode(), req.csrf.encode())
            and hmac.compare_digest(cookie.encode(), req.browser.encode())
        ):
            return error_page(request, req.lang, i18n.text(req.lang, "error_csrf"), 403)
        if "cancel" in form:
            del state.requests[rid]
            return redirect_error(
                req.redirect_uri, "access_denied", "the person cancelled", req.state
            )
        typed = str(form.get("pnr", "")).strip()
        chosen = str(form.get("subject", "")) or typed
        try:
            subject = personnummer.normalize(chosen)
        except InvalidSubjectId:
            return render_sign_in(
                request, rid, req, i18n.text(req.lang, "idp_error_pnr"), typed[:20]
            )
        if int(subject[8:11]) not in personnummer.SYNTHETIC_SERIALS:
            return render_sign_in(
                request, rid, req, i18n.text(req.lang, "idp_error_not_synthetic"), typed[:20]
            )
        del state.requests[rid]
        code = secrets.token_urlsafe(32)
        state.codes[code] = _Code(
            client_id=req.client.client_id,
            redirect_uri=req.redirect_uri,
            challenge=req.challenge,
            nonce=req.nonce,
            subject=subject,
            auth_time=int(time.time()),
            expires=time.time() + config.code_lifetime,
        )
        return RedirectResponse(
            _with_query(req.redirect_uri, {"code": code, "state": req.state, "iss": config.issuer}),
            status_code=303,
        )

    def token_error(error: str, description: str, status: int = 400) -> Response:
        return JSONResponse(
            {"error": error, "error_description": description},
            status_code=status,
            headers={"cache-control": "no-store", "pragma": "no-cache"},
        )

    async def token(request: Request) -> Response:
        if "authorization" in request.headers:
            return token_error("invalid_client", "only public clients (PKCE) are supported", 401)
        form = await request.form()
        if form.get("grant_type") != "authorization_code":
            return token_error("unsupported_grant_type", "only authorization_code")
        # One-time: the code is gone whatever happens next.
        grant = state.codes.pop(str(form.get("code", "")), None)
        if grant is None or grant.expires <= time.time():
            return token_error("invalid_grant", "the code is unknown, used or expired")
        if form.get("client_id") != grant.client_id:
            return token_error("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            return token_error("invalid_grant", "redirect_uri does not match")
        verifier = str(form.get("code_verifier", ""))
        if not _PKCE.match(verifier) or not hmac.compare_digest(s256(verifier), grant.challenge):
            return token_error("invalid_grant", "the PKCE code_verifier does not match")
        now = int(time.time())
        id_token = jws.sign(
            {
                "iss": config.issuer,
                "aud": grant.client_id,
                "sub": grant.subject,
                "iat": now,
                "exp": now + config.token_lifetime,
                "auth_time": grant.auth_time,
                "nonce": grant.nonce,
                "acr": "dev",
                "jti": secrets.token_urlsafe(12),
            },
            config.key,
        )
        return JSONResponse(
            {"id_token": id_token, "token_type": "Bearer", "expires_in": config.token_lifetime},
            headers={"cache-control": "no-store", "pragma": "no-cache"},
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        lang = i18n.DEFAULT_LANGUAGE
        key = "error_not_found" if status == 404 else "error_internal"
        return error_page(request, lang, i18n.text(lang, key), status)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/jwks.json", jwks_document, methods=["GET"]),
            Route("/authorize", authorize, methods=["GET"]),
            Route("/authorize", sign_in, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Mount("/static", app=static_files(), name="static"),
        ],
        middleware=[
            Middleware(
                SecurityHeaders, hsts=not is_loopback(urlsplit(config.base_url).hostname or "")
            )
        ],
        exception_handlers={HTTPException: not_found, Exception: not_found},
    )


def personas(population_size: int, today: dt.date | None = None) -> list[Persona]:
    """The synthetic citizens the sign-in page offers, one of each kind that matters."""
    from broker.providers import SyntheticPopulation

    day = today or dt.date.today()
    population = SyntheticPopulation(size=population_size)
    finders = (
        ("persona_guardian", population.an_adult_with_children),
        ("persona_child", population.a_child),
        ("persona_protected", population.a_protected_person),
        ("persona_adult", population.an_adult),
        ("persona_parent_on_leave", population.a_parent_on_leave),
        ("persona_sick", population.a_person_on_sick_leave),
    )
    found = []
    for key, finder in finders:
        try:
            pnr = finder()
        except LookupError:
            continue
        citizen = population.citizen(pnr)
        if citizen is not None:
            found.append(Persona(key, pnr, citizen.age_on(day)))
    return found
