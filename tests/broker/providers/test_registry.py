"""The synthetic population and the agencies' domain service."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest

from broker import personnummer
from broker.catalog import Catalog
from broker.errors import InvalidRequest, InvalidSubjectId, NotFound
from broker.providers import (
    AGENCIES,
    AS_OF,
    SEED,
    Agency,
    NotHeld,
    SubjectFacts,
    SyntheticPopulation,
)
from broker.values import to_field_value

SIZE = 3_000
TODAY = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def population() -> SyntheticPopulation:
    return SyntheticPopulation(SIZE)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_ten_thousand_people_are_built() -> None:
    people = SyntheticPopulation(10_000, seed=SEED + 1).numbers()
    assert len(people) == 10_000


def test_numbers_are_unique_valid_and_synthetic(population: SyntheticPopulation) -> None:
    numbers = population.numbers()
    assert len(numbers) == len(set(numbers)) == len(population) == SIZE
    for pnr in numbers:
        assert personnummer.normalize(pnr) == pnr
        assert 980 <= int(pnr[8:11]) <= 999


def test_same_seed_same_people_other_seed_other_people(population: SyntheticPopulation) -> None:
    again = SyntheticPopulation(SIZE, SEED)
    assert again.numbers() == population.numbers()
    assert [again.citizen(p) for p in again.numbers()[:200]] == [
        population.citizen(p) for p in population.numbers()[:200]
    ]
    assert SyntheticPopulation(SIZE, SEED + 7).numbers() != population.numbers()


@pytest.mark.parametrize("size", [1, 2, 7])
def test_tiny_populations_have_exactly_size_people(size: int) -> None:
    tiny = SyntheticPopulation(size)
    assert len(tiny.numbers()) == size
    assert tiny.a_protected_person() in tiny


def test_households(population: SyntheticPopulation) -> None:
    seen: set[int] = set()
    for pnr in population.numbers():
        citizen = population.citizen(pnr)
        assert citizen is not None
        if citizen.household in seen:
            continue
        seen.add(citizen.household)
        members = [population.citizen(m) for m in population.household_of(pnr)]
        adults = [m for m in members if m is not None and m.age_on(AS_OF) >= 18]
        children = [m for m in members if m is not None and m.age_on(AS_OF) < 18]
        assert 1 <= len(members) <= 6
        assert 1 <= len(adults) <= 2
        assert len(children) <= 4
        adult_ids = tuple(a.pnr for a in adults)
        for child in children:
            assert child.guardian_ids == adult_ids
            for guardian in adults:
                assert guardian.birth_date.year - child.birth_date.year <= -18
        for adult in adults:
            assert adult.guardian_ids == ()
            assert set(adult.children) == {c.pnr for c in children}
        # Protection and address cover the whole household.
        assert len({m.protected_identity for m in members if m}) == 1
        assert len({m.address.street_address for m in members if m}) == 1
    sizes = Counter(len(population.household_of(p)) for p in population.numbers())
    assert set(sizes) == {1, 2, 3, 4, 5, 6}


def test_shares_of_protected_and_sick(population: SyntheticPopulation) -> None:
    protected = population.find_all(lambda c: c.protected_identity)
    assert 0.001 * SIZE <= len(protected) <= 0.015 * SIZE
    adults = population.find_all(lambda c: c.age_on(AS_OF) >= 18)
    sick = population.find_all(
        lambda c: c.sickness_benefit is not None and c.sickness_benefit.on_sick_leave
    )
    assert 0.03 <= len(sick) / len(adults) <= 0.07


def test_every_record_matches_the_catalog(
    population: SyntheticPopulation, catalog: Catalog
) -> None:
    for dataset in catalog:
        assert population.holds(dataset.provider, dataset.id)
        found = 0
        for pnr in population.numbers()[:500]:
            record = population.record(dataset.provider, dataset.id, pnr, on=TODAY)
            if record is None:
                continue
            found += 1
            assert set(record) == set(dataset.fields)
            for name, value in record.items():
                if value is not None:
                    to_field_value(dataset.fields[name], value)
        assert found > 0, dataset.id


def test_records_are_held_only_by_their_agency(population: SyntheticPopulation) -> None:
    pnr = population.an_adult()
    assert population.record("tax-agency", "address", pnr) is None
    assert not population.holds("tax-agency", "address")
    assert population.record("population-register", "address", "190001019999") is None


def test_address(population: SyntheticPopulation) -> None:
    for pnr in population.numbers()[:300]:
        record = population.record("population-register", "address", pnr)
        assert record is not None
        assert re.fullmatch(r"\d{5}", record["postal_code"])
        assert re.fullmatch(r"99\d\d", record["municipality_code"])
        assert re.fullmatch(r"\w+ \d+", record["street_address"])
        assert personnummer.birth_date(pnr) <= record["registered_since"] < AS_OF


def test_income_children_zero_adults_mostly_positive(population: SyntheticPopulation) -> None:
    child = population.a_child(TODAY)
    record = population.record("tax-agency", "taxed-income", child)
    assert record is not None
    assert record["taxed_income_sek"] == record["capital_income_sek"] == 0
    incomes = [
        population.record("tax-agency", "taxed-income", p)
        for p in population.find_all(lambda c: c.age_on(AS_OF) >= 25)
    ]
    positive = [r for r in incomes if r is not None and r["taxed_income_sek"] > 0]
    assert len(positive) / len(incomes) > 0.85
    assert all(r is not None and r["income_year"] == AS_OF.year - 2 for r in incomes)


def test_household_counts_depend_on_the_day(population: SyntheticPopulation) -> None:
    parent = population.an_adult_with_children(TODAY)
    record = population.record("population-register", "household", parent, on=TODAY)
    assert record is not None
    assert record["household_size"] == record["adults"] + record["children"]
    assert record["children"] >= 1
    later = population.record("population-register", "household", parent, on=dt.date(2070, 1, 1))
    assert later is not None
    assert later["children"] == 0


def test_benefits(population: SyntheticPopulation) -> None:
    parent = population.a_parent_on_leave()
    benefit = population.record("social-insurance", "parental-benefit", parent)
    assert benefit is not None
    assert benefit["benefit_days_used"] + benefit["benefit_days_remaining"] in (240, 480)
    assert 250 <= benefit["daily_amount_sek"] <= 1_250
    assert benefit["period_start"] < benefit["period_end"]
    citizen = population.citizen(parent)
    assert citizen is not None
    assert any(personnummer.age_on(c, AS_OF) < 8 for c in citizen.children)
    assert population.record("social-insurance", "parental-benefit", population.an_adult()) is None

    sick = population.a_person_on_sick_leave()
    record = population.record("social-insurance", "sickness-benefit", sick)
    assert record is not None
    assert record["on_sick_leave"] is True
    assert record["sick_leave_percent"] in (25, 50, 75, 100)
    assert re.fullmatch(r"[A-Z]\d\d\.\d", record["diagnosis_code"])
    assert population.record("social-insurance", "sickness-benefit", population.a_child()) is None


def test_facts(population: SyntheticPopulation) -> None:
    child = population.a_child(TODAY)
    citizen = population.citizen(child)
    assert citizen is not None
    facts = population.facts(child, TODAY)
    assert facts == SubjectFacts(personnummer.age_on(child, TODAY), False, citizen.guardian_ids)
    assert facts.age < 18
    assert len(facts.guardian_ids) in (1, 2)
    grown_up = population.facts(child, dt.date(2060, 1, 1))
    assert grown_up is not None
    assert grown_up.guardian_ids == ()
    protected = population.facts(population.a_protected_person(), TODAY)
    assert protected is not None
    assert protected.protected_identity
    assert population.facts("190001019999", TODAY) is None


def test_helpers_find_what_they_promise(population: SyntheticPopulation) -> None:
    adult = population.citizen(population.an_adult_with_children(TODAY))
    assert adult is not None
    assert adult.age_on(TODAY) >= 18
    assert adult.children
    assert not adult.protected_identity
    with pytest.raises(LookupError):
        population.find(lambda c: c.birth_date.year < 1900)


# -- Agency -----------------------------------------------------------------------


def test_agency_returns_only_requested_fields(
    population: SyntheticPopulation, catalog: Catalog
) -> None:
    tax = Agency("tax-agency", population, catalog)
    pnr = population.an_adult()
    values = tax.fetch("taxed-income", ["taxed_income_sek", "income_year"], pnr)
    assert list(values) == ["taxed_income_sek", "income_year"]
    dashed = f"{pnr[:8]}-{pnr[8:]}"
    assert tax.fetch("taxed-income", ["income_year"], dashed) == {
        "income_year": values["income_year"]
    }


def test_agency_leaves_out_missing_values(
    population: SyntheticPopulation, catalog: Catalog
) -> None:
    insurance = Agency("social-insurance", population, catalog)
    healthy = population.find(
        lambda c: c.sickness_benefit is not None and not c.sickness_benefit.on_sick_leave
    )
    values = insurance.fetch("sickness-benefit", ["on_sick_leave", "diagnosis_code"], healthy)
    assert values == {"on_sick_leave": False}


@pytest.mark.parametrize("dataset", ["address", "no-such-dataset"])
def test_agency_refuses_datasets_it_does_not_hold(
    population: SyntheticPopulation, catalog: Catalog, dataset: str
) -> None:
    with pytest.raises(NotFound) as caught:
        Agency("tax-agency", population, catalog).fetch(dataset, ["city"], population.an_adult())
    assert caught.value.reason == "DATASET_NOT_HELD"


def test_agency_errors(population: SyntheticPopulation, catalog: Catalog) -> None:
    register = Agency("population-register", population, catalog)
    with pytest.raises(InvalidRequest) as bad_fields:
        register.fetch("address", ["shoe_size"], population.an_adult())
    assert bad_fields.value.reason == "UNKNOWN_FIELDS"
    with pytest.raises(InvalidSubjectId):
        register.fetch("address", ["city"], "19900517-0000")
    unknown = personnummer.synthetic_numbers(1, seed=99, born_between=(AS_OF, AS_OF))[0]
    with pytest.raises(NotFound) as missing:
        register.fetch("address", ["city"], unknown)
    assert missing.value.reason == "SUBJECT_NOT_FOUND"
    with pytest.raises(NotFound) as no_record:
        Agency("social-insurance", population, catalog).fetch(
            "parental-benefit", ["benefit_days_used"], population.an_adult()
        )
    assert no_record.value.reason == "RECORD_NOT_FOUND"


def test_only_the_population_register_gives_facts(
    population: SyntheticPopulation, catalog: Catalog
) -> None:
    child = population.a_child()
    facts = Agency("population-register", population, catalog).facts(child)
    assert facts.guardian_ids
    for agency in AGENCIES:
        if agency != "population-register":
            with pytest.raises(NotHeld) as caught:
                Agency(agency, population, catalog).facts(child)
            assert caught.value.reason == "NOT_PROVIDED"
