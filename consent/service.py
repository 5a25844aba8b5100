"""What a citizen can do with their consents, and see of their data's use."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from broker import personnummer
from broker.audit import AuditEntry, AuditLog, EntryFilter
from broker.catalog import Catalog
from broker.errors import InvalidRequest
from broker.keys import Pseudonymiser
from consent.store import Consent, ConsentGrant, ConsentStore

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
LANGUAGES = ("sv", "en")


class ConsentService:
    """Grant, withdraw and list consents; list every exchange of the subject's data."""

    def __init__(
        self,
        store: ConsentStore,
        audit: AuditLog,
        catalog: Catalog,
        pseudonymiser: Pseudonymiser,
    ) -> None:
        self._store = store
        self._audit = audit
        self._catalog = catalog
        self._pseudonymiser = pseudonymiser

    def _subject_key(self, subject_id: str) -> str:
        return self._pseudonymiser.pseudonym(personnummer.normalize(subject_id), "consent")

    async def grant(self, subject_id: str, grant: ConsentGrant, actor: str) -> Consent:
        key = self._subject_key(subject_id)
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
        dataset = self._catalog.get(grant.dataset)
        self._catalog.check_fields(grant.dataset, list(grant.fields))
        if grant.language not in LANGUAGES:
            raise InvalidRequest("language must be 'sv' or 'en'", reason="INVALID_LANGUAGE")
        return await self._store.grant(key, replace(grant, provider=dataset.provider), actor)

    async def withdraw(self, subject_id: str, consent_id: str, actor: str) -> Consent:
        if not consent_id:
            raise InvalidRequest("consent_id is required", reason="INVALID_CONSENT_ID")
        return await self._store.withdraw(self._subject_key(subject_id), consent_id, actor)

    async def list(
        self, subject_id: str, page_size: int, page_token: str
    ) -> tuple[list[Consent], str]:
        consents, more = await self._store.list(
            self._subject_key(subject_id), page_size=page_size, after=page_token
        )
        return consents, (consents[-1].id if more and consents else "")

    async def access_events(
        self, subject_id: str, page_size: int, page_token: str
    ) -> tuple[Sequence[AuditEntry], str]:
        """Every exchange that involved the subject's data, found by its pseudonym."""
        pseudonym = self._pseudonymiser.pseudonym(personnummer.normalize(subject_id))
        return await self._audit.list_entries(
            EntryFilter(subject_pseudonym=pseudonym), page_size, page_token
        )
