"""The demo agencies' registers: a deterministic synthetic population.

Every person is invented. Identity numbers come from
``personnummer.synthetic_numbers`` (serials 980-999), streets, towns and
municipality codes (99xx, a range no real municipality uses) are made up, and
incomes, benefits and diagnoses are drawn from seeded random numbers. The same
``size`` and ``seed`` always give the same people, independent of today's date:
the population is drawn as of ``AS_OF``, and only ages move with time.

``Agency`` is the domain service one data-holding agency runs on top of it.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from broker import personnummer
from broker.catalog import Catalog
from broker.errors import NotFound, TillitError

SEED = 20_260_101
AS_OF = dt.date(2026, 1, 1)
TAX_AGENCY = "tax-agency"
POPULATION_REGISTER = "population-register"
SOCIAL_INSURANCE = "social-insurance"
AGENCIES = (TAX_AGENCY, POPULATION_REGISTER, SOCIAL_INSURANCE)

# Children are under 18 on AS_OF; adults 18 or older.
_CHILDREN_BORN = (dt.date(2008, 1, 2), dt.date(2025, 12, 31))
_ADULTS_BORN = (dt.date(1940, 1, 1), dt.date(2007, 12, 31))
_PROTECTED_SHARE = 0.005
_SICK_SHARE = 0.05
_PENSION_AGE = 66
_PARENTAL_CHILD_AGE = 8
_PARENTAL_DAYS_PER_CHILD = 480
# Ceiling of the daily parental benefit (80 % of the income ceiling, per day).
_DAILY_CEILING, _DAILY_FLOOR = 1_250, 250
_INCOME_YEARS = 3

# Invented towns: (name, municipality code, postal code prefix, weight). The
# 99xxx postal codes are unused in Sweden. Exempelby is the demo municipality.
_TOWNS = (
    ("Exempelby", "9901", "991", 30),
    ("Lillmora", "9902", "992", 12),
    ("Norrhamra", "9903", "993", 12),
    ("Sjöbyholm", "9904", "994", 10),
    ("Björkelunda", "9905", "995", 10),
    ("Granvika", "9906", "996", 10),
    ("Tallbacka", "9907", "997", 8),
    ("Älvsnäs", "9908", "998", 8),
)
_STREET_STEMS = (
    "Blåklocks",
    "Ekorr",
    "Fjällsippe",
    "Granbarrs",
    "Häggblomme",
    "Kvarnhjuls",
    "Lingonris",
    "Måsvinge",
    "Nyponrose",
    "Rönnbärs",
    "Skogsstjärne",
    "Tranbärs",
    "Vildhalla",
    "Ängsulls",
    "Örnklo",
    "Mossgrön",
    "Sävstrå",
    "Videkvists",
)
_STREET_ENDS = ("vägen", "gatan", "stigen", "gränd", "backen", "allén")
# ICD-10 codes of common reasons for sick leave.
_DIAGNOSES = (
    "J06.9",
    "M54.5",
    "F32.9",
    "F43.2",
    "S82.6",
    "M75.1",
    "J11.1",
    "G43.9",
    "K58.9",
    "M17.1",
)


@dataclass(frozen=True)
class Address:
    street_address: str
    postal_code: str
    city: str
    municipality_code: str
    registered_since: dt.date


@dataclass(frozen=True)
class TaxYear:
    income_year: int
    taxed_income_sek: int
    capital_income_sek: int
    assessment_date: dt.date


@dataclass(frozen=True)
class ParentalBenefit:
    benefit_days_used: int
    benefit_days_remaining: int
    daily_amount_sek: int
    period_start: dt.date
    period_end: dt.date


@dataclass(frozen=True)
class SicknessBenefit:
    on_sick_leave: bool
    sick_leave_percent: int
    diagnosis_code: str | None


@dataclass(frozen=True)
class Citizen:
    """One synthetic person, as every demo agency knows them."""

    pnr: str
    birth_date: dt.date
    household: int
    protected_identity: bool
    # Adults of the household, for a child; empty for an adult.
    guardian_ids: tuple[str, ...]
    # Children of the household, for an adult; empty for a child.
    children: tuple[str, ...]
    address: Address
    tax_years: tuple[TaxYear, ...]
    parental_benefit: ParentalBenefit | None
    sickness_benefit: SicknessBenefit | None

    def age_on(self, on: dt.date) -> int:
        return personnummer.years_between(self.birth_date, on)


@dataclass(frozen=True)
class SubjectFacts:
    """What the policy needs to know about a subject."""

    age: int
    protected_identity: bool
    guardian_ids: tuple[str, ...]
    # Children under 18 in this person's care (they are one of their guardians).
    ward_ids: tuple[str, ...] = ()


@dataclass
class _Plan:
    adults: int
    children: int
    protected: bool = False
    adult_ids: list[str] = field(default_factory=list)
    child_ids: list[str] = field(default_factory=list)


def _random_date(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, max(0, (last - first).days)))


class _Pool:
    """Identity numbers bucketed by birth year, so households can be made plausible."""

    def __init__(self, numbers: Iterable[str]) -> None:
        self._by_year: dict[int, list[str]] = {}
        for pnr in numbers:
            self._by_year.setdefault(int(pnr[:4]), []).append(pnr)

    def take(self, rng: random.Random, first_year: int, last_year: int) -> str | None:
        years = [y for y, left in self._by_year.items() if left and first_year <= y <= last_year]
        return self._by_year[rng.choice(years)].pop() if years else None

    def take_any(self, rng: random.Random) -> str:
        pnr = self.take(rng, 1, 9999)
        if pnr is None:
            raise RuntimeError("the identity number pool ran dry")
        return pnr


class SyntheticPopulation:
    """``size`` invented citizens, households and register records, built on first use."""

    def __init__(self, size: int = 10_000, seed: int = SEED) -> None:
        if size < 1:
            raise ValueError("the population needs at least one person")
        self.size = size
        self.seed = seed
        self._people: dict[str, Citizen] | None = None
        self._households: dict[int, tuple[str, ...]] = {}

    # -- building -----------------------------------------------------------------

    @property
    def _citizens(self) -> dict[str, Citizen]:
        if self._people is None:
            self._people = self._build()
        return self._people

    def _plan(self, rng: random.Random) -> list[_Plan]:
        plans: list[_Plan] = []
        total = 0
        while total < self.size:
            kind = rng.random()
            children = rng.choices((1, 2, 3, 4), weights=(40, 40, 15, 5))[0]
            if kind < 0.35:
                plan = _Plan(1, 0)
            elif kind < 0.60:
                plan = _Plan(2, 0)
            elif kind < 0.70:
                plan = _Plan(1, min(children, 3))
            else:
                plan = _Plan(2, children)
            # The last household shrinks to fit, children first.
            excess = total + plan.adults + plan.children - self.size
            cut = min(excess, plan.children) if excess > 0 else 0
            plan.children -= cut
            plan.adults -= max(0, excess - cut)
            total += plan.adults + plan.children
            plans.append(plan)
        protected = max(1, round(len(plans) * _PROTECTED_SHARE))
        for plan in rng.sample(plans, protected):
            plan.protected = True
        return plans

    def _assign_numbers(self, rng: random.Random, plans: list[_Plan]) -> None:
        n_children = sum(p.children for p in plans)
        n_adults = sum(p.adults for p in plans)
        kids = _Pool(personnummer.synthetic_numbers(n_children, self.seed, _CHILDREN_BORN))
        grown = _Pool(personnummer.synthetic_numbers(n_adults, self.seed + 1, _ADULTS_BORN))
        # Families first: their guardians must be of an age to be parents.
        for plan in sorted(plans, key=lambda p: p.children == 0):
            if plan.children:
                first = kids.take_any(rng)
                plan.child_ids.append(first)
                year = int(first[:4])
                for _ in range(plan.children - 1):
                    plan.child_ids.append(kids.take(rng, year - 6, year + 6) or kids.take_any(rng))
                oldest = min(int(c[:4]) for c in plan.child_ids)
                youngest = max(int(c[:4]) for c in plan.child_ids)
                for _ in range(plan.adults):
                    plan.adult_ids.append(
                        grown.take(rng, youngest - 45, oldest - 20)
                        or grown.take(rng, 0, oldest - 18)
                        or grown.take_any(rng)
                    )
            else:
                first = grown.take_any(rng)
                plan.adult_ids.append(first)
                year = int(first[:4])
                for _ in range(plan.adults - 1):
                    plan.adult_ids.append(
                        grown.take(rng, year - 5, year + 5) or grown.take_any(rng)
                    )

    def _build(self) -> dict[str, Citizen]:
        rng = random.Random(self.seed)
        plans = self._plan(rng)
        self._assign_numbers(rng, plans)
        people: dict[str, Citizen] = {}
        for number, plan in enumerate(plans):
            for citizen in self._household(rng, number, plan):
                people[citizen.pnr] = citizen
            self._households[number] = (*plan.adult_ids, *plan.child_ids)
        return people

    def _household(self, rng: random.Random, number: int, plan: _Plan) -> list[Citizen]:
        name, code, prefix, _ = rng.choices(_TOWNS, weights=[t[3] for t in _TOWNS])[0]
        street = f"{rng.choice(_STREET_STEMS)}{rng.choice(_STREET_ENDS)} {rng.randint(1, 150)}"
        youngest_adult = max(_born(p) for p in plan.adult_ids)
        moved_in = _random_date(rng, _add_years(youngest_adult, 18), AS_OF - dt.timedelta(days=1))
        postal = f"{prefix}{rng.randint(0, 99):02d}"

        def address(born: dt.date) -> Address:
            return Address(street, postal, name, code, max(moved_in, born))

        young = [c for c in plan.child_ids if _age(c) < _PARENTAL_CHILD_AGE]
        guardians = tuple(plan.adult_ids)
        people = []
        for pnr in plan.adult_ids:
            income = self._tax_years(rng, pnr)
            people.append(
                Citizen(
                    pnr=pnr,
                    birth_date=_born(pnr),
                    household=number,
                    protected_identity=plan.protected,
                    guardian_ids=(),
                    children=tuple(plan.child_ids),
                    address=address(_born(pnr)),
                    tax_years=income,
                    parental_benefit=(
                        _parental(rng, young, len(guardians), income[-1].taxed_income_sek)
                        if young
                        else None
                    ),
                    sickness_benefit=_sickness(rng, pnr),
                )
            )
        for pnr in plan.child_ids:
            people.append(
                Citizen(
                    pnr=pnr,
                    birth_date=_born(pnr),
                    household=number,
                    protected_identity=plan.protected,
                    guardian_ids=guardians,
                    children=(),
                    address=address(_born(pnr)),
                    tax_years=self._tax_years(rng, pnr),
                    parental_benefit=None,
                    sickness_benefit=None,
                )
            )
        return people

    def _tax_years(self, rng: random.Random, pnr: str) -> tuple[TaxYear, ...]:
        # The final assessment of income year Y is made in the autumn of Y + 1.
        last = AS_OF.year - 2
        born = _born(pnr)
        years = []
        for year in range(last - _INCOME_YEARS + 1, last + 1):
            age = year - born.year  # age at the end of the income year
            taxed = capital = 0
            if age >= 18:
                taxed = _earned_income(rng, age)
                capital = _capital_income(rng)
            years.append(
                TaxYear(
                    year,
                    taxed,
                    capital,
                    _random_date(rng, dt.date(year + 1, 8, 1), dt.date(year + 1, 9, 30)),
                )
            )
        return tuple(years)

    # -- queries ------------------------------------------------------------------

    def numbers(self) -> list[str]:
        """Every identity number, household by household."""
        return list(self._citizens)

    def citizen(self, pnr: str) -> Citizen | None:
        """The person with identity number ``pnr`` (12-digit form), if any."""
        return self._citizens.get(pnr)

    def __contains__(self, pnr: object) -> bool:
        return pnr in self._citizens

    def __len__(self) -> int:
        return len(self._citizens)

    def household_of(self, pnr: str) -> tuple[str, ...]:
        """Everyone registered in ``pnr``'s household, ``pnr`` included."""
        citizen = self._citizens.get(pnr)
        return self._households[citizen.household] if citizen else ()

    def holds(self, agency: str, dataset: str) -> bool:
        """Whether this population has records of ``dataset`` for ``agency``."""
        return (agency, dataset) in _RECORDS

    def record(
        self, agency: str, dataset: str, pnr: str, *, on: dt.date | None = None
    ) -> dict[str, Any] | None:
        """The ``dataset`` record ``agency`` holds about ``pnr``, or None.

        Values are ``int``, ``str``, ``bool`` or ``datetime.date``; a field the
        record lacks (a diagnosis for someone not on sick leave) is None. ``on``
        (default today) decides who counts as a child.
        """
        citizen = self._citizens.get(pnr)
        make = _RECORDS.get((agency, dataset))
        if citizen is None or make is None:
            return None
        return make(self, citizen, on or dt.date.today())

    def facts(self, pnr: str, today: dt.date) -> SubjectFacts | None:
        """Age, protected identity and (for a minor) guardians, as of ``today``."""
        citizen = self._citizens.get(pnr)
        if citizen is None:
            return None
        age = citizen.age_on(today) if today >= citizen.birth_date else 0
        wards = tuple(
            other
            for other in self.household_of(pnr)
            if other != pnr
            and pnr in self._citizens[other].guardian_ids
            and self._citizens[other].age_on(today) < 18
            and today >= self._citizens[other].birth_date
        )
        return SubjectFacts(
            age=age,
            protected_identity=citizen.protected_identity,
            guardian_ids=citizen.guardian_ids if age < 18 else (),
            ward_ids=wards,
        )

    def find(self, predicate: Callable[[Citizen], bool]) -> str:
        """The first person (in ``numbers()`` order) matching ``predicate``."""
        for citizen in self._citizens.values():
            if predicate(citizen):
                return citizen.pnr
        raise LookupError("nobody in the synthetic population matches")

    def find_all(self, predicate: Callable[[Citizen], bool]) -> list[str]:
        """Everyone matching ``predicate``."""
        return [c.pnr for c in self._citizens.values() if predicate(c)]

    def an_adult_with_children(self, on: dt.date | None = None) -> str:
        """An adult, not protected, who is guardian of a child under 18 on ``on``."""
        day = on or dt.date.today()
        return self.find(
            lambda c: (
                not c.protected_identity
                and c.age_on(day) >= 18
                and any(_born(k) <= day and _age(k, day) < 18 for k in c.children)
            )
        )

    def a_child(self, on: dt.date | None = None) -> str:
        """A child (under 18 on ``on``), not protected, with guardians."""
        day = on or dt.date.today()
        return self.find(
            lambda c: not c.protected_identity and bool(c.guardian_ids) and c.age_on(day) < 18
        )

    def a_protected_person(self) -> str:
        """Someone with protected personal data."""
        return self.find(lambda c: c.protected_identity)

    def an_adult(self, on: dt.date | None = None) -> str:
        """An adult without children, not protected."""
        day = on or dt.date.today()
        return self.find(
            lambda c: not c.protected_identity and not c.children and c.age_on(day) >= 18
        )

    def a_parent_on_leave(self) -> str:
        """Someone with a parental-benefit record, not protected."""
        return self.find(lambda c: not c.protected_identity and c.parental_benefit is not None)

    def a_person_on_sick_leave(self) -> str:
        """Someone on sick leave (with a diagnosis code), not protected."""
        return self.find(
            lambda c: (
                not c.protected_identity
                and c.sickness_benefit is not None
                and c.sickness_benefit.on_sick_leave
            )
        )


# -- drawing values ---------------------------------------------------------------


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _born(pnr: str) -> dt.date:
    # Synthetic numbers are never coordination numbers, so this is the birth date.
    return dt.date(int(pnr[0:4]), int(pnr[4:6]), int(pnr[6:8]))


def _age(pnr: str, on: dt.date = AS_OF) -> int:
    return personnummer.years_between(_born(pnr), on)


def _round(value: float, to: int = 100) -> int:
    return int(round(value / to) * to)


def _earned_income(rng: random.Random, age: int) -> int:
    if rng.random() < 0.06:  # no earned income that year
        return 0
    if age >= _PENSION_AGE:
        return _round(rng.lognormvariate(math.log(230_000), 0.35))
    median = 180_000 if age < 25 else 390_000
    return _round(rng.lognormvariate(math.log(median), 0.45))


def _capital_income(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.7:
        return 0
    if draw < 0.98:
        return _round(rng.lognormvariate(math.log(6_000), 1.0))
    return _round(rng.lognormvariate(math.log(250_000), 0.8), 1_000)


def _parental(
    rng: random.Random, young: Sequence[str], guardians: int, income: int
) -> ParentalBenefit:
    allotted = _PARENTAL_DAYS_PER_CHILD // guardians
    # Older children have used more of their days.
    age = min(_age(c) for c in young)
    used = min(allotted, round(allotted * rng.uniform(0.1, 0.4) * (1 + age)))
    start = _random_date(rng, AS_OF - dt.timedelta(days=90), AS_OF + dt.timedelta(days=30))
    daily = round(0.8 * 0.97 * income / 365)
    return ParentalBenefit(
        benefit_days_used=used,
        benefit_days_remaining=allotted - used,
        daily_amount_sek=min(_DAILY_CEILING, max(_DAILY_FLOOR, daily)),
        period_start=start,
        period_end=start + dt.timedelta(days=rng.randint(14, 180)),
    )


def _sickness(rng: random.Random, pnr: str) -> SicknessBenefit:
    if _age(pnr) < _PENSION_AGE and rng.random() < _SICK_SHARE:
        return SicknessBenefit(True, rng.choice((25, 50, 75, 100)), rng.choice(_DIAGNOSES))
    return SicknessBenefit(False, 0, None)


def _taxed_income(_: SyntheticPopulation, c: Citizen, __: dt.date) -> dict[str, Any] | None:
    latest = c.tax_years[-1]
    if c.birth_date.year > latest.income_year:
        return None  # not yet born in the last assessed year
    return {
        "income_year": latest.income_year,
        "taxed_income_sek": latest.taxed_income_sek,
        "capital_income_sek": latest.capital_income_sek,
        "assessment_date": latest.assessment_date,
    }


def _address(_: SyntheticPopulation, c: Citizen, __: dt.date) -> dict[str, Any]:
    a = c.address
    return {
        "street_address": a.street_address,
        "postal_code": a.postal_code,
        "city": a.city,
        "municipality_code": a.municipality_code,
        "registered_since": a.registered_since,
    }


def _household_record(p: SyntheticPopulation, c: Citizen, on: dt.date) -> dict[str, Any]:
    members = p.household_of(c.pnr)
    # Children born after ``on`` are not yet registered.
    ages = [_age(m, on) for m in members if _born(m) <= on]
    adults = sum(a >= 18 for a in ages)
    return {"household_size": len(ages), "adults": adults, "children": len(ages) - adults}


def _parental_record(_: SyntheticPopulation, c: Citizen, __: dt.date) -> dict[str, Any] | None:
    b = c.parental_benefit
    if b is None:
        return None
    return {
        "benefit_days_used": b.benefit_days_used,
        "benefit_days_remaining": b.benefit_days_remaining,
        "daily_amount_sek": b.daily_amount_sek,
        "period_start": b.period_start,
        "period_end": b.period_end,
    }


def _sickness_record(_: SyntheticPopulation, c: Citizen, __: dt.date) -> dict[str, Any] | None:
    s = c.sickness_benefit
    if s is None:
        return None
    return {
        "on_sick_leave": s.on_sick_leave,
        "sick_leave_percent": s.sick_leave_percent,
        "diagnosis_code": s.diagnosis_code,
    }


_RecordMaker = Callable[[SyntheticPopulation, Citizen, dt.date], "dict[str, Any] | None"]
_RECORDS: Mapping[tuple[str, str], _RecordMaker] = {
    (TAX_AGENCY, "taxed-income"): _taxed_income,
    (POPULATION_REGISTER, "address"): _address,
    (POPULATION_REGISTER, "household"): _household_record,
    (SOCIAL_INSURANCE, "parental-benefit"): _parental_record,
    (SOCIAL_INSURANCE, "sickness-benefit"): _sickness_record,
}


# -- the agency's domain service ----------------------------------------------------


class NotHeld(TillitError):
    """This agency does not provide that service."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "NOT_PROVIDED"


class Agency:
    """One data-holding agency answering from its register; raises Tillit errors."""

    def __init__(self, agency_id: str, population: SyntheticPopulation, catalog: Catalog) -> None:
        self.agency_id = agency_id
        self._population = population
        self._catalog = catalog

    def fetch(
        self, dataset_id: str, fields: Iterable[str], subject_id: str, *, on: dt.date | None = None
    ) -> dict[str, Any]:
        """The requested fields of one record about ``subject_id``.

        A field the record lacks is left out. Raises ``NotFound`` (reasons
        ``DATASET_NOT_HELD``, ``SUBJECT_NOT_FOUND``, ``RECORD_NOT_FOUND``),
        ``InvalidRequest`` for bad fields, ``InvalidSubjectId``.
        """
        if (
            dataset_id not in self._catalog
            or not self._population.holds(self.agency_id, dataset_id)
            or self._catalog.get(dataset_id).provider != self.agency_id
        ):
            raise NotFound(
                "this agency does not hold the dataset",
                reason="DATASET_NOT_HELD",
                metadata={"agency": self.agency_id, "dataset": dataset_id[:64]},
            )
        wanted = self._catalog.check_fields(dataset_id, fields)
        subject = personnummer.normalize(subject_id)
        if subject not in self._population:
            raise NotFound(
                "the agency has no record of the subject",
                reason="SUBJECT_NOT_FOUND",
                metadata={"agency": self.agency_id},
            )
        record = self._population.record(self.agency_id, dataset_id, subject, on=on)
        if record is None:
            raise NotFound(
                "the agency holds no record of this kind about the subject",
                reason="RECORD_NOT_FOUND",
                metadata={"agency": self.agency_id, "dataset": dataset_id},
            )
        return {name: record[name] for name in wanted if record.get(name) is not None}

    def facts(self, subject_id: str, today: dt.date | None = None) -> SubjectFacts:
        """Facts about a subject; only the population register answers."""
        if self.agency_id != POPULATION_REGISTER:
            raise NotHeld(
                "only the population register provides subject facts",
                metadata={"agency": self.agency_id},
            )
        subject = personnummer.normalize(subject_id)
        facts = self._population.facts(subject, today or dt.date.today())
        if facts is None:
            raise NotFound(
                "the agency has no record of the subject",
                reason="SUBJECT_NOT_FOUND",
                metadata={"agency": self.agency_id},
            )
        return facts
