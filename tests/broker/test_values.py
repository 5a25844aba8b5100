"""Typed field values and the digest the audit log keeps."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from broker._gen.tillit.type.v1 import value_pb2
from broker.catalog import Field
from broker.values import from_field_value, to_field_value, values_digest


def _field(kind: str, name: str = "f") -> Field:
    return Field(name=name, type=kind, sensitivity="normal", description="")


@pytest.mark.parametrize(
    ("kind", "value", "oneof", "back"),
    [
        ("int", 412_300, "int_value", 412_300),
        ("int", -(2**63), "int_value", -(2**63)),
        ("string", "Ekorrvägen 3", "string_value", "Ekorrvägen 3"),
        ("string", "", "string_value", ""),
        ("bool", True, "bool_value", True),
        ("bool", False, "bool_value", False),
        ("date", dt.date(2025, 9, 14), "date_value", "2025-09-14"),
        ("date", "2024-02-29", "date_value", "2024-02-29"),
    ],
)
def test_round_trip(kind: str, value: object, oneof: str, back: object) -> None:
    wire = to_field_value(_field(kind), value)  # type: ignore[arg-type]
    assert wire.WhichOneof("kind") == oneof
    result = from_field_value(wire)
    assert result == back
    assert type(result) is type(back)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int", True),
        ("int", "12"),
        ("int", 1.5),
        ("int", 2**63),
        ("string", 12),
        ("bool", 1),
        ("bool", "true"),
        ("date", "2023-02-29"),
        ("date", "14/09/2025"),
        ("date", "20250914"),
        ("date", dt.datetime(2025, 9, 14, 12, 0)),
        ("date", 20250914),
    ],
)
def test_type_mismatch_names_field_not_value(kind: str, value: object) -> None:
    with pytest.raises(TypeError, match="'taxed'") as caught:
        to_field_value(_field(kind, "taxed"), value)  # type: ignore[arg-type]
    assert str(value) not in str(caught.value)


def test_unknown_field_type() -> None:
    with pytest.raises(TypeError, match="unsupported type"):
        to_field_value(_field("double"), 1.0)


def test_from_field_value_double_and_unset() -> None:
    assert from_field_value(value_pb2.FieldValue(double_value=0.25)) == 0.25
    with pytest.raises(ValueError, match="not set"):
        from_field_value(value_pb2.FieldValue())


def test_digest_matches_the_documented_encoding() -> None:
    values = {
        "taxed": value_pb2.FieldValue(int_value=412300),
        "city": value_pb2.FieldValue(string_value="Älvsnäs"),
        "since": value_pb2.FieldValue(date_value="2020-01-31"),
        "sick": value_pb2.FieldValue(bool_value=False),
        "share": value_pb2.FieldValue(double_value=0.5),
    }
    expected = (
        '{"city":["string","Älvsnäs"],"share":["double","0.5"],'
        '"sick":["bool",false],"since":["date","2020-01-31"],"taxed":["int",412300]}'
    )
    assert values_digest(values) == hashlib.sha256(expected.encode("utf-8")).hexdigest()


def test_digest_of_nothing() -> None:
    assert values_digest({}) == hashlib.sha256(b"{}").hexdigest()


def test_digest_ignores_order_but_not_types_or_values() -> None:
    a = {"x": value_pb2.FieldValue(int_value=1), "y": value_pb2.FieldValue(string_value="a")}
    b = {"y": value_pb2.FieldValue(string_value="a"), "x": value_pb2.FieldValue(int_value=1)}
    assert values_digest(a) == values_digest(b)
    digests = {
        values_digest({"x": value})
        for value in (
            value_pb2.FieldValue(int_value=1),
            value_pb2.FieldValue(bool_value=True),
            value_pb2.FieldValue(string_value="1"),
            value_pb2.FieldValue(double_value=1.0),
            value_pb2.FieldValue(int_value=2),
            value_pb2.FieldValue(),
        )
    }
    assert len(digests) == 6
    assert len(values_digest(a)) == 64


def test_digest_of_a_protobuf_map() -> None:
    from broker._gen.tillit.provider.v1 import provider_pb2

    response = provider_pb2.FetchRecordResponse(
        values={"b": value_pb2.FieldValue(int_value=2), "a": value_pb2.FieldValue(bool_value=True)}
    )
    plain = {"a": value_pb2.FieldValue(bool_value=True), "b": value_pb2.FieldValue(int_value=2)}
    assert values_digest(response.values) == values_digest(plain)
