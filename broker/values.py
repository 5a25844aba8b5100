"""Typed field values: Python values to ``tillit.type.v1.FieldValue`` and back.

The catalog type of a field decides the wire kind: ``int`` -> ``int_value``,
``string`` -> ``string_value``, ``bool`` -> ``bool_value`` and ``date`` ->
``date_value`` (ISO 8601 ``YYYY-MM-DD``). Dates stay ISO strings on the way back,
so values are plain JSON-friendly Python values end to end.

``values_digest`` is what the audit log stores instead of the data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping

from broker._gen.tillit.type.v1 import value_pb2
from broker.catalog import Field

FieldData = str | int | bool | float
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_INT64 = range(-(2**63), 2**63)


def _iso_date(field: Field, value: object) -> str:
    if isinstance(value, dt.datetime):
        raise TypeError(f"field '{field.name}' is a date, not a date and time")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise TypeError(f"field '{field.name}' needs a date (YYYY-MM-DD)")


def to_field_value(field: Field, value: FieldData | dt.date) -> value_pb2.FieldValue:
    """The wire value of ``value`` for ``field``; raises ``TypeError`` on a type mismatch.

    Messages name the field and the expected type, never the value.
    """
    if field.type == "int":
        # bool is an int subclass, but True is not an income.
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"field '{field.name}' needs an integer")
        if value not in _INT64:
            raise TypeError(f"field '{field.name}' is out of the 64-bit range")
        return value_pb2.FieldValue(int_value=value)
    if field.type == "string":
        if not isinstance(value, str):
            raise TypeError(f"field '{field.name}' needs a string")
        return value_pb2.FieldValue(string_value=value)
    if field.type == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"field '{field.name}' needs a boolean")
        return value_pb2.FieldValue(bool_value=value)
    if field.type == "date":
        return value_pb2.FieldValue(date_value=_iso_date(field, value))
    raise TypeError(f"field '{field.name}' has unsupported type '{field.type}'")


def from_field_value(value: value_pb2.FieldValue) -> FieldData:
    """The Python value of a wire value; a date comes back as its ISO string."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise ValueError("the field value is not set")
    result: FieldData = getattr(value, kind)
    return result


def _canonical(value: value_pb2.FieldValue) -> list[object]:
    kind = value.WhichOneof("kind")
    if kind is None:
        return ["unset", None]
    tag = kind.removesuffix("_value")
    if kind == "double_value":
        # repr is the shortest string that round-trips, and covers nan and inf,
        # which JSON numbers cannot.
        return [tag, repr(value.double_value)]
    return [tag, getattr(value, kind)]


def values_digest(values: Mapping[str, value_pb2.FieldValue]) -> str:
    """Hex SHA-256 of the canonical encoding of ``values``.

    The encoding is a UTF-8 JSON object with keys sorted, no whitespace
    (separators ``,`` and ``:``), non-ASCII kept as is, and each value a
    ``[tag, value]`` pair: ``["string", "..."]``, ``["int", 1]``,
    ``["bool", true]``, ``["date", "YYYY-MM-DD"]``, ``["double", repr(x)]``,
    or ``["unset", null]``. The tag keeps ``1`` apart from ``true`` and ``"1"``.
    """
    document = {name: _canonical(value) for name, value in values.items()}
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
