"""gRPC servicers: translate wire types to domain calls and back, nothing more.

Errors are raised as ``TillitError`` and mapped once, by ``rpc.ErrorInterceptor``;
who may call what is decided once, by ``AUTHZ`` and ``rpc.AuthzInterceptor``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from broker import convert
from broker._gen.tillit.audit.v1 import audit_pb2, audit_pb2_grpc
from broker._gen.tillit.consent.v1 import consent_pb2, consent_pb2_grpc
from broker._gen.tillit.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from broker.audit import AuditLog, verify_log
from broker.catalog import Catalog
from broker.checkpoint import NoteVerifier
from broker.exchange import ExchangeService
from broker.identity import Role
from broker.rpc import caller
from consent.service import ConsentService

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
    def __init__(self, service: ConsentService) -> None:
        self._service = service

    async def GrantConsent(
        self, request: consent_pb2.GrantConsentRequest, context: Context
    ) -> consent_pb2.GrantConsentResponse:
        consent = await self._service.grant(
            request.subject_id, convert.consent_grant_from_pb(request), str(caller(context))
        )
        now = dt.datetime.now(dt.UTC)
        return consent_pb2.GrantConsentResponse(
            consent=convert.consent_to_pb(consent, request.subject_id, now)
        )

    async def WithdrawConsent(
        self, request: consent_pb2.WithdrawConsentRequest, context: Context
    ) -> consent_pb2.WithdrawConsentResponse:
        consent = await self._service.withdraw(
            request.subject_id, request.consent_id, str(caller(context))
        )
        now = dt.datetime.now(dt.UTC)
        return consent_pb2.WithdrawConsentResponse(
            consent=convert.consent_to_pb(consent, request.subject_id, now)
        )

    async def ListConsents(
        self, request: consent_pb2.ListConsentsRequest, context: Context
    ) -> consent_pb2.ListConsentsResponse:
        consents, token = await self._service.list(
            request.subject_id, request.page_size, request.page_token
        )
        now = dt.datetime.now(dt.UTC)
        return consent_pb2.ListConsentsResponse(
            consents=[convert.consent_to_pb(c, request.subject_id, now) for c in consents],
            next_page_token=token,
        )

    async def ListAccessEvents(
        self, request: consent_pb2.ListAccessEventsRequest, context: Context
    ) -> consent_pb2.ListAccessEventsResponse:
        entries, token = await self._service.access_events(
            request.subject_id, request.page_size, request.page_token
        )
        return consent_pb2.ListAccessEventsResponse(
            events=[convert.access_event_to_pb(e) for e in entries], next_page_token=token
        )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, log: AuditLog, verifier: NoteVerifier) -> None:
        self._log = log
        self._verifier = verifier

    async def ListEntries(
        self, request: audit_pb2.ListEntriesRequest, context: Context
    ) -> audit_pb2.ListEntriesResponse:
        entries, token = await self._log.list_entries(
            convert.entry_filter_from_pb(request), request.page_size, request.page_token
        )
        return audit_pb2.ListEntriesResponse(
            entries=[convert.audit_entry_to_pb(e) for e in entries], next_page_token=token
        )

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
