"""The web pages' errors, and the one place that maps them (and the broker's) to HTTP.

    PageError                  500  error_internal
    ├── BadRequest             400  error_bad_request
    ├── SignInRequired         401  error_sign_in_required
    ├── SignInFailed           401  error_sign_in_failed
    ├── CsrfRejected           403  error_csrf
    ├── PageNotFound           404  error_not_found
    ├── ReceiptInvalid         502  error_receipt_invalid
    └── BrokerRefused          by gRPC status (``HTTP_STATUS``), sentence by ErrorInfo reason

Each error carries an i18n key (or, for the broker, its reason and code) rather
than text, so the page says it in the citizen's language; nothing internal
reaches the page.
"""

from __future__ import annotations

from broker.client import CallError
from consent.web import i18n

# gRPC status code (name) -> HTTP status of the page that reports it.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class PageError(Exception):
    """Base of every error a page reports; ``status`` is its HTTP status."""

    status = 500
    key = "error_internal"

    def sentence(self, lang: str) -> str:
        return i18n.text(lang, self.key)

    @property
    def code(self) -> str:
        """What the page shows for support: a reason or the HTTP status, nothing internal."""
        return str(self.status)


class BadRequest(PageError):
    status = 400
    key = "error_bad_request"


class SignInRequired(PageError):
    status = 401
    key = "error_sign_in_required"


class SignInFailed(PageError):
    """The identity provider's answer could not be accepted (state, nonce, token...)."""

    status = 401
    key = "error_sign_in_failed"

    def __init__(self, detail: str, key: str = "error_sign_in_failed") -> None:
        super().__init__(detail)
        self.key = key


class CsrfRejected(PageError):
    status = 403
    key = "error_csrf"


class PageNotFound(PageError):
    status = 404
    key = "error_not_found"


class ReceiptInvalid(PageError):
    status = 502
    key = "error_receipt_invalid"


class BrokerRefused(PageError):
    """The broker answered with an error; shown by its ErrorInfo reason."""

    def __init__(self, error: CallError) -> None:
        super().__init__(error.reason or error.code)
        self.grpc_code = error.code
        self.reason = error.reason
        self.status = HTTP_STATUS.get(error.code, 502)

    def sentence(self, lang: str) -> str:
        return i18n.error_sentence(lang, self.reason, self.grpc_code)

    @property
    def code(self) -> str:
        return self.reason or self.grpc_code

    @property
    def needs_sign_in(self) -> bool:
        return self.grpc_code == "UNAUTHENTICATED"


def page_error(exc: Exception) -> PageError:
    """Any exception as the ``PageError`` a page shows (unknown ones become a plain 500)."""
    if isinstance(exc, PageError):
        return exc
    if isinstance(exc, CallError):
        return BrokerRefused(exc)
    return PageError("internal error")


def title_key(status: int) -> str:
    return {401: "error_title_401", 403: "error_title_403", 404: "error_title_404"}.get(
        status, "error_title"
    )
