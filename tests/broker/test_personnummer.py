"""Personal identity numbers: format, dates, check digit, synthetic numbers."""

from __future__ import annotations

import datetime as dt

import pytest

from broker import personnummer
from broker.errors import InvalidSubjectId


def _valid(date_digits: str, serial: str = "981") -> str:
    """A valid 12-digit number for YYYYMMDD and a synthetic serial."""
    return date_digits + serial + personnummer.check_digit(date_digits[2:] + serial)


def test_check_digit_matches_skatteverkets_published_example() -> None:
    # The worked example in Skatteverket's description of the check digit.
    assert personnummer.check_digit("811218987") == "6"


@pytest.mark.parametrize("bad", ["", "12345678", "8112189870", "81121898a"])
def test_check_digit_needs_nine_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="nine digits"):
        personnummer.check_digit(bad)


def test_normalize_accepts_both_forms() -> None:
    pnr = _valid("19900517")
    dashed = f"{pnr[:8]}-{pnr[8:]}"
    assert personnummer.normalize(pnr) == pnr
    assert personnummer.normalize(dashed) == pnr
    assert personnummer.normalize(f"  {dashed} ") == pnr


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "19900517",
        "900517-9816",  # the ten-digit form leaves the century open
        "9005179816",
        "19900517+9816",
        "19900517--9816",
        "1990O5179816",
        "１９９００５１７９８１６",  # full-width digits are not ASCII digits
        "199005179816 1",
    ],
)
def test_normalize_rejects_bad_format(bad: str) -> None:
    with pytest.raises(InvalidSubjectId, match="form YYYYMMDDNNNC"):
        personnummer.normalize(bad)


@pytest.mark.parametrize(
    "date_digits",
    ["20230229", "19901301", "19900001", "19900500", "19900431", "19900560", "19900592"],
)
def test_normalize_rejects_impossible_dates(date_digits: str) -> None:
    with pytest.raises(InvalidSubjectId, match="valid date of birth") as caught:
        personnummer.normalize(_valid(date_digits))
    assert caught.value.reason == "INVALID_SUBJECT_ID"


def test_normalize_accepts_leap_day() -> None:
    assert personnummer.birth_date(_valid("20240229")) == dt.date(2024, 2, 29)


def test_normalize_rejects_every_wrong_check_digit() -> None:
    pnr = _valid("19900517")
    for digit in "0123456789":
        if digit == pnr[-1]:
            continue
        with pytest.raises(InvalidSubjectId, match="check digit"):
            personnummer.normalize(pnr[:-1] + digit)


def test_errors_never_echo_the_number() -> None:
    pnr = _valid("19900517")
    wrong = pnr[:-1] + str((int(pnr[-1]) + 1) % 10)
    for value in (wrong, wrong[:8] + "-" + wrong[8:], wrong + "9", "19901301" + pnr[8:]):
        with pytest.raises(InvalidSubjectId) as caught:
            personnummer.normalize(value)
        text = str(caught.value) + repr(caught.value.metadata)
        assert wrong[:8] not in text
        assert wrong[-4:] not in text


def test_coordination_number_day_plus_sixty() -> None:
    samordning = _valid("19900577")
    assert personnummer.normalize(samordning) == samordning
    assert personnummer.is_coordination_number(samordning)
    assert not personnummer.is_coordination_number(_valid("19900517"))
    assert personnummer.birth_date(samordning) == dt.date(1990, 5, 17)


def test_birth_date_and_age() -> None:
    pnr = _valid("20080315")
    assert personnummer.birth_date(pnr) == dt.date(2008, 3, 15)
    assert personnummer.age_on(pnr, dt.date(2026, 3, 14)) == 17
    assert personnummer.age_on(pnr, dt.date(2026, 3, 15)) == 18
    assert personnummer.age_on(pnr, dt.date(2008, 3, 15)) == 0
    with pytest.raises(ValueError, match="before the date of birth"):
        personnummer.age_on(pnr, dt.date(2008, 3, 14))


def test_age_validates_the_number() -> None:
    with pytest.raises(InvalidSubjectId):
        personnummer.age_on("199005179810", dt.date(2026, 1, 1))


def test_synthetic_numbers_are_valid_unique_and_in_range() -> None:
    first, last = dt.date(1950, 1, 1), dt.date(1950, 12, 31)
    numbers = personnummer.synthetic_numbers(2_000, seed=7, born_between=(first, last))
    assert len(numbers) == len(set(numbers)) == 2_000
    for pnr in numbers:
        assert personnummer.normalize(pnr) == pnr
        assert int(pnr[8:11]) in range(980, 1000)
        assert first <= personnummer.birth_date(pnr) <= last
        assert not personnummer.is_coordination_number(pnr)


def test_synthetic_numbers_are_deterministic() -> None:
    assert personnummer.synthetic_numbers(50, seed=1) == personnummer.synthetic_numbers(50, 1)
    assert personnummer.synthetic_numbers(50, seed=1) != personnummer.synthetic_numbers(50, 2)


def test_synthetic_numbers_default_range() -> None:
    years = {int(p[:4]) for p in personnummer.synthetic_numbers(5_000, seed=3)}
    assert min(years) >= 1940
    assert max(years) <= 2025
    assert len(years) > 60  # spread over the whole range


def test_synthetic_numbers_can_fill_every_slot_of_a_day() -> None:
    day = dt.date(2000, 2, 29)
    numbers = personnummer.synthetic_numbers(20, seed=0, born_between=(day, day))
    assert sorted(n[8:11] for n in numbers) == [str(s) for s in range(980, 1000)]
    with pytest.raises(ValueError, match="between 0 and 20"):
        personnummer.synthetic_numbers(21, seed=0, born_between=(day, day))


def test_synthetic_numbers_rejects_backward_range() -> None:
    with pytest.raises(ValueError, match="forwards"):
        personnummer.synthetic_numbers(1, 0, (dt.date(2000, 1, 2), dt.date(2000, 1, 1)))
    assert personnummer.synthetic_numbers(0, 0) == []
