"""``tillit portal``: the citizen's web page. Starlette, Jinja2 (autoescaped), no JavaScript.

A citizen signs in at the identity provider (authorization code flow with PKCE),
then sees their consents, reads a purpose's notice and gives an explicit request,
consent or waiver, downloads signed receipts, withdraws with one click, sees every
exchange of their data, and, as a guardian, acts for a child under 18. Every page
only translates: the broker's ``ConsentService`` (over mutual TLS, as
"citizen-portal", with the citizen's ID token) does the work and the checking.

    GET  /                          welcome (signed out) or -> /consents
    GET  /login, /auth/callback     sign-in
    POST /logout
    GET  /consents                  my consents
    GET  /consents/{id}             receipt, readable; /consents/{id}/receipt the JWS file
    POST /consents/{id}/withdraw
    GET  /give                      what can be given; /give/{purpose}/{agency}/{service}/{dataset}
    POST /give/...                  the notice's form: grant
    GET  /timeline                  who accessed my data and why
    GET  /people, POST /people      act for yourself or a child
    GET  /language/{sv|en}
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from broker import jws
from broker.client import BrokerClient, CallError
from consent.notices import Labels, Notices, Offer, lawful_basis, load_registry, offers
from consent.receipts import verify_receipt
from consent.web import i18n
from consent.web.errors import (
    BadRequest,
    BrokerRefused,
    PageError,
    PageNotFound,
    ReceiptInvalid,
    SignInFailed,
    SignInRequired,
    page_error,
    title_key,
)
from consent.web.oidc import OpenIdProvider
from consent.web.pages import static_files, templates
from consent.web.security import CSRF_FIELD, SecurityHeaders, checked_form, is_loopback
from consent.web.sessions import (
    COOKIE,
    SIGN_IN_WINDOW,
    PendingSignIn,
    Person,
    Session,
    SessionStore,
)

LANG_COOKIE = "__Host-tillit-lang"
VALIDITY_DAYS = {"3": 91, "12": 365, "36": 1094}
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_EVENT_PAGES = 10
T = TypeVar("T")

try:
    LOCAL_TIME: dt.tzinfo = ZoneInfo("Europe/Stockholm")
except ZoneInfoNotFoundError:  # no tz database: show UTC rather than fail
    LOCAL_TIME = dt.UTC


@dataclass(frozen=True)
class PortalConfig:
    base_url: str
    policies: Path
    session_lifetime: int = 1800


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def local(value: dt.datetime | None, with_time: bool = True) -> str:
    if value is None:
        return ""
    shown = value.astimezone(LOCAL_TIME)
    return shown.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def _kind(value: str) -> str:
    return value.removeprefix("CONSENT_KIND_").lower()


def _state(value: str) -> str:
    return value.removeprefix("CONSENT_STATE_").lower()


@dataclass(frozen=True)
class ConsentView:
    id: str
    kind: str
    purpose: str
    agency: str
    service: str
    provider: str
    dataset: str
    fields: tuple[str, ...]
    given_at: dt.datetime | None
    valid_until: dt.datetime | None
    withdrawn_at: dt.datetime | None
    state: str
    given_by: str

    @classmethod
    def of(cls, raw: dict[str, Any]) -> ConsentView:
        return cls(
            id=str(raw.get("id", "")),
            kind=_kind(str(raw.get("kind", ""))),
            purpose=str(raw.get("purpose", "")),
            agency=str(raw.get("requester", "")),
            service=str(raw.get("service", "")),
            provider=str(raw.get("provider", "")),
            dataset=str(raw.get("dataset", "")),
            fields=tuple(raw.get("fields", [])),
            given_at=parse_time(raw.get("given_at")),
            valid_until=parse_time(raw.get("valid_until")),
            withdrawn_at=parse_time(raw.get("withdrawn_at")),
            state=_state(str(raw.get("state", ""))),
            given_by=str(raw.get("given_by", "")),
        )

    def covers(self, offer: Offer) -> bool:
        return (self.purpose, self.agency, self.service, self.dataset) == (
            offer.purpose,
            offer.agency,
            offer.service,
            offer.dataset,
        )


@dataclass(frozen=True)
class EventView:
    index: int
    time: dt.datetime | None
    agency: str
    service: str
    provider: str
    dataset: str
    purpose: str
    fields: tuple[str, ...]
    allowed: bool
    reasons: tuple[tuple[str, str], ...]
    case_reference: str

    @classmethod
    def of(cls, raw: dict[str, Any]) -> EventView:
        return cls(
            index=int(raw.get("audit_index", 0) or 0),
            time=parse_time(raw.get("time")),
            agency=str(raw.get("requester", "")),
            service=str(raw.get("service", "")),
            provider=str(raw.get("provider", "")),
            dataset=str(raw.get("dataset", "")),
            purpose=str(raw.get("purpose", "")),
            fields=tuple(raw.get("fields", [])),
            allowed=raw.get("outcome") == "allow",
            reasons=tuple(
                (str(r.get("code", "")), str(r.get("message", ""))) for r in raw.get("reasons", [])
            ),
            case_reference=str(raw.get("case_reference", "")),
        )


class CanonicalHost:
    """Serve under one host name only, so cookies and the redirect URI always agree."""

    def __init__(self, app: ASGIApp, *, base_url: str) -> None:
        self.app = app
        self.netloc = urlsplit(base_url).netloc
        self.base_url = base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if host != self.netloc:
                method = scope.get("method", "GET")
                location = self.base_url + str(scope.get("path", "/"))
                response: Response = (
                    RedirectResponse(location, status_code=308)
                    if method in ("GET", "HEAD")
                    else Response("wrong host", status_code=400)
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _still_active(record: dict[str, Any]) -> bool:
    until = parse_time(record.get("valid_until"))
    return not record.get("withdrawn_at") and until is not None and until > dt.datetime.now(dt.UTC)


def _safe_next(value: str | None) -> str:
    """A local path to return to, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def create_portal_app(
    config: PortalConfig, broker: BrokerClient, provider: OpenIdProvider
) -> Starlette:
    """The portal's ASGI app, calling ``broker`` and signing in at ``provider``."""
    pages = templates()
    sessions = SessionStore(config.session_lifetime)
    notices = Notices.load()
    labels = Labels.load()
    purposes, datasets = load_registry(config.policies)
    all_offers = offers(purposes, datasets)
    offers_by_path = {o.path: o for o in all_offers}
    receipt_keys: dict[str, Any] = {}
    redirect_uri = f"{config.base_url}/auth/callback"

    # -- helpers -----------------------------------------------------------------------

    def lang_of(request: Request) -> str:
        return i18n.language(request.cookies.get(LANG_COOKIE))

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def signed_in(request: Request) -> Session:
        session = session_of(request)
        if session is None or not session.signed_in:
            raise SignInRequired("sign in first")
        return session

    def set_session_cookie(response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE, session.id, secure=True, httponly=True, samesite="lax", path="/"
        )

    def basis_of(purpose: str) -> str:
        entry = purposes.get(purpose)
        return lawful_basis(entry) if isinstance(entry, dict) else ""

    def render(
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        session: Session | None = None,
    ) -> Response:
        lang = lang_of(request)
        session = session if session is not None else session_of(request)
        active = session if session is not None and session.signed_in else None

        def label(kind: str, key: str) -> str:
            return labels.name(kind, key, lang)

        context.update(
            lang=lang,
            other_lang="en" if lang == "sv" else "sv",
            t=i18n.Translator(lang),
            label=label,
            session=active,
            csrf_field=CSRF_FIELD,
            csrf=active.csrf if active else "",
            path=request.url.path,
            flashes=[
                i18n.text(lang, f.key, **f.values)
                for f in (active.take_flashes() if active else [])
            ],
            local=local,
            reason=lambda code, message: i18n.policy_reason(lang, code, message),
            has_children=bool(active and len(active.people) > 1),
        )
        context.setdefault("nav", "")
        return pages.TemplateResponse(request, name, context, status_code=status)

    async def call(session: Session, action: Callable[[], Awaitable[T]]) -> T:
        try:
            return await action()
        except CallError as exc:
            error = BrokerRefused(exc)
            if error.needs_sign_in:
                sessions.delete(session.id)
            raise error from None

    async def keys_for_receipts(session: Session, kid_needed: str) -> dict[str, Any]:
        if kid_needed not in receipt_keys:
            document = await call(session, lambda: broker.receipt_keys(token=session.token))
            receipt_keys.clear()
            receipt_keys.update(jws.keys_from_jwks(document))
        return receipt_keys

    async def verified_receipt(session: Session, token: str) -> tuple[dict[str, Any], str]:
        try:
            header = json.loads(jws.b64url_decode(token.split(".")[0]))
            kid = str(header.get("kid", "")) if isinstance(header, dict) else ""
            keys = await keys_for_receipts(session, kid)
            return verify_receipt(token, keys), kid
        except (jws.JwsError, ValueError, IndexError) as exc:
            raise ReceiptInvalid(str(exc)) from exc

    async def load_people(session: Session) -> list[Person]:
        document = await call(session, lambda: broker.list_subjects(token=session.token))
        found = [
            Person(str(s["subject_id"]), str(s.get("relation", "")), int(s.get("age", 0)))
            for s in document.get("subjects", [])
        ]
        session.people = found
        return found

    # -- pages -------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        session = session_of(request)
        if session is not None and session.signed_in:
            return RedirectResponse("/consents", status_code=303)
        signed_out = request.query_params.get("signed_out") == "1"
        return render(request, "home.html", {"nav": "home", "signed_out": signed_out})

    async def login(request: Request) -> Response:
        start = await provider.start(redirect_uri, lang_of(request))
        session = session_of(request) or sessions.create(SIGN_IN_WINDOW)
        session.pending = PendingSignIn(start.state, start.nonce, start.verifier, time.time())
        response = RedirectResponse(start.url, status_code=303)
        set_session_cookie(response, session)
        return response

    async def callback(request: Request) -> Response:
        session = session_of(request)
        pending = session.pending if session else None
        if session is None or pending is None:
            raise SignInFailed("no sign-in is pending in this browser")
        session.pending = None  # one attempt per state
        q = request.query_params
        if time.time() - pending.started > SIGN_IN_WINDOW:
            raise SignInFailed("the sign-in took too long")
        if not hmac.compare_digest(q.get("state", "").encode(), pending.state.encode()):
            raise SignInFailed("state does not match")
        if q.get("iss") not in (None, provider.issuer):
            raise SignInFailed("the answer is from another issuer")
        if "error" in q:
            key = "error_sign_in_cancelled" if q["error"] == "access_denied" else ""
            raise SignInFailed(q["error"], key or "error_sign_in_failed")
        id_token = await provider.exchange(q.get("code", ""), pending.verifier, redirect_uri)
        citizen = await provider.verify(id_token, pending.nonce)
        fresh = sessions.rotate(
            session, expires=min(citizen.expires_at, time.time() + config.session_lifetime)
        )
        fresh.token = id_token
        fresh.citizen = fresh.subject = citizen.subject_id
        try:
            found = await load_people(fresh)
            me = next((p for p in found if p.relation == "self"), None)
            fresh.subject_age = me.age if me else 0
        except PageError:
            fresh.people = []
        response = RedirectResponse("/consents", status_code=303)
        set_session_cookie(response, fresh)
        return response

    async def logout(request: Request) -> Response:
        session = session_of(request)
        await checked_form(request, session.csrf if session else None)
        assert session is not None
        sessions.delete(session.id)
        response = RedirectResponse("/?signed_out=1", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        return response

    async def consents(request: Request) -> Response:
        session = signed_in(request)
        page_token = request.query_params.get("page", "")
        document = await call(
            session,
            lambda: broker.list_consents(
                session.subject, page_size=100, page_token=page_token, token=session.token
            ),
        )
        views = [ConsentView.of(c) for c in document.get("consents", [])]
        groups = {
            state: [v for v in views if v.state == state]
            for state in ("active", "withdrawn", "expired")
        }
        return render(
            request,
            "consents.html",
            {"nav": "consents", "groups": groups, "next_page": document.get("next_page_token")},
            session=session,
        )

    async def withdraw(request: Request) -> Response:
        session = session_of(request)
        await checked_form(request, session.csrf if session and session.signed_in else None)
        assert session is not None
        consent_id = request.path_params["consent_id"]
        if not _ID.match(consent_id):
            raise PageNotFound(consent_id)
        await call(
            session, lambda: broker.withdraw(session.subject, consent_id, token=session.token)
        )
        session.flash("flash_withdrawn")
        return RedirectResponse(f"/consents/{consent_id}", status_code=303)

    async def receipt_page(request: Request) -> Response:
        session = signed_in(request)
        consent_id = request.path_params["consent_id"]
        if not _ID.match(consent_id):
            raise PageNotFound(consent_id)
        given = await call(
            session,
            lambda: broker.get_receipt(session.subject, consent_id, "given", token=session.token),
        )
        content, kid = await verified_receipt(session, given)
        withdrawn_content = None
        if content.get("record", {}).get("withdrawn_at"):
            withdrawn = await call(
                session,
                lambda: broker.get_receipt(
                    session.subject, consent_id, "withdrawn", token=session.token
                ),
            )
            withdrawn_content, _ = await verified_receipt(session, withdrawn)
        record = content.get("record", {})
        return render(
            request,
            "receipt.html",
            {
                "nav": "consents",
                "consent_id": consent_id,
                "receipt": content,
                "record": record,
                "kid": kid,
                "withdrawn": withdrawn_content,
                "given_at": parse_time(record.get("given_at")),
                "valid_from": parse_time(record.get("valid_from")),
                "valid_until": parse_time(record.get("valid_until")),
                "withdrawn_at": parse_time(record.get("withdrawn_at")),
                "still_active": _still_active(record),
            },
            session=session,
        )

    async def receipt_file(request: Request) -> Response:
        session = signed_in(request)
        consent_id = request.path_params["consent_id"]
        event = request.query_params.get("event", "given")
        if not _ID.match(consent_id) or event not in ("given", "withdrawn"):
            raise PageNotFound(consent_id)
        token = await call(
            session,
            lambda: broker.get_receipt(session.subject, consent_id, event, token=session.token),
        )
        suffix = "" if event == "given" else "-withdrawn"
        return Response(
            token + "\n",
            media_type="application/jose",
            headers={
                "content-disposition": f'attachment; filename="receipt-{consent_id}{suffix}.jws"'
            },
        )

    async def give(request: Request) -> Response:
        session = signed_in(request)
        document = await call(
            session,
            lambda: broker.list_consents(session.subject, page_size=100, token=session.token),
        )
        active = [ConsentView.of(c) for c in document.get("consents", [])]
        active = [c for c in active if c.state == "active"]
        by_purpose: dict[str, list[tuple[Offer, bool]]] = {}
        for offer in all_offers:
            by_purpose.setdefault(offer.purpose, []).append(
                (offer, any(c.covers(offer) for c in active))
            )
        return render(
            request, "give.html", {"nav": "give", "by_purpose": by_purpose}, session=session
        )

    def offer_of(request: Request) -> Offer:
        p = request.path_params
        parts = [p["purpose"], p["agency"], p["service"], p["dataset"]]
        if not all(_SLUG.match(part) for part in parts):
            raise PageNotFound("offer")
        offer = offers_by_path.get("/".join(parts))
        if offer is None or notices.latest(offer.purpose) is None:
            raise PageNotFound("offer")
        return offer

    def notice_page(
        request: Request, session: Session, offer: Offer, *, problem: bool = False
    ) -> Response:
        notice = notices.latest(offer.purpose)
        assert notice is not None
        lang = lang_of(request)
        return render(
            request,
            "notice.html",
            {
                "nav": "give",
                "offer": offer,
                "notice": notice,
                "text": notice.text(lang),
                "problem": problem,
            },
            status=400 if problem else 200,
            session=session,
        )

    async def notice(request: Request) -> Response:
        session = signed_in(request)
        return notice_page(request, session, offer_of(request))

    async def grant(request: Request) -> Response:
        session = session_of(request)
        form = await checked_form(request, session.csrf if session and session.signed_in else None)
        assert session is not None
        offer = offer_of(request)
        notice = notices.latest(offer.purpose)
        assert notice is not None
        if form.get("confirm") != "yes":
            return notice_page(request, session, offer, problem=True)
        if form.get("notice_version") != notice.version:
            raise BadRequest("the notice has changed since the page was shown")
        days = VALIDITY_DAYS.get(str(form.get("validity", "12")))
        if days is None:
            raise BadRequest("unknown validity")
        lang = lang_of(request)
        valid_until = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        result = await call(
            session,
            lambda: broker.grant(
                session.subject,
                kind=offer.kind,
                requester=offer.agency,
                service=offer.service,
                dataset=offer.dataset,
                fields=list(offer.fields),
                purpose=offer.purpose,
                valid_until=valid_until,
                language=lang,
                notice_version=notice.version,
                token=session.token,
            ),
        )
        session.flash(
            "flash_given",
            kind=i18n.text(lang, f"kind_lower_{offer.kind}"),
            until=local(parse_time(result.get("valid_until")), with_time=False),
        )
        return RedirectResponse(f"/consents/{result['id']}", status_code=303)

    async def timeline(request: Request) -> Response:
        session = signed_in(request)
        events: list[EventView] = []
        page_token = ""
        for _ in range(MAX_EVENT_PAGES):

            async def page(after: str = page_token) -> dict[str, Any]:
                return await broker.access_events(
                    session.subject, page_size=100, page_token=after, token=session.token
                )

            document = await call(session, page)
            events += [EventView.of(e) for e in document.get("events", [])]
            page_token = str(document.get("next_page_token", ""))
            if not page_token:
                break
        events.sort(key=lambda e: e.index, reverse=True)
        return render(
            request,
            "timeline.html",
            {"nav": "timeline", "events": events, "basis_of": basis_of},
            session=session,
        )

    async def people_page(request: Request) -> Response:
        session = signed_in(request)
        found = await load_people(session)
        return render(request, "people.html", {"nav": "people", "people": found}, session=session)

    async def choose_person(request: Request) -> Response:
        session = session_of(request)
        form = await checked_form(request, session.csrf if session and session.signed_in else None)
        assert session is not None
        found = await load_people(session)
        chosen = next((p for p in found if p.subject_id == form.get("subject")), None)
        if chosen is None:
            raise BadRequest("not someone you may act for")
        session.subject, session.subject_age = chosen.subject_id, chosen.age
        return RedirectResponse("/consents", status_code=303)

    async def switch_language(request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang not in i18n.LANGUAGES:
            raise PageNotFound(lang)
        response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            secure=True,
            httponly=True,
            samesite="lax",
            path="/",
        )
        return response

    # -- errors: every failure becomes one page, with the status from errors.py ---------

    async def error_page(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            error: PageError = PageNotFound("route") if exc.status_code == 404 else BadRequest("")
            if exc.status_code == 405:
                error.status = 405
        else:
            error = page_error(exc)
        lang = lang_of(request)
        session = session_of(request)
        sign_in = isinstance(error, SignInRequired | SignInFailed) or (
            isinstance(error, BrokerRefused) and error.needs_sign_in
        )
        response = render(
            request,
            "error.html",
            {
                "title": i18n.text(lang, title_key(error.status)),
                "message": error.sentence(lang),
                "code": error.code,
                "sign_in": sign_in,
            },
            status=error.status,
            session=session,
        )
        if sign_in and (session is None or not session.signed_in):
            response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        return response

    host = urlsplit(config.base_url).hostname or ""
    offer_path = "/give/{purpose}/{agency}/{service}/{dataset}"
    return Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/login", login, methods=["GET"]),
            Route("/auth/callback", callback, methods=["GET"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/consents", consents, methods=["GET"]),
            Route("/consents/{consent_id}", receipt_page, methods=["GET"]),
            Route("/consents/{consent_id}/receipt", receipt_file, methods=["GET"]),
            Route("/consents/{consent_id}/withdraw", withdraw, methods=["POST"]),
            Route("/give", give, methods=["GET"]),
            Route(offer_path, notice, methods=["GET"]),
            Route(offer_path, grant, methods=["POST"]),
            Route("/timeline", timeline, methods=["GET"]),
            Route("/people", people_page, methods=["GET"]),
            Route("/people", choose_person, methods=["POST"]),
            Route("/language/{lang}", switch_language, methods=["GET"]),
            Mount("/static", app=static_files(), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders, hsts=not is_loopback(host)),
            Middleware(CanonicalHost, base_url=config.base_url),
        ],
        exception_handlers={
            HTTPException: error_page,
            PageError: error_page,
            CallError: error_page,
            Exception: error_page,
        },
    )
