"""gRPC servicers: translate wire types to domain calls and back, nothing more.

Errors are raised as ``TillitError`` and mapped once, by ``rpc.ErrorInterceptor``;
who may call what is decided once, by ``AUTHZ`` and ``rpc.AuthzInterceptor``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import grpc

from broker import convert, personnummer
from broker._gen.tillit.audit.v1 import audit_pb2, audit_pb2_grpc
from broker._gen.tillit.consent.v1 import consent_pb2, consent_pb2_grpc
from broker._gen.tillit.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from broker.audit import ALLOW, DENY, AuditEntry, AuditLog, EntryFilter, verify_log
from broker.catalog import Catalog
from broker.checkpoint import NoteVerifier
from broker.errors import InvalidRequest, NotFound
from broker.exchange import ExchangeService
from broker.identity import Role
from broker.rpc import caller
from consent.service import ConsentService
from consent.store import Consent
from consent.tokens import bearer

Context = grpc.aio.ServicerContext[Any, Any]

EXCHANGE = "tillit.exchange.v1.ExchangeService"
CONSENT = "tillit.consent.v1.ConsentService"
AUDIT = "tillit.audit.v1.AuditService"

# Least privilege: which certificate roles may call each service.
AUTHZ = {
    EXCHANGE: [Role.REQUESTER],
    CONSENT: [Role.PORTAL],
    AUDIT: [Role.DPO],
}


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, service: ExchangeService, catalog: Catalog) -> None:
        self._service = service
        self._catalog = catalog

    async def FetchData(
        self, request: exchange_pb2.FetchDataRequest, context: Context
    ) -> exchange_pb2.FetchDataResponse:
        result = await self._service.fetch(
            caller(context), convert.exchange_request_from_pb(request)
        )
        return convert.exchange_result_to_pb(self._catalog, result)


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    """The citizen's side; the ID token travels as ``authorization: Bearer ...``."""

    def __init__(self, service: ConsentService) -> None:
        self._service = service

    @staticmethod
    def _token(context: Context) -> str:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        return bearer(metadata)

    def _consent(self, consent: Consent, subject_id: str) -> consent_pb2.Consent:
        return convert.consent_to_pb(
            consent,
            subject_id,
            dt.datetime.now(dt.UTC),
            lawful_basis=self._service.lawful_basis(consent.purpose),
        )

    async def GrantConsent(
        self, request: consent_pb2.GrantConsentRequest, context: Context
    ) -> consent_pb2.GrantConsentResponse:
        subject = personnummer.normalize(request.subject_id)
        consent = await self._service.grant(
            self._token(context), subject, convert.consent_grant_from_pb(request)
        )
        return consent_pb2.GrantConsentResponse(
            consent=self._consent(consent, subject),
            receipt=self._service.receipt(consent, subject, "given"),
        )

    async def WithdrawConsent(
        self, request: consent_pb2.WithdrawConsentRequest, context: Context
    ) -> consent_pb2.WithdrawConsentResponse:
        subject = personnummer.normalize(request.subject_id)
        consent = await self._service.withdraw(self._token(context), subject, request.consent_id)
        return consent_pb2.WithdrawConsentResponse(
            consent=self._consent(consent, subject),
            receipt=self._service.receipt(consent, subject, "withdrawn"),
        )

    async def ListConsents(
        self, request: consent_pb2.ListConsentsRequest, context: Context
    ) -> consent_pb2.ListConsentsResponse:
        subject = personnummer.normalize(request.subject_id)
        consents, token = await self._service.list(
            self._token(context), subject, request.page_size, request.page_token
        )
        return consent_pb2.ListConsentsResponse(
            consents=[self._consent(c, subject) for c in consents], next_page_token=token
        )

    async def GetReceipt(
        self, request: consent_pb2.GetReceiptRequest, context: Context
    ) -> consent_pb2.GetReceiptResponse:
        event = request.event or "given"
        if event not in ("given", "withdrawn"):
            raise InvalidRequest("event must be 'given' or 'withdrawn'", reason="INVALID_EVENT")
        subject = personnummer.normalize(request.subject_id)
        consent = await self._service.get(self._token(context), subject, request.consent_id)
        if event == "withdrawn" and consent.withdrawn_at is None:
            raise NotFound("the consent has not been withdrawn", reason="RECEIPT_NOT_FOUND")
        return consent_pb2.GetReceiptResponse(
            receipt=self._service.receipt(consent, subject, event)
        )

    async def GetReceiptKeys(
        self, request: consent_pb2.GetReceiptKeysRequest, context: Context
    ) -> consent_pb2.GetReceiptKeysResponse:
        return consent_pb2.GetReceiptKeysResponse(jwks=self._service.receipt_keys())

    async def ListAccessEvents(
        self, request: consent_pb2.ListAccessEventsRequest, context: Context
    ) -> consent_pb2.ListAccessEventsResponse:
        entries, token = await self._service.access_events(
            self._token(context), request.subject_id, request.page_size, request.page_token
        )
        return consent_pb2.ListAccessEventsResponse(
            events=[convert.access_event_to_pb(e) for e in entries], next_page_token=token
        )

    async def ListSubjects(
        self, request: consent_pb2.ListSubjectsRequest, context: Context
    ) -> consent_pb2.ListSubjectsResponse:
        refs = await self._service.subjects(self._token(context))
        return consent_pb2.ListSubjectsResponse(
            subjects=[
                consent_pb2.Subject(subject_id=r.subject_id, relation=r.relation, age=r.age)
                for r in refs
            ]
        )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """The DPO's side: search, export, verify and prove the audit log."""

    EXPORT_BATCH = 500
    _DECISIONS: ClassVar[dict[int, str]] = {
        audit_pb2.DECISION_ALLOW: ALLOW,
        audit_pb2.DECISION_DENY: DENY,
    }

    def __init__(self, log: AuditLog, verifier: NoteVerifier) -> None:
        self._log = log
        self._verifier = verifier

    @staticmethod
    def _entry(entry: AuditEntry) -> audit_pb2.AuditEntry:
        # Details are part of the leaf; with them a caller can re-hash the entry.
        message = convert.audit_entry_to_pb(entry)
        message.details.update({k: str(v) for k, v in entry.record.details.items()})
        return message

    async def ListEntries(
        self, request: audit_pb2.ListEntriesRequest, context: Context
    ) -> audit_pb2.ListEntriesResponse:
        entries, token = await self._log.list_entries(
            convert.entry_filter_from_pb(request), request.page_size, request.page_token
        )
        return audit_pb2.ListEntriesResponse(
            entries=[self._entry(e) for e in entries], next_page_token=token
        )

    async def ExportEntries(
        self, request: audit_pb2.ExportEntriesRequest, context: Context
    ) -> AsyncIterator[audit_pb2.ExportEntriesResponse]:
        start = request.start_time.ToDatetime(dt.UTC) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(dt.UTC) if request.HasField("end_time") else None
        if start is not None and end is not None and start >= end:
            raise InvalidRequest("start_time must be before end_time", reason="INVALID_TIME_RANGE")
        flt = EntryFilter(
            requester=request.requester,
            purpose=request.purpose,
            dataset=request.dataset,
            decision=self._DECISIONS.get(request.decision, ""),
            start=start,
            end=end,
        )
        async for batch in self._log.export(flt, self.EXPORT_BATCH):
            yield audit_pb2.ExportEntriesResponse(entries=[self._entry(e) for e in batch])

    async def VerifyLog(
        self, request: audit_pb2.VerifyLogRequest, context: Context
    ) -> audit_pb2.VerifyLogResponse:
        await self._log.checkpoint()
        result = await verify_log(self._log.sessions, self._verifier)
        response = audit_pb2.VerifyLogResponse(
            ok=result.ok, tree_size=result.size, root_hash=result.root, problem=result.problem
        )
        if result.first_bad_index is not None:
            response.first_bad_index = result.first_bad_index
        return response

    async def GetLatestCheckpoint(
        self, request: audit_pb2.GetLatestCheckpointRequest, context: Context
    ) -> audit_pb2.GetLatestCheckpointResponse:
        note, size, root = await self._log.checkpoint()
        return audit_pb2.GetLatestCheckpointResponse(
            checkpoint=note, tree_size=size, root_hash=root
        )

    async def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.GetInclusionProofResponse:
        size = request.tree_size or (await self._log.latest_checkpoint())[1]
        leaf, proof = await self._log.inclusion_proof(request.index, size)
        return audit_pb2.GetInclusionProofResponse(
            index=request.index, tree_size=size, leaf_hash=leaf, hashes=proof
        )

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.GetConsistencyProofResponse:
        proof = await self._log.consistency_proof(request.first_size, request.second_size)
        return audit_pb2.GetConsistencyProofResponse(
            first_size=request.first_size, second_size=request.second_size, hashes=proof
        )
