"""A DPO's summary of the audit log over a time window: counts, and anomalies worth a look.

Counts are by requester, purpose, dataset, outcome (allow/deny) and kind, over every entry
in the window. The anomaly heuristics look at exchanges only (``kind == "exchange"``); each is
deliberately simple, so that a DPO can redo it by hand from an export:

``SUBJECT_RATE``: a requester fetching many more distinct people than it usually does.
    For each requester and UTC day, count the distinct ``data_subject`` pseudonyms of its
    exchanges (allowed or denied). Its *baseline* for a day is the median of its counts on
    every other day of the window, days without exchanges counting as 0. A day is flagged
    when its count is at least ``subject_floor`` and more than ``subject_factor`` times the
    baseline. Needs at least ``min_history_days`` other days in the window; with fewer, the
    heuristic is skipped and a note says so.

``REPEATED_REQUEST``: the same request made again and again.
    A request is the same if requester, e-service, subject, dataset, purpose and requested
    fields are equal. Flagged when at least ``repeat_threshold`` of them fall within any
    ``repeat_window`` (idempotent retries do not count: a retry with the same key is answered
    from the first exchange and is not logged again).

``DENIAL_SURGE``: many more refusals than usual.
    For each requester, and for all requesters together (``"*"``), count denials per UTC hour.
    The baseline for an hour is the median of the counts in every other hour of the window
    (hours without denials counting as 0). An hour is flagged when it has at least
    ``denial_floor`` denials and more than ``denial_factor`` times the baseline.

Pseudonyms change with the key epoch (each calendar month), so a subject seen in two months
counts as two; days never span months, so ``SUBJECT_RATE`` is unaffected.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from broker.audit import DENY, AuditEntry

__all__ = ["Heuristics", "ReportBuilder", "build_report"]

_DAY = dt.timedelta(days=1)
_HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Heuristics:
    """Thresholds of the anomaly heuristics (see the module docstring)."""

    subject_factor: float = 3.0
    subject_floor: int = 20
    min_history_days: int = 3
    repeat_threshold: int = 3
    repeat_window_s: int = 3600
    denial_factor: float = 3.0
    denial_floor: int = 10


def _floor(time: dt.datetime, unit: dt.timedelta) -> dt.datetime:
    utc = time.astimezone(dt.UTC)
    if unit == _DAY:
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return utc.replace(minute=0, second=0, microsecond=0)


def _buckets(start: dt.datetime, end: dt.datetime, unit: dt.timedelta) -> int:
    """How many ``unit`` buckets the window ``[start, end)`` touches (at least one)."""
    first, last = _floor(start, unit), _floor(end - dt.timedelta(microseconds=1), unit)
    return max(1, (last - first) // unit + 1)


def _median_without(ordered: Sequence[int], value: int) -> float:
    """The median of ``ordered`` (sorted) with one occurrence of ``value`` taken out."""
    remaining = len(ordered) - 1
    if remaining <= 0:
        return 0.0
    skip = bisect.bisect_left(ordered, value)

    def at(k: int) -> int:
        return ordered[k] if k < skip else ordered[k + 1]

    if remaining % 2:
        return float(at(remaining // 2))
    return (at(remaining // 2 - 1) + at(remaining // 2)) / 2


def _surges(
    counts: dict[dt.datetime, int], buckets: int, floor: int, factor: float
) -> list[tuple[dt.datetime, int, float]]:
    """Buckets whose count is >= ``floor`` and > ``factor`` x the median of the others."""
    ordered = sorted([0] * max(0, buckets - len(counts)) + list(counts.values()))
    flagged = []
    for bucket, count in sorted(counts.items()):
        if count < floor:
            continue
        baseline = _median_without(ordered, count)
        if count > factor * baseline:
            flagged.append((bucket, count, baseline))
    return flagged


def _peak(times: list[tuple[dt.datetime, int]], window: dt.timedelta) -> tuple[int, int, int]:
    """The most entries within any ``window``: (count, first index, last index)."""
    best = (0, -1, -1)
    left = 0
    for right in range(len(times)):
        while times[right][0] - times[left][0] > window:
            left += 1
        count = right - left + 1
        if count > best[0]:
            best = (count, times[left][1], times[right][1])
    return best


class ReportBuilder:
    """Feed entries with :meth:`add` (any order within the window), then :meth:`report`."""

    def __init__(
        self,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        heuristics: Heuristics | None = None,
    ) -> None:
        self.since = since
        self.until = until
        self.heuristics = heuristics or Heuristics()
        self.entries = 0
        self._first: dt.datetime | None = None
        self._last: dt.datetime | None = None
        self._by: dict[str, Counter[str]] = {
            name: Counter() for name in ("requester", "purpose", "dataset", "outcome", "kind")
        }
        self._subjects: dict[str, dict[dt.datetime, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self._requests: dict[tuple[str, ...], list[tuple[dt.datetime, int]]] = defaultdict(list)
        self._denials: dict[str, Counter[dt.datetime]] = defaultdict(Counter)

    def add(self, entry: AuditEntry) -> None:
        r = entry.record
        self.entries += 1
        time = entry.time
        self._first = time if self._first is None else min(self._first, time)
        self._last = time if self._last is None else max(self._last, time)
        by = self._by
        by["requester"][r.requester or "(none)"] += 1
        by["purpose"][r.purpose or "(none)"] += 1
        by["dataset"][r.dataset or "(none)"] += 1
        by["outcome"][r.decision or "(none)"] += 1
        by["kind"][r.kind or "(none)"] += 1
        if r.kind != "exchange":
            return
        if r.subject_pseudonym:
            self._subjects[r.requester][_floor(time, _DAY)].add(r.subject_pseudonym)
            key = (
                r.requester,
                r.service,
                r.subject_pseudonym,
                r.dataset,
                r.purpose,
                ",".join(sorted(r.requested_fields)),
            )
            self._requests[key].append((time, entry.index))
        if r.decision == DENY:
            hour = _floor(time, _HOUR)
            self._denials[r.requester][hour] += 1
            self._denials["*"][hour] += 1

    def _window(self) -> tuple[dt.datetime, dt.datetime] | None:
        start = self.since or self._first
        end = self.until or (self._last + dt.timedelta(microseconds=1) if self._last else None)
        if start is None or end is None or end <= start:
            return None
        return start, end

    def report(self) -> dict[str, Any]:
        h = self.heuristics
        anomalies: list[dict[str, Any]] = []
        notes: list[str] = []
        window = self._window()
        if window is not None:
            start, end = window
            days = _buckets(start, end, _DAY)
            if days - 1 < h.min_history_days:
                notes.append(
                    f"SUBJECT_RATE not evaluated: the window spans {days} day(s), it needs "
                    f"{h.min_history_days} besides the day under test"
                )
            else:
                for requester, per_day in sorted(self._subjects.items()):
                    counts = {day: len(s) for day, s in per_day.items()}
                    for day, count, baseline in _surges(
                        counts, days, h.subject_floor, h.subject_factor
                    ):
                        anomalies.append(
                            {
                                "type": "SUBJECT_RATE",
                                "requester": requester,
                                "day": day.date().isoformat(),
                                "distinct_subjects": count,
                                "baseline": baseline,
                            }
                        )
            hours = _buckets(start, end, _HOUR)
            for requester, per_hour in sorted(self._denials.items()):
                for hour, count, baseline in _surges(
                    dict(per_hour), hours, h.denial_floor, h.denial_factor
                ):
                    anomalies.append(
                        {
                            "type": "DENIAL_SURGE",
                            "requester": requester,
                            "hour": hour.isoformat().replace("+00:00", "Z"),
                            "denials": count,
                            "baseline": baseline,
                        }
                    )
        span = dt.timedelta(seconds=h.repeat_window_s)
        for key, times in sorted(self._requests.items()):
            if len(times) < h.repeat_threshold:
                continue
            times.sort()
            count, first, last = _peak(times, span)
            if count >= h.repeat_threshold:
                requester, service, subject, dataset, purpose, fields = key
                anomalies.append(
                    {
                        "type": "REPEATED_REQUEST",
                        "requester": requester,
                        "service": service,
                        "data_subject": subject,
                        "dataset": dataset,
                        "purpose": purpose,
                        "fields": fields.split(",") if fields else [],
                        "count_in_window": count,
                        "total": len(times),
                        "first_index": first,
                        "last_index": last,
                    }
                )
        order = {"SUBJECT_RATE": 0, "REPEATED_REQUEST": 1, "DENIAL_SURGE": 2}
        anomalies.sort(key=lambda a: order[a["type"]])
        return {
            "window": {
                "since": _iso(self.since or self._first),
                "until": _iso(self.until or self._last),
                "entries": self.entries,
            },
            "counts": {f"by_{name}": dict(c.most_common()) for name, c in self._by.items()},
            "anomalies": anomalies,
            "heuristics": asdict(h),
            "notes": notes,
        }


def _iso(time: dt.datetime | None) -> str:
    return time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if time else ""


def build_report(
    entries: Iterable[AuditEntry],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    heuristics: Heuristics | None = None,
) -> dict[str, Any]:
    """The report over ``entries`` (all within ``[since, until)``)."""
    builder = ReportBuilder(since, until, heuristics)
    for entry in entries:
        builder.add(entry)
    return builder.report()
