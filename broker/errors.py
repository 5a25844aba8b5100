"""Tillit's error tree. Every error knows its gRPC status code and its reason.

Domain code raises these; the gRPC layer (``broker.rpc_errors``) is the one place
that turns them into ``google.rpc.Status`` with exactly one ``ErrorInfo``.
Messages are safe to show to callers: no personal data, no internals.

    TillitError
    ├── InvalidRequest              INVALID_ARGUMENT
    │   ├── InvalidSubjectId        INVALID_ARGUMENT  INVALID_SUBJECT_ID
    │   └── UnknownDataset          INVALID_ARGUMENT  UNKNOWN_DATASET
    ├── IdempotencyKeyReused        FAILED_PRECONDITION
    ├── Unauthenticated             UNAUTHENTICATED
    ├── PermissionDenied            PERMISSION_DENIED
    │   └── PolicyDenied            PERMISSION_DENIED  (reason from the policy)
    ├── NotFound                    NOT_FOUND
    ├── AlreadyExists               ALREADY_EXISTS
    ├── PolicyUnavailable           UNAVAILABLE        POLICY_UNAVAILABLE
    ├── ProviderUnavailable         UNAVAILABLE        PROVIDER_UNAVAILABLE
    ├── AuditUnavailable            UNAVAILABLE        AUDIT_UNAVAILABLE
    └── ConfigError                 (start-up only)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc

DOMAIN = "tillit.dev"


@dataclass(frozen=True)
class Reason:
    """One reason behind a policy decision (code, plain message, legal article)."""

    code: str
    message: str
    article: str = ""


class TillitError(Exception):
    """Base of every error Tillit reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidRequest(TillitError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class InvalidSubjectId(InvalidRequest):
    reason = "INVALID_SUBJECT_ID"


class UnknownDataset(InvalidRequest):
    reason = "UNKNOWN_DATASET"


class IdempotencyKeyReused(TillitError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "IDEMPOTENCY_KEY_REUSED"


class Unauthenticated(TillitError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(TillitError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class PolicyDenied(PermissionDenied):
    """The policy said no. ``reasons`` holds every reason the policy gave."""

    reason = "POLICY_DENIED"

    def __init__(
        self,
        reasons: list[Reason],
        *,
        decision_id: str,
        audit_index: int,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        first = reasons[0] if reasons else Reason("POLICY_DENIED", "The policy denied the request.")
        meta = {
            "decision_id": decision_id,
            "audit_index": str(audit_index),
            "reasons": ",".join(r.code for r in reasons) or first.code,
        }
        if first.article:
            meta["article"] = first.article
        meta.update(metadata or {})
        super().__init__(first.message, reason=first.code, metadata=meta)
        self.reasons = reasons


class NotFound(TillitError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(TillitError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class PolicyUnavailable(TillitError):
    """OPA could not give a usable decision: the broker fails closed."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "POLICY_UNAVAILABLE"


class ProviderUnavailable(TillitError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "PROVIDER_UNAVAILABLE"


class AuditUnavailable(TillitError):
    """The audit entry could not be made durable, so nothing is released."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "AUDIT_UNAVAILABLE"


class ConfigError(Exception):
    """Bad configuration, reported at start-up."""
