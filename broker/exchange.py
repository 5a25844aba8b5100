"""One once-only exchange, step by step (product brief, "One exchange").

1. validate the request (identity number, dataset, fields, purpose, references);
2. load the subject's consents for this requester and purpose, and the facts the
   policy needs (age, protected identity), concurrently;
3. ask OPA for a decision, failing closed;
4. if allowed, fetch only the permitted fields from the providing agency;
5. append the audit entry and wait until it is durable;
6. return the values with provenance.
Every outcome, including a failure of OPA or of the provider, is audited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broker import personnummer
from broker.audit import ALLOW, DENY, AuditLog, AuditRecord
from broker.catalog import Catalog
from broker.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    PolicyDenied,
    PolicyUnavailable,
    Reason,
    TillitError,
)
from broker.identity import Identity
from broker.keys import Pseudonymiser
from broker.models import IdempotencyRow
from broker.policy import Decision, PolicyEngine
from broker.provider_client import FieldData, ProviderClient, SubjectFacts
from consent.store import ConsentStore

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_REFERENCE = re.compile(r"^[\w./:#-]{1,128}$")
_KEY = re.compile(r"^[\w.:-]{8,128}$")


@dataclass(frozen=True)
class ExchangeRequest:
    subject_id: str
    dataset: str
    fields: tuple[str, ...]
    purpose: str
    legal_basis: str
    case_reference: str
    idempotency_key: str

    def fingerprint(self) -> str:
        """Digest of everything but the key: a reused key must mean the same request."""
        document = [
            self.subject_id,
            self.dataset,
            sorted(self.fields),
            self.purpose,
            self.legal_basis,
            self.case_reference,
        ]
        return hashlib.sha256(json.dumps(document).encode()).hexdigest()


@dataclass(frozen=True)
class Provenance:
    provider: str
    dataset: str
    retrieved_at: dt.datetime
    decision_id: str
    policy_revision: str
    consent_id: str
    audit_index: int
    lawful_basis: str
    obligations: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExchangeResult:
    values: Mapping[str, FieldData]
    provenance: Provenance


@dataclass
class _Context:
    """What is known so far about one exchange, for its audit entry."""

    requester: Identity
    request: ExchangeRequest
    provider: str = ""
    pseudonym: str = ""
    decision_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def validate_request(catalog: Catalog, request: ExchangeRequest) -> ExchangeRequest:
    """Check every field; return the request with the identity number normalised."""
    subject = personnummer.normalize(request.subject_id)
    if not _ID.match(request.purpose):
        raise InvalidRequest(
            "purpose must be a purpose id from the registry", reason="INVALID_PURPOSE"
        )
    if not request.legal_basis.strip() or len(request.legal_basis) > 256:
        raise InvalidRequest(
            "legal_basis is required (at most 256 characters)", reason="INVALID_LEGAL_BASIS"
        )
    if not _REFERENCE.match(request.case_reference):
        raise InvalidRequest(
            "case_reference is required: 1-128 letters, digits or . / : # - _",
            reason="INVALID_CASE_REFERENCE",
        )
    if not _KEY.match(request.idempotency_key):
        raise InvalidRequest(
            "idempotency_key is required: 8-128 letters, digits or . : - _",
            reason="INVALID_IDEMPOTENCY_KEY",
        )
    catalog.get(request.dataset)
    catalog.check_fields(request.dataset, list(request.fields))
    return ExchangeRequest(
        subject_id=subject,
        dataset=request.dataset,
        fields=tuple(request.fields),
        purpose=request.purpose,
        legal_basis=request.legal_basis.strip(),
        case_reference=request.case_reference,
        idempotency_key=request.idempotency_key,
    )


_idempotency = IdempotencyRow.__table__
_PREVIOUS = sa.select(
    _idempotency.c.fingerprint,
    _idempotency.c.audit_index,
    _idempotency.c.decision_id,
    _idempotency.c.data_digest,
).where(
    _idempotency.c.requester == sa.bindparam("requester"),
    _idempotency.c.key == sa.bindparam("key"),
)


class ExchangeService:
    """The broker's core: decide, fetch, audit, answer."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        consents: ConsentStore,
        policy: PolicyEngine,
        providers: ProviderClient,
        audit: AuditLog,
        pseudonymiser: Pseudonymiser,
        sessions: async_sessionmaker[AsyncSession],
        country: str = "SE",
    ) -> None:
        self._catalog = catalog
        self._consents = consents
        self._policy = policy
        self._providers = providers
        self._audit = audit
        self._pseudonymiser = pseudonymiser
        self._sessions = sessions
        self._engine: AsyncEngine = sessions.kw["bind"]
        self._country = country

    async def _previous(self, requester: Identity, request: ExchangeRequest) -> Any:
        """The exchange this idempotency key first produced, if any (a Core row)."""
        async with self._engine.connect() as connection:
            result = await connection.execute(
                _PREVIOUS, {"requester": str(requester), "key": request.idempotency_key}
            )
            row = result.first()
        if row is not None and row.fingerprint != request.fingerprint():
            raise IdempotencyKeyReused(
                "this idempotency key was already used for a different request"
            )
        return row

    def _policy_input(
        self,
        ctx: _Context,
        facts: SubjectFacts,
        consents: list[dict[str, object]],
        now: dt.datetime,
    ) -> dict[str, object]:
        request = ctx.request
        return {
            "requester": {
                "agency": ctx.requester.agency,
                "service": ctx.requester.service,
                "country": self._country,
            },
            "provider": ctx.provider,
            "dataset": request.dataset,
            "fields": list(request.fields),
            "purpose": request.purpose,
            "legal_basis": request.legal_basis,
            "case_reference": request.case_reference,
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "subject": {"age": facts.age, "protected_identity": facts.protected_identity},
            "consents": consents,
        }

    def _record(
        self,
        ctx: _Context,
        decision: str,
        *,
        reasons: tuple[Reason, ...] = (),
        verdict: Decision | None = None,
        released: tuple[str, ...] = (),
        digest: str = "",
        idempotency: bool = False,
    ) -> AuditRecord:
        request = ctx.request
        details = {}
        if idempotency:
            details["idempotency_key"] = request.idempotency_key
        return AuditRecord(
            kind="exchange",
            requester=ctx.requester.agency,
            service=ctx.requester.service,
            provider=ctx.provider,
            dataset=request.dataset,
            subject_pseudonym=ctx.pseudonym,
            purpose=request.purpose,
            legal_basis=request.legal_basis,
            case_reference=request.case_reference,
            requested_fields=request.fields,
            released_fields=released,
            decision=decision,
            reasons=reasons,
            policy_revision=verdict.revision if verdict else "",
            decision_id=ctx.decision_id,
            consent_id=verdict.consent_id if verdict else "",
            data_digest=digest,
            details=details,
            idempotency=(
                (str(ctx.requester), request.idempotency_key, request.fingerprint())
                if idempotency
                else None
            ),
        )

    async def _refuse(
        self, ctx: _Context, error: TillitError, verdict: Decision | None = None
    ) -> None:
        """Audit a refusal that is not the policy's own denial, then raise it."""
        reason = Reason(error.reason, error.message)
        entry = await self._audit.append(
            self._record(ctx, DENY, reasons=(reason,), verdict=verdict)
        )
        error.metadata.setdefault("decision_id", ctx.decision_id)
        error.metadata.setdefault("audit_index", str(entry.index))
        raise error

    async def fetch(self, requester: Identity, raw: ExchangeRequest) -> ExchangeResult:
        request = validate_request(self._catalog, raw)
        dataset = self._catalog.get(request.dataset)
        previous = await self._previous(requester, request)
        ctx = _Context(
            requester,
            request,
            provider=dataset.provider,
            pseudonym=self._pseudonymiser.pseudonym(request.subject_id),
        )
        now = dt.datetime.now(dt.UTC)
        subject_key = self._pseudonymiser.pseudonym(request.subject_id, "consent")
        try:
            consents, facts = await asyncio.gather(
                self._consents.for_exchange(subject_key, requester.agency, request.purpose),
                self._providers.facts(request.subject_id),
            )
        except TillitError as exc:
            await self._refuse(ctx, exc)
            raise  # unreachable: _refuse raises
        try:
            verdict = await self._policy.decide(
                self._policy_input(ctx, facts, [c.policy_input() for c in consents], now)
            )
        except TillitError as exc:
            await self._refuse(ctx, exc)
            raise
        if not verdict.allow:
            entry = await self._audit.append(
                self._record(ctx, DENY, reasons=verdict.reasons, verdict=verdict)
            )
            metadata = {}
            if verdict.excess_fields:
                metadata["excess_fields"] = ",".join(verdict.excess_fields)
            raise PolicyDenied(
                list(verdict.reasons),
                decision_id=ctx.decision_id,
                audit_index=entry.index,
                metadata=metadata,
            )
        allowed = set(verdict.permitted_fields)
        permitted = tuple(f for f in request.fields if f in allowed)
        if not permitted:
            # Nothing to fetch: the provider must not even learn of the subject.
            await self._refuse(
                ctx,
                PolicyUnavailable("the policy permitted no field that was requested"),
                verdict,
            )
        try:
            record = await self._providers.fetch(
                dataset.provider,
                request.subject_id,
                request.dataset,
                permitted,
                decision_id=ctx.decision_id,
                purpose=request.purpose,
            )
        except TillitError as exc:
            await self._refuse(ctx, exc, verdict)
            raise
        if previous is not None and previous.data_digest == record.digest:
            # A retry of the same request releasing the same data: answer as before.
            ctx.decision_id = previous.decision_id
            index = previous.audit_index
        else:
            entry = await self._audit.append(
                self._record(
                    ctx,
                    ALLOW,
                    reasons=verdict.reasons,
                    verdict=verdict,
                    released=tuple(f for f in permitted if f in record.values),
                    digest=record.digest,
                    idempotency=previous is None,
                )
            )
            index = entry.index
        return ExchangeResult(
            values=record.values,
            provenance=Provenance(
                provider=dataset.provider,
                dataset=request.dataset,
                retrieved_at=record.retrieved_at,
                decision_id=ctx.decision_id,
                policy_revision=verdict.revision,
                consent_id=verdict.consent_id,
                audit_index=index,
                lawful_basis=verdict.lawful_basis,
                obligations=verdict.obligations,
            ),
        )
