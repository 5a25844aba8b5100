"""The dataset catalog read from the policy data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.catalog import FIELD_TYPES, Catalog, default_path
from broker.errors import ConfigError, InvalidRequest, UnknownDataset


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(default_path())


def test_default_path_is_the_policy_data() -> None:
    path = default_path()
    assert path.is_file()
    assert path.parts[-5:] == ("policies", "tillit", "registry", "datasets", "data.json")
    assert default_path(Path("/elsewhere")) == Path("/elsewhere/tillit/registry/datasets/data.json")


def test_load_reads_every_dataset(catalog: Catalog) -> None:
    raw = json.loads(default_path().read_text(encoding="utf-8"))
    assert {d.id for d in catalog} == set(raw)
    assert len(catalog) == len(raw)
    assert Catalog.load().get("address") == catalog.get("address")


def test_fields_are_typed(catalog: Catalog) -> None:
    income = catalog.get("taxed-income")
    assert income.provider == "tax-agency"
    assert income.title == "Yearly taxed income"
    assert income.category == "financial"
    assert income.fields["assessment_date"].type == "date"
    assert income.fields["taxed_income_sek"].type == "int"
    assert income.fields["taxed_income_sek"].sensitivity == "confidential"
    assert all(f.type in FIELD_TYPES for d in catalog for f in d.fields.values())
    assert all(name == f.name for d in catalog for name, f in d.fields.items())


def test_address_like_and_special_categories(catalog: Catalog) -> None:
    address = catalog.get("address").fields
    assert address["street_address"].address_like
    assert not address["registered_since"].address_like
    sickness = catalog.get("sickness-benefit").fields
    assert sickness["diagnosis_code"].special_category == "health"
    assert sickness["on_sick_leave"].special_category is None


def test_datasets_are_immutable(catalog: Catalog) -> None:
    dataset = catalog.get("household")
    with pytest.raises(TypeError):
        dataset.fields["adults"] = dataset.fields["children"]  # type: ignore[index]


def test_get_unknown_dataset(catalog: Catalog) -> None:
    with pytest.raises(UnknownDataset) as caught:
        catalog.get("medical-records")
    assert caught.value.reason == "UNKNOWN_DATASET"
    assert "medical-records" not in catalog
    assert "address" in catalog


def test_check_fields_keeps_order(catalog: Catalog) -> None:
    fields = ["city", "postal_code"]
    assert catalog.check_fields("address", fields) == fields


def test_check_fields_unknown(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest) as caught:
        catalog.check_fields("address", ["city", "shoe_size", "eye_colour"])
    assert caught.value.reason == "UNKNOWN_FIELDS"
    assert caught.value.metadata["fields"] == "eye_colour,shoe_size"


def test_check_fields_bounds_what_it_echoes(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest) as caught:
        catalog.check_fields("address", [f"f{i:03d}" + "x" * 500 for i in range(50)])
    echoed = caught.value.metadata["fields"].split(",")
    assert len(echoed) == 10
    assert all(len(name) <= 64 for name in echoed)


def test_check_fields_duplicate(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest) as caught:
        catalog.check_fields("address", ["city", "city", "postal_code"])
    assert caught.value.reason == "DUPLICATE_FIELDS"
    assert caught.value.metadata["fields"] == "city"


def test_check_fields_empty(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest) as caught:
        catalog.check_fields("address", [])
    assert caught.value.reason == "NO_FIELDS"


def test_check_fields_unknown_dataset(catalog: Catalog) -> None:
    with pytest.raises(UnknownDataset):
        catalog.check_fields("nope", ["city"])


def test_datasets_of(catalog: Catalog) -> None:
    assert [d.id for d in catalog.datasets_of("population-register")] == ["address", "household"]
    assert [d.id for d in catalog.datasets_of("social-insurance")] == [
        "parental-benefit",
        "sickness-benefit",
    ]
    assert catalog.datasets_of("nobody") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read"),
        ("[]", "must be a JSON object"),
        ('{"d": {"title": "T", "provider": "p", "category": "c", "fields": {}}}', "one field"),
        (
            '{"d": {"title": "T", "provider": "p", "category": "c",'
            ' "fields": {"f": {"type": "float", "sensitivity": "normal"}}}}',
            "unknown type",
        ),
        (
            '{"d": {"provider": "p", "category": "c",'
            ' "fields": {"f": {"type": "int", "sensitivity": "normal"}}}}',
            "'title'",
        ),
    ],
)
def test_load_rejects_malformed_catalogs(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        Catalog.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Catalog.load(tmp_path / "missing.json")
