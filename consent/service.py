"""What a citizen can do with their consents, and see of their data's use.

Every call carries the citizen's ID token. A citizen acts for themselves, or as
a guardian for a child under 18 in their care (guardianship from the population
register). Any other attempt is refused and written to the audit log.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from broker import personnummer
from broker.audit import DENY, AuditEntry, AuditLog, AuditRecord, EntryFilter
from broker.catalog import Catalog
from broker.errors import InvalidRequest, NotFound, PermissionDenied, Reason
from broker.keys import Pseudonymiser
from broker.policy import format_lawful_basis
from broker.provider_client import SubjectFacts
from consent.receipts import ReceiptSigner
from consent.store import Consent, ConsentGrant, ConsentStore
from consent.tokens import Citizen, IdTokenVerifier

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
LANGUAGES = ("sv", "en")
CONSENT_PURPOSE = "consent-management"

FactsLookup = Callable[[str], Awaitable[SubjectFacts]]


@dataclass(frozen=True)
class Actor:
    """Who is acting (the signed-in citizen) for whom (the subject), and how."""

    citizen: Citizen
    subject_id: str
    relation: str  # "self" or "guardian"

    @property
    def given_by(self) -> str:
        return "subject" if self.relation == "self" else "guardian"


@dataclass(frozen=True)
class SubjectRef:
    subject_id: str
    relation: str
    age: int


class ConsentService:
    """Grant, withdraw, list and prove consents; list every exchange of the subject's data."""

    def __init__(
        self,
        store: ConsentStore,
        audit: AuditLog,
        catalog: Catalog,
        pseudonymiser: Pseudonymiser,
        *,
        tokens: IdTokenVerifier,
        facts: FactsLookup,
        receipts: ReceiptSigner,
        purposes: Mapping[str, Mapping[str, object]],
        caller: str = "citizen-portal",
    ) -> None:
        self._store = store
        self._audit = audit
        self._catalog = catalog
        self._pseudonymiser = pseudonymiser
        self._tokens = tokens
        self._facts = facts
        self._receipts = receipts
        self._purposes = purposes
        self._caller = caller

    # -- who may act -------------------------------------------------------------------

    async def authorise(self, token: str, subject_id: str, action: str) -> Actor:
        """The actor, if the token's citizen may ``action`` for ``subject_id``."""
        citizen = self._tokens.verify(token)
        subject = personnummer.normalize(subject_id)
        if subject == citizen.subject_id:
            return Actor(citizen, subject, "self")
        try:
            facts = await self._facts(subject)
        except NotFound:
            facts = SubjectFacts(0, False, ())
        if citizen.subject_id in facts.guardian_ids and facts.age < 18:
            return Actor(citizen, subject, "guardian")
        await self._audit.append(
            AuditRecord(
                kind="access_refused",
                requester="tillit",
                service=self._caller,
                provider="",
                dataset="",
                subject_pseudonym=self._pseudonymiser.pseudonym(subject),
                purpose=CONSENT_PURPOSE,
                legal_basis="",
                case_reference="",
                requested_fields=(),
                released_fields=(),
                decision=DENY,
                reasons=(
                    Reason(
                        "NOT_AUTHORISED_FOR_SUBJECT",
                        "the signed-in citizen may not act for this person",
                    ),
                ),
                details={
                    "action": action,
                    "actor": self._pseudonymiser.pseudonym(citizen.subject_id),
                },
            )
        )
        raise PermissionDenied(
            "you may act only for yourself or for a child under 18 in your care",
            reason="NOT_AUTHORISED_FOR_SUBJECT",
        )

    async def subjects(self, token: str) -> list[SubjectRef]:
        """The signed-in citizen and the children they may act for."""
        citizen = self._tokens.verify(token)
        try:
            facts = await self._facts(citizen.subject_id)
        except NotFound:
            # Not in the population register: they can still act for themselves.
            facts = SubjectFacts(
                personnummer.age_on(citizen.subject_id, dt.date.today()), False, ()
            )
        refs = [SubjectRef(citizen.subject_id, "self", facts.age)]
        for ward in facts.ward_ids:
            ward_facts = await self._facts(ward)
            refs.append(SubjectRef(ward, "guardian", ward_facts.age))
        return refs

    # -- consents ----------------------------------------------------------------------

    def _subject_key(self, subject_id: str) -> str:
        return self._pseudonymiser.pseudonym(subject_id, "consent")

    def lawful_basis(self, purpose: str) -> str:
        basis = self._purposes.get(purpose, {}).get("lawful_basis")
        return format_lawful_basis(basis) if isinstance(basis, Mapping) else ""

    def receipt_keys(self) -> str:
        return json.dumps(self._receipts.jwks())

    def receipt(self, consent: Consent, subject_id: str, event: str) -> str:
        category = self._catalog.get(consent.dataset).category
        return self._receipts.receipt(
            consent,
            subject_id,
            event,
            lawful_basis=self.lawful_basis(consent.purpose),
            category=category,
        )

    async def grant(self, token: str, subject_id: str, grant: ConsentGrant) -> Consent:
        for name, value in (
            ("requester", grant.requester),
            ("service", grant.service),
            ("purpose", grant.purpose),
        ):
            if not _ID.match(value):
                raise InvalidRequest(
                    f"{name} must be an id (lower case, digits, '-')",
                    reason=f"INVALID_{name.upper()}",
                )
        if grant.purpose not in self._purposes:
            raise InvalidRequest(
                "no such purpose in the purpose registry", reason="UNKNOWN_PURPOSE"
            )
        dataset = self._catalog.get(grant.dataset)
        self._catalog.check_fields(grant.dataset, list(grant.fields))
        if grant.language not in LANGUAGES:
            raise InvalidRequest("language must be 'sv' or 'en'", reason="INVALID_LANGUAGE")
        actor = await self.authorise(token, subject_id, "grant")
        return await self._store.grant(
            self._subject_key(actor.subject_id),
            replace(grant, provider=dataset.provider, given_by=actor.given_by),
            actor.given_by,
        )

    async def withdraw(self, token: str, subject_id: str, consent_id: str) -> Consent:
        if not consent_id:
            raise InvalidRequest("consent_id is required", reason="INVALID_CONSENT_ID")
        actor = await self.authorise(token, subject_id, "withdraw")
        return await self._store.withdraw(
            self._subject_key(actor.subject_id), consent_id, actor.given_by
        )

    async def get(self, token: str, subject_id: str, consent_id: str) -> Consent:
        actor = await self.authorise(token, subject_id, "read")
        consent = await self._store.get(self._subject_key(actor.subject_id), consent_id)
        if consent is None:
            raise NotFound("no such consent", reason="CONSENT_NOT_FOUND")
        return consent

    async def list(
        self, token: str, subject_id: str, page_size: int, page_token: str
    ) -> tuple[list[Consent], str]:
        actor = await self.authorise(token, subject_id, "list")
        consents, more = await self._store.list(
            self._subject_key(actor.subject_id), page_size=page_size, after=page_token
        )
        return consents, (consents[-1].id if more and consents else "")

    async def access_events(
        self, token: str, subject_id: str, page_size: int, page_token: str
    ) -> tuple[Sequence[AuditEntry], str]:
        """Every exchange that involved the subject's data, found by its pseudonym."""
        actor = await self.authorise(token, subject_id, "access_events")
        # One pseudonym per live key epoch: events from every month still linkable.
        pseudonyms = tuple(self._pseudonymiser.pseudonyms(actor.subject_id))
        return await self._audit.list_entries(
            EntryFilter(subject_pseudonyms=pseudonyms, kind="exchange"), page_size, page_token
        )
