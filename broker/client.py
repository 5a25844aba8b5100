"""A small async client for the broker's services, used by the CLI, the demo and tests.

It speaks real gRPC over mutual TLS with a party's certificate; results come
back as JSON-ready dictionaries, errors as ``CallError`` with the status code,
the ``ErrorInfo`` reason and its metadata.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from broker._gen.tillit.audit.v1 import audit_pb2, audit_pb2_grpc
from broker._gen.tillit.consent.v1 import consent_pb2, consent_pb2_grpc
from broker._gen.tillit.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from broker.identity import channel_credentials
from broker.pki import TlsFiles
from broker.rpc import error_info

KINDS = {
    "consent": consent_pb2.CONSENT_KIND_CONSENT,
    "explicit_request": consent_pb2.CONSENT_KIND_EXPLICIT_REQUEST,
    "waiver_of_confidentiality": consent_pb2.CONSENT_KIND_WAIVER_OF_CONFIDENTIALITY,
}


@dataclass
class CallError(Exception):
    """A failed call, as the caller sees it."""

    code: str
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "reason": self.reason,
                "message": self.message,
                "metadata": self.metadata,
            }
        }


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _plain(value: dict[str, Any]) -> Any:
    """A ``FieldValue`` as a plain JSON value (int64 arrives as a string in JSON form)."""
    kind, item = next(iter(value.items()), ("", None))
    return int(str(item)) if kind == "int_value" else item


class BrokerClient:
    """``async with BrokerClient(target, tls) as client: await client.fetch(...)``."""

    def __init__(self, target: str, tls: TlsFiles, *, timeout: float = 10.0) -> None:
        self._channel = grpc.aio.secure_channel(target, channel_credentials(tls))
        self._timeout = timeout
        self.exchange = exchange_pb2_grpc.ExchangeServiceStub(self._channel)
        self.consent = consent_pb2_grpc.ConsentServiceStub(self._channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self._channel)

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Message, token: str | None = None) -> Any:
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        try:
            return await method(request, timeout=self._timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            raise CallError(
                exc.code().name,
                exc.details() or "",
                info.reason if info else "",
                dict(info.metadata) if info else {},
            ) from None

    async def fetch(
        self,
        subject_id: str,
        dataset: str,
        fields: Sequence[str],
        purpose: str,
        legal_basis: str,
        case_reference: str,
        idempotency_key: str,
    ) -> dict[str, Any]:
        response = await self._call(
            self.exchange.FetchData,
            exchange_pb2.FetchDataRequest(
                subject_id=subject_id,
                dataset=dataset,
                fields=list(fields),
                purpose=purpose,
                legal_basis=legal_basis,
                case_reference=case_reference,
                idempotency_key=idempotency_key,
            ),
        )
        result = to_dict(response)
        result["values"] = {name: _plain(v) for name, v in result.get("values", {}).items()}
        return result

    async def grant(
        self,
        subject_id: str,
        *,
        kind: str,
        requester: str,
        service: str,
        dataset: str,
        fields: Sequence[str],
        purpose: str,
        valid_until: dt.datetime | None = None,
        language: str = "sv",
        notice_version: str = "1",
        token: str | None = None,
    ) -> dict[str, Any]:
        request = consent_pb2.GrantConsentRequest(
            subject_id=subject_id,
            kind=KINDS[kind],
            requester=requester,
            service=service,
            dataset=dataset,
            fields=list(fields),
            purpose=purpose,
            language=language,
            notice_version=notice_version,
        )
        if valid_until is not None:
            request.valid_until.FromDatetime(valid_until)
        response = await self._call(self.consent.GrantConsent, request, token)
        return {**to_dict(response.consent), "receipt": response.receipt}

    async def withdraw(
        self, subject_id: str, consent_id: str, *, token: str | None = None
    ) -> dict[str, Any]:
        response = await self._call(
            self.consent.WithdrawConsent,
            consent_pb2.WithdrawConsentRequest(subject_id=subject_id, consent_id=consent_id),
            token,
        )
        return {**to_dict(response.consent), "receipt": response.receipt}

    async def list_consents(
        self,
        subject_id: str,
        page_size: int = 50,
        page_token: str = "",
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        request = consent_pb2.ListConsentsRequest(
            subject_id=subject_id, page_size=page_size, page_token=page_token
        )
        return to_dict(await self._call(self.consent.ListConsents, request, token))

    async def access_events(
        self,
        subject_id: str,
        page_size: int = 50,
        page_token: str = "",
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        request = consent_pb2.ListAccessEventsRequest(
            subject_id=subject_id, page_size=page_size, page_token=page_token
        )
        return to_dict(await self._call(self.consent.ListAccessEvents, request, token))

    async def get_receipt(
        self,
        subject_id: str,
        consent_id: str,
        event: str = "given",
        *,
        token: str | None = None,
    ) -> str:
        request = consent_pb2.GetReceiptRequest(
            subject_id=subject_id, consent_id=consent_id, event=event
        )
        response = await self._call(self.consent.GetReceipt, request, token)
        return str(response.receipt)

    async def receipt_keys(self, *, token: str | None = None) -> dict[str, Any]:
        response = await self._call(
            self.consent.GetReceiptKeys, consent_pb2.GetReceiptKeysRequest(), token
        )
        document: dict[str, Any] = json.loads(response.jwks)
        return document

    async def list_subjects(self, *, token: str | None = None) -> dict[str, Any]:
        return to_dict(
            await self._call(self.consent.ListSubjects, consent_pb2.ListSubjectsRequest(), token)
        )

    async def audit_entries(self, **filters: Any) -> dict[str, Any]:
        return to_dict(
            await self._call(self.audit.ListEntries, audit_pb2.ListEntriesRequest(**filters))
        )

    async def verify(self) -> dict[str, Any]:
        response = await self._call(self.audit.VerifyLog, audit_pb2.VerifyLogRequest())
        return to_dict(response)

    async def checkpoint(self) -> dict[str, Any]:
        return to_dict(
            await self._call(self.audit.GetLatestCheckpoint, audit_pb2.GetLatestCheckpointRequest())
        )
