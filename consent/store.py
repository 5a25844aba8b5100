"""Consents and explicit requests: grant, withdraw, list, and look up for an exchange.

A consent is a record plus an append-only history of events. Its state is
derived: withdrawn once a ``withdrawn`` event exists, expired once
``valid_until`` has passed, active otherwise. Withdrawal is a single committed
insert that every later lookup sees, so it takes effect at once: there is no
cache to go stale.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broker.errors import AlreadyExists, InvalidRequest, NotFound
from consent.models import ConsentEventRow, ConsentRow

MAX_VALIDITY = dt.timedelta(days=3 * 365)
DEFAULT_VALIDITY = dt.timedelta(days=365)


class ConsentKind(StrEnum):
    CONSENT = "consent"
    EXPLICIT_REQUEST = "explicit_request"
    WAIVER_OF_CONFIDENTIALITY = "waiver_of_confidentiality"


class ConsentState(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ConsentGrant:
    """What a citizen (or guardian) gives."""

    kind: ConsentKind
    requester: str
    service: str
    provider: str
    dataset: str
    purpose: str
    fields: tuple[str, ...]
    valid_until: dt.datetime | None = None
    notice_version: str = "1"
    language: str = "sv"
    given_by: str = "subject"
    method: str = "citizen-portal"
    jurisdiction: str = "SE"


@dataclass(frozen=True)
class Consent:
    id: str
    subject_key: str
    kind: ConsentKind
    requester: str
    service: str
    provider: str
    dataset: str
    purpose: str
    fields: tuple[str, ...]
    given_at: dt.datetime
    valid_from: dt.datetime
    valid_until: dt.datetime
    withdrawn_at: dt.datetime | None
    notice_version: str
    language: str
    given_by: str
    method: str
    jurisdiction: str

    def state(self, now: dt.datetime) -> ConsentState:
        if self.withdrawn_at is not None and self.withdrawn_at <= now:
            return ConsentState.WITHDRAWN
        if self.valid_until <= now:
            return ConsentState.EXPIRED
        return ConsentState.ACTIVE

    def policy_input(self) -> dict[str, object]:
        """The consent as the policy sees it (no subject identifier)."""

        def iso(t: dt.datetime | None) -> str | None:
            return None if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        return {
            "id": self.id,
            "kind": str(self.kind),
            "requester": self.requester,
            "service": self.service,
            "provider": self.provider,
            "dataset": self.dataset,
            "purpose": self.purpose,
            "fields": list(self.fields),
            "given_at": iso(self.given_at),
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "withdrawn_at": iso(self.withdrawn_at),
            "given_by": self.given_by,
            "explicit": self.kind is not ConsentKind.WAIVER_OF_CONFIDENTIALITY,
        }


def _withdrawn_subquery() -> sa.Subquery:
    return (
        sa.select(ConsentEventRow.consent_id, ConsentEventRow.at.label("withdrawn_at"))
        .where(ConsentEventRow.event == "withdrawn")
        .subquery()
    )


def _consent(row: Any, withdrawn_at: dt.datetime | None) -> Consent:
    if withdrawn_at is not None and withdrawn_at.tzinfo is None:
        withdrawn_at = withdrawn_at.replace(tzinfo=dt.UTC)
    return Consent(
        id=row.id,
        subject_key=row.subject_key,
        kind=ConsentKind(row.kind),
        requester=row.requester,
        service=row.service,
        provider=row.provider,
        dataset=row.dataset,
        purpose=row.purpose,
        fields=tuple(row.fields),
        given_at=row.given_at,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        withdrawn_at=withdrawn_at,
        notice_version=row.notice_version,
        language=row.language,
        given_by=row.given_by,
        method=row.method,
        jurisdiction=row.jurisdiction,
    )


_consents = ConsentRow.__table__
_events = ConsentEventRow.__table__
_FOR_EXCHANGE = (
    sa.select(
        *_consents.c,
        sa.select(sa.func.min(_events.c.at))
        .where(_events.c.consent_id == _consents.c.id, _events.c.event == "withdrawn")
        .scalar_subquery()
        .label("withdrawn_at"),
    )
    .where(
        _consents.c.subject_key == sa.bindparam("subject_key"),
        _consents.c.requester == sa.bindparam("requester"),
        _consents.c.purpose == sa.bindparam("purpose"),
    )
    .order_by(_consents.c.given_at)
)


class ConsentStore:
    """Consent records and their events in the SQL store."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._engine: AsyncEngine = sessions.kw["bind"]

    async def grant(self, subject_key: str, grant: ConsentGrant, actor: str) -> Consent:
        now = dt.datetime.now(dt.UTC)
        valid_until = grant.valid_until or now + DEFAULT_VALIDITY
        if valid_until <= now:
            raise InvalidRequest("valid_until must be in the future", reason="INVALID_VALIDITY")
        if valid_until - now > MAX_VALIDITY:
            raise InvalidRequest(
                "a consent may last at most three years", reason="INVALID_VALIDITY"
            )
        row = ConsentRow(
            id=str(uuid.uuid4()),
            subject_key=subject_key,
            kind=str(grant.kind),
            requester=grant.requester,
            service=grant.service,
            provider=grant.provider,
            dataset=grant.dataset,
            purpose=grant.purpose,
            fields=list(grant.fields),
            given_at=now,
            valid_from=now,
            valid_until=valid_until,
            notice_version=grant.notice_version,
            language=grant.language,
            given_by=grant.given_by,
            method=grant.method,
            jurisdiction=grant.jurisdiction,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
            await session.flush()
            session.add(ConsentEventRow(consent_id=row.id, event="given", at=now, actor=actor))
        return _consent(row, None)

    async def withdraw(self, subject_key: str, consent_id: str, actor: str) -> Consent:
        """Withdraw at once. Withdrawing twice is refused with ALREADY_EXISTS."""
        now = dt.datetime.now(dt.UTC)
        async with self._sessions() as session, session.begin():
            row = await session.get(ConsentRow, consent_id)
            # Someone else's consent looks exactly like a missing one.
            if row is None or row.subject_key != subject_key:
                raise NotFound("no such consent", reason="CONSENT_NOT_FOUND")
            session.add(ConsentEventRow(consent_id=row.id, event="withdrawn", at=now, actor=actor))
            try:
                await session.flush()
            except IntegrityError as exc:
                raise AlreadyExists(
                    "the consent is already withdrawn", reason="CONSENT_ALREADY_WITHDRAWN"
                ) from exc
        return _consent(row, now)

    async def get(self, subject_key: str, consent_id: str) -> Consent | None:
        """One of the subject's consents, or None (also for someone else's)."""
        withdrawn = _withdrawn_subquery()
        query = (
            sa.select(ConsentRow, withdrawn.c.withdrawn_at)
            .outerjoin(withdrawn, withdrawn.c.consent_id == ConsentRow.id)
            .where(ConsentRow.id == consent_id, ConsentRow.subject_key == subject_key)
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        return None if row is None else _consent(row[0], row[1])

    async def list(
        self, subject_key: str, *, page_size: int = 50, after: str = ""
    ) -> tuple[list[Consent], bool]:
        """The subject's consents, newest first by id order; returns (page, more)."""
        page_size = max(1, min(page_size or 50, 100))
        withdrawn = _withdrawn_subquery()
        query = (
            sa.select(ConsentRow, withdrawn.c.withdrawn_at)
            .outerjoin(withdrawn, withdrawn.c.consent_id == ConsentRow.id)
            .where(ConsentRow.subject_key == subject_key)
            .order_by(ConsentRow.given_at.desc(), ConsentRow.id)
            .limit(page_size + 1)
        )
        if after:
            async with self._sessions() as session:
                anchor = await session.get(ConsentRow, after)
            if anchor is None or anchor.subject_key != subject_key:
                raise InvalidRequest("page_token is not valid", reason="INVALID_PAGE_TOKEN")
            query = query.where(
                sa.or_(
                    ConsentRow.given_at < anchor.given_at,
                    sa.and_(ConsentRow.given_at == anchor.given_at, ConsentRow.id > anchor.id),
                )
            )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        consents = [_consent(r[0], r[1]) for r in rows[:page_size]]
        return consents, len(rows) > page_size

    async def for_exchange(
        self, subject_key: str, requester: str, purpose: str
    ) -> Sequence[Consent]:
        """Every consent (any state) this subject gave this requester for this purpose.

        On the hot path of every exchange: one prepared Core statement on a pooled
        connection, no ORM session or identity map.
        """
        async with self._engine.connect() as connection:
            result = await connection.execute(
                _FOR_EXCHANGE,
                {"subject_key": subject_key, "requester": requester, "purpose": purpose},
            )
            rows = result.all()
        return [_consent(row, row.withdrawn_at) for row in rows]
