"""Server-side sessions for the citizen portal.

The browser holds only a random session id in a ``__Host-`` cookie (Secure,
HttpOnly, SameSite=Lax, Path=/); the ID token, the pending sign-in (state,
nonce, PKCE verifier) and the CSRF token stay in this process. Signing out
deletes the session, so a copied cookie stops working at once. Sessions live in
memory: one portal process, or sticky sessions in front of several.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

COOKIE = "__Host-tillit-portal"
# A pending sign-in must come back from the identity provider within this time.
SIGN_IN_WINDOW = 600.0


@dataclass
class PendingSignIn:
    state: str
    nonce: str
    verifier: str
    started: float


@dataclass
class Flash:
    """A one-time message, kept as an i18n key so it shows in the current language."""

    key: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Person:
    """Someone the signed-in citizen may act for: themselves or a child in their care."""

    subject_id: str
    relation: str
    age: int


@dataclass
class Session:
    id: str
    csrf: str
    expires: float
    pending: PendingSignIn | None = None
    token: str = ""
    citizen: str = ""
    # Whom the citizen acts for: themselves, or a child in their care.
    subject: str = ""
    subject_age: int = 0
    people: list[Person] = field(default_factory=list)
    flashes: list[Flash] = field(default_factory=list)

    @property
    def signed_in(self) -> bool:
        return bool(self.token) and time.time() < self.expires

    @property
    def acting_as_guardian(self) -> bool:
        return self.signed_in and self.subject != self.citizen

    def flash(self, key: str, **values: str) -> None:
        self.flashes.append(Flash(key, dict(values)))

    def take_flashes(self) -> list[Flash]:
        flashes, self.flashes = self.flashes, []
        return flashes


class SessionStore:
    """Sessions by id, each ending at ``expires``; at most ``capacity`` at once."""

    def __init__(self, lifetime: float, capacity: int = 10_000) -> None:
        self.lifetime = lifetime
        self._capacity = capacity
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self) -> None:
        now = time.time()
        for sid in [s for s, session in self._sessions.items() if session.expires <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= self._capacity:
            # Evict the session closest to its end rather than refuse new visitors.
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.id]

    def create(self, lifetime: float | None = None) -> Session:
        self._sweep()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires=time.time() + (lifetime if lifetime is not None else self.lifetime),
        )
        self._sessions[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires <= time.time():
            del self._sessions[sid]
            return None
        return session

    def delete(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def rotate(self, session: Session, expires: float) -> Session:
        """A fresh id and CSRF token for ``session`` (on sign-in, against fixation)."""
        self.delete(session.id)
        fresh = self.create()
        fresh.expires = expires
        fresh.flashes = session.flashes
        return fresh
