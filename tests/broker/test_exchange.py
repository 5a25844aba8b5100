"""Request validation: every malformed request is refused with its own reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.catalog import Catalog
from broker.errors import InvalidRequest, InvalidSubjectId, UnknownDataset
from broker.exchange import ExchangeRequest, validate_request

GOOD = ExchangeRequest(
    subject_id="19850717-9862",
    dataset="taxed-income",
    fields=("income_year", "taxed_income_sek"),
    purpose="preschool-fee-reduction",
    legal_basis=" Skollagen (2010:800) 8 kap. 16 § ",
    case_reference="EXB-2026-0001",
    idempotency_key="0b5e3c9a-key",
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_good_request_is_normalised(catalog: Catalog) -> None:
    request = validate_request(catalog, GOOD)
    assert request.subject_id == "198507179862"
    assert request.legal_basis == "Skollagen (2010:800) 8 kap. 16 §"


def test_fingerprint_ignores_key_and_field_order() -> None:
    other = replace(GOOD, idempotency_key="another-key", fields=tuple(reversed(GOOD.fields)))
    assert other.fingerprint() == GOOD.fingerprint()
    assert replace(GOOD, case_reference="EXB-2").fingerprint() != GOOD.fingerprint()


@pytest.mark.parametrize(
    ("change", "error", "reason"),
    [
        ({"subject_id": "198507179863"}, InvalidSubjectId, "INVALID_SUBJECT_ID"),
        ({"subject_id": ""}, InvalidSubjectId, "INVALID_SUBJECT_ID"),
        ({"dataset": "medical-records"}, UnknownDataset, "UNKNOWN_DATASET"),
        ({"fields": ()}, InvalidRequest, "NO_FIELDS"),
        ({"fields": ("income_year", "shoe_size")}, InvalidRequest, "UNKNOWN_FIELDS"),
        ({"fields": ("income_year", "income_year")}, InvalidRequest, "DUPLICATE_FIELDS"),
        ({"purpose": "Anything Goes"}, InvalidRequest, "INVALID_PURPOSE"),
        ({"legal_basis": "  "}, InvalidRequest, "INVALID_LEGAL_BASIS"),
        ({"case_reference": ""}, InvalidRequest, "INVALID_CASE_REFERENCE"),
        ({"case_reference": "x" * 129}, InvalidRequest, "INVALID_CASE_REFERENCE"),
        ({"idempotency_key": "short"}, InvalidRequest, "INVALID_IDEMPOTENCY_KEY"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(
    catalog: Catalog, change: dict[str, object], error: type[Exception], reason: str
) -> None:
    with pytest.raises(error) as caught:
        validate_request(catalog, replace(GOOD, **change))  # type: ignore[arg-type]
    assert getattr(caught.value, "reason", None) == reason
    assert "198507179863" not in str(caught.value)
