"""Swedish personal identity numbers (personnummer) and coordination numbers.

The canonical form is twelve digits, ``YYYYMMDDNNNC``: birth date, a three-digit
serial number and a check digit computed, as Skatteverket specifies, with the
Luhn algorithm over the ten-digit ``YYMMDDNNN`` part. A coordination number
(samordningsnummer) is the same with 60 added to the day of birth.

Error messages never repeat the number: it is personal data.
"""

from __future__ import annotations

import datetime as dt
import random
import re

from broker.errors import InvalidSubjectId

_FORM = re.compile(r"(\d{8})-?(\d{4})", re.ASCII)
_COORDINATION_OFFSET = 60
# Serial numbers this project uses for synthetic people. Skatteverket does not
# reserve them: the range is our convention, meant to stay clear of the most
# common real serials. A real person may still hold the same number, so these
# numbers belong only in invented registers.
SYNTHETIC_SERIALS = range(980, 1000)
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def check_digit(nine: str) -> str:
    """The Luhn check digit for the nine digits ``YYMMDDNNN``."""
    if len(nine) != 9 or not nine.isascii() or not nine.isdigit():
        raise ValueError("expected exactly nine digits")
    # Luhn: every other digit, from the first, is doubled and its digits summed.
    total = sum(_DOUBLED[int(c)] for c in nine[0::2]) + sum(int(c) for c in nine[1::2])
    return str(-total % 10)


def _date_part(digits: str) -> dt.date:
    """The birth date in the first eight digits, undoing the coordination offset."""
    year, month, day = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    if day > _COORDINATION_OFFSET:
        day -= _COORDINATION_OFFSET
    return dt.date(year, month, day)


def normalize(value: str) -> str:
    """Return the 12-digit form of ``YYYYMMDDNNNC`` or ``YYYYMMDD-NNNC``.

    Raises ``InvalidSubjectId`` for a bad format, an impossible date or a wrong
    check digit.
    """
    match = _FORM.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise InvalidSubjectId(
            "the personal identity number must have the form YYYYMMDDNNNC or YYYYMMDD-NNNC"
        )
    digits = match.group(1) + match.group(2)
    try:
        _date_part(digits)
    except ValueError as exc:
        raise InvalidSubjectId(
            "the personal identity number does not contain a valid date of birth"
        ) from exc
    if check_digit(digits[2:11]) != digits[11]:
        raise InvalidSubjectId("the personal identity number has a wrong check digit")
    return digits


def is_coordination_number(pnr: str) -> bool:
    """Whether ``pnr`` is a coordination number (day of birth plus 60)."""
    return int(normalize(pnr)[6:8]) > _COORDINATION_OFFSET


def birth_date(pnr: str) -> dt.date:
    """The date of birth encoded in ``pnr``."""
    return _date_part(normalize(pnr))


def age_on(pnr: str, on: dt.date) -> int:
    """Age in whole years on the date ``on``."""
    return years_between(birth_date(pnr), on)


def years_between(born: dt.date, on: dt.date) -> int:
    """Whole years from ``born`` to ``on`` (an age)."""
    if on < born:
        raise ValueError("the date is before the date of birth")
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def synthetic_numbers(
    count: int,
    seed: int,
    born_between: tuple[dt.date, dt.date] = (dt.date(1940, 1, 1), dt.date(2025, 12, 31)),
) -> list[str]:
    """``count`` distinct, valid, synthetic personal identity numbers.

    Synthetic means generated here, never taken from a register: birth dates
    are drawn uniformly from ``born_between`` (inclusive) and serial numbers
    from 980-999 (``SYNTHETIC_SERIALS``). The same arguments always give the
    same list. Use them only with invented data.
    """
    first, last = born_between
    if last < first:
        raise ValueError("born_between must run forwards in time")
    per_day = len(SYNTHETIC_SERIALS)
    capacity = ((last - first).days + 1) * per_day
    if not 0 <= count <= capacity:
        raise ValueError(f"can make between 0 and {capacity} numbers for these dates")
    # Sampling slot indices (day, serial) without replacement gives uniqueness
    # for free, in time linear in ``count``.
    slots = random.Random(seed).sample(range(capacity), count)
    numbers = []
    for slot in slots:
        day, serial = divmod(slot, per_day)
        born = first + dt.timedelta(days=day)
        nine = f"{born:%y%m%d}{SYNTHETIC_SERIALS[serial]:03d}"
        numbers.append(f"{born.year:04d}{nine[2:]}{check_digit(nine)}")
    return numbers
