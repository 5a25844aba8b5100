"""The dataset catalog: which agency holds which dataset, and its typed fields.

The catalog is policy data (``policies/tillit/registry/datasets/data.json``), so
the broker, the policy and the demo agencies read one and the same file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from broker.errors import ConfigError, InvalidRequest, UnknownDataset

FIELD_TYPES = frozenset({"int", "string", "date", "bool"})
_REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"
_DATASETS = Path("tillit", "registry", "datasets", "data.json")
# Bounds on what an error echoes back of a caller's field names.
_ECHO_NAMES, _ECHO_LENGTH = 10, 64


@dataclass(frozen=True)
class Field:
    """One field of a dataset."""

    name: str
    type: str
    sensitivity: str
    description: str
    address_like: bool = False
    special_category: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset held by one providing agency."""

    id: str
    title: str
    provider: str
    category: str
    fields: Mapping[str, Field] = field(hash=False)


def default_path(policies: Path | None = None) -> Path:
    """The catalog file under ``policies`` (default: the repository's policies)."""
    return (policies or _REPO_POLICIES) / _DATASETS


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"dataset catalog: {where} needs a non-empty string '{key}'")
    return value


def _field(name: str, raw: Any, where: str) -> Field:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"dataset catalog: {where} must be an object")
    kind = _text(raw, "type", where)
    if kind not in FIELD_TYPES:
        raise ConfigError(f"dataset catalog: {where} has unknown type '{kind}'")
    special = raw.get("special_category")
    if special is not None and not isinstance(special, str):
        raise ConfigError(f"dataset catalog: {where} special_category must be a string")
    return Field(
        name=name,
        type=kind,
        sensitivity=_text(raw, "sensitivity", where),
        description=str(raw.get("description", "")),
        address_like=raw.get("address_like") is True,
        special_category=special,
    )


def _dataset(dataset_id: str, raw: Any) -> Dataset:
    where = f"dataset '{dataset_id}'"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"dataset catalog: {where} must be an object")
    fields = raw.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        raise ConfigError(f"dataset catalog: {where} needs at least one field")
    return Dataset(
        id=dataset_id,
        title=_text(raw, "title", where),
        provider=_text(raw, "provider", where),
        category=_text(raw, "category", where),
        fields=MappingProxyType(
            {name: _field(name, spec, f"{where} field '{name}'") for name, spec in fields.items()}
        ),
    )


def _echo(names: Iterable[str]) -> str:
    """Caller-supplied names, bounded, for an error's metadata."""
    return ",".join(sorted({n[:_ECHO_LENGTH] for n in names})[:_ECHO_NAMES])


class Catalog:
    """Every dataset, by id."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self._datasets = {d.id: d for d in datasets}

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        """Read the catalog file (default: ``default_path()``)."""
        path = path or default_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the dataset catalog {path}: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise ConfigError(f"dataset catalog {path} must be a JSON object")
        return cls(_dataset(dataset_id, spec) for dataset_id, spec in raw.items())

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self._datasets.values())

    def __len__(self) -> int:
        return len(self._datasets)

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._datasets

    def get(self, dataset_id: str) -> Dataset:
        """The dataset ``dataset_id``; raises ``UnknownDataset``."""
        dataset = self._datasets.get(dataset_id)
        if dataset is None:
            raise UnknownDataset(
                "the dataset is not in the catalog", metadata={"dataset": _echo([dataset_id])}
            )
        return dataset

    def check_fields(self, dataset_id: str, fields: Iterable[str]) -> list[str]:
        """The requested fields, in order, if they are a non-empty set of the dataset's fields.

        Raises ``UnknownDataset``, or ``InvalidRequest`` with reason ``NO_FIELDS``,
        ``DUPLICATE_FIELDS`` or ``UNKNOWN_FIELDS`` (metadata ``fields`` lists them).
        """
        known = self.get(dataset_id).fields
        wanted = list(fields)
        if not wanted:
            raise InvalidRequest(
                "at least one field must be requested",
                reason="NO_FIELDS",
                metadata={"dataset": dataset_id, "fields": ""},
            )
        unknown = [f for f in wanted if f not in known]
        if unknown:
            raise InvalidRequest(
                "the dataset has no such field",
                reason="UNKNOWN_FIELDS",
                metadata={"dataset": dataset_id, "fields": _echo(unknown)},
            )
        duplicates = [f for f, n in Counter(wanted).items() if n > 1]
        if duplicates:
            raise InvalidRequest(
                "each field may be requested only once",
                reason="DUPLICATE_FIELDS",
                metadata={"dataset": dataset_id, "fields": _echo(duplicates)},
            )
        return wanted

    def datasets_of(self, provider: str) -> list[Dataset]:
        """The datasets ``provider`` holds, by id."""
        return sorted(
            (d for d in self._datasets.values() if d.provider == provider), key=lambda d: d.id
        )
