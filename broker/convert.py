"""Named converters between protobuf messages and domain objects.

Only the gRPC layer imports this module; domain code never sees generated types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from broker._gen.tillit.audit.v1 import audit_pb2
from broker._gen.tillit.consent.v1 import consent_pb2
from broker._gen.tillit.exchange.v1 import exchange_pb2
from broker._gen.tillit.type.v1 import value_pb2
from broker.audit import ALLOW, DENY, AuditEntry, EntryFilter
from broker.catalog import Catalog
from broker.errors import InvalidRequest, Reason
from broker.exchange import ExchangeRequest, ExchangeResult
from broker.provider_client import FieldData
from broker.values import to_field_value
from consent.receipts import WITHDRAWAL
from consent.store import Consent, ConsentGrant, ConsentKind

_KIND_TO_PB = {
    ConsentKind.CONSENT: consent_pb2.CONSENT_KIND_CONSENT,
    ConsentKind.EXPLICIT_REQUEST: consent_pb2.CONSENT_KIND_EXPLICIT_REQUEST,
    ConsentKind.WAIVER_OF_CONFIDENTIALITY: consent_pb2.CONSENT_KIND_WAIVER_OF_CONFIDENTIALITY,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_STATE_TO_PB = {
    "active": consent_pb2.CONSENT_STATE_ACTIVE,
    "withdrawn": consent_pb2.CONSENT_STATE_WITHDRAWN,
    "expired": consent_pb2.CONSENT_STATE_EXPIRED,
}
_DECISION_TO_PB = {ALLOW: audit_pb2.DECISION_ALLOW, DENY: audit_pb2.DECISION_DENY}


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


def reasons_to_pb(reasons: Iterable[Reason]) -> list[value_pb2.Reason]:
    return [value_pb2.Reason(code=r.code, message=r.message, article=r.article) for r in reasons]


def exchange_request_from_pb(request: exchange_pb2.FetchDataRequest) -> ExchangeRequest:
    return ExchangeRequest(
        subject_id=request.subject_id,
        dataset=request.dataset,
        fields=tuple(request.fields),
        purpose=request.purpose,
        legal_basis=request.legal_basis,
        case_reference=request.case_reference,
        idempotency_key=request.idempotency_key,
    )


def field_values_to_pb(
    catalog: Catalog, dataset: str, values: Mapping[str, FieldData]
) -> dict[str, value_pb2.FieldValue]:
    fields = catalog.get(dataset).fields
    return {name: to_field_value(fields[name], value) for name, value in values.items()}


def exchange_result_to_pb(
    catalog: Catalog, result: ExchangeResult
) -> exchange_pb2.FetchDataResponse:
    p = result.provenance
    return exchange_pb2.FetchDataResponse(
        values=field_values_to_pb(catalog, p.dataset, result.values),
        provenance=exchange_pb2.Provenance(
            provider=p.provider,
            retrieved_at=timestamp(p.retrieved_at),
            decision_id=p.decision_id,
            policy_revision=p.policy_revision,
            consent_id=p.consent_id,
            audit_index=p.audit_index,
            lawful_basis=p.lawful_basis,
            dataset=p.dataset,
            obligations=list(p.obligations),
        ),
    )


def consent_grant_from_pb(request: consent_pb2.GrantConsentRequest) -> ConsentGrant:
    kind = _KIND_FROM_PB.get(request.kind)
    if kind is None:
        raise InvalidRequest(
            "kind must be consent, explicit request or waiver", reason="INVALID_CONSENT_KIND"
        )
    return ConsentGrant(
        kind=kind,
        requester=request.requester,
        service=request.service,
        provider="",
        dataset=request.dataset,
        purpose=request.purpose,
        fields=tuple(request.fields),
        valid_until=(
            request.valid_until.ToDatetime(dt.UTC) if request.HasField("valid_until") else None
        ),
        notice_version=request.notice_version or "1",
        language=request.language or "sv",
    )


def consent_to_pb(
    consent: Consent, subject_id: str, now: dt.datetime, *, lawful_basis: str = ""
) -> consent_pb2.Consent:
    message = consent_pb2.Consent(
        id=consent.id,
        subject_id=subject_id,
        kind=_KIND_TO_PB[consent.kind],
        requester=consent.requester,
        service=consent.service,
        provider=consent.provider,
        dataset=consent.dataset,
        fields=list(consent.fields),
        purpose=consent.purpose,
        given_at=timestamp(consent.given_at),
        valid_from=timestamp(consent.valid_from),
        valid_until=timestamp(consent.valid_until),
        state=_STATE_TO_PB[str(consent.state(now))],
        notice_version=consent.notice_version,
        language=consent.language,
        given_by=consent.given_by,
        method=consent.method,
        jurisdiction=consent.jurisdiction,
        lawful_basis=lawful_basis,
        withdrawal_method=WITHDRAWAL.get(consent.language, WITHDRAWAL["en"]),
    )
    if consent.withdrawn_at is not None:
        message.withdrawn_at.CopyFrom(timestamp(consent.withdrawn_at))
    return message


def access_event_to_pb(entry: AuditEntry) -> consent_pb2.AccessEvent:
    r = entry.record
    return consent_pb2.AccessEvent(
        audit_index=entry.index,
        time=timestamp(entry.time),
        requester=r.requester,
        service=r.service,
        provider=r.provider,
        dataset=r.dataset,
        purpose=r.purpose,
        fields=list(r.released_fields or r.requested_fields),
        outcome=r.decision,
        reasons=reasons_to_pb(r.reasons),
        case_reference=r.case_reference,
    )


def audit_entry_to_pb(entry: AuditEntry) -> audit_pb2.AuditEntry:
    r = entry.record
    return audit_pb2.AuditEntry(
        index=entry.index,
        entry_id=entry.entry_id,
        time=timestamp(entry.time),
        kind=r.kind,
        requester=r.requester,
        service=r.service,
        provider=r.provider,
        dataset=r.dataset,
        subject_pseudonym=r.subject_pseudonym,
        purpose=r.purpose,
        legal_basis=r.legal_basis,
        case_reference=r.case_reference,
        requested_fields=list(r.requested_fields),
        released_fields=list(r.released_fields),
        decision=_DECISION_TO_PB.get(r.decision, audit_pb2.DECISION_UNSPECIFIED),
        reasons=reasons_to_pb(r.reasons),
        policy_revision=r.policy_revision,
        decision_id=r.decision_id,
        consent_id=r.consent_id,
        data_digest=r.data_digest,
        leaf_hash=entry.leaf_hash,
    )


def entry_filter_from_pb(request: audit_pb2.ListEntriesRequest) -> EntryFilter:
    decision = {audit_pb2.DECISION_ALLOW: ALLOW, audit_pb2.DECISION_DENY: DENY}.get(
        request.decision, ""
    )
    return EntryFilter(
        subject_pseudonym=request.subject_pseudonym,
        requester=request.requester,
        purpose=request.purpose,
        decision=decision,
        start=request.start_time.ToDatetime(dt.UTC) if request.HasField("start_time") else None,
        end=request.end_time.ToDatetime(dt.UTC) if request.HasField("end_time") else None,
    )
