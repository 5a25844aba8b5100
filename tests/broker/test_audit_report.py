"""The DPO report: counts, and each anomaly heuristic on both sides of its threshold."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from broker.audit import ALLOW, DENY, AuditEntry, AuditRecord
from broker.audit_report import Heuristics, _median_without, build_report

START = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
WEEK_END = START + dt.timedelta(days=7)


class Log:
    """Builds entries in index order."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def add(
        self,
        time: dt.datetime,
        requester: str = "req-a",
        subject: int = 0,
        *,
        decision: str = ALLOW,
        dataset: str = "taxed-income",
        purpose: str = "housing-allowance",
        kind: str = "exchange",
        fields: tuple[str, ...] = ("taxed_income",),
    ) -> None:
        record = AuditRecord(
            kind=kind,
            requester=requester,
            service="e-service",
            provider="tax-agency",
            dataset=dataset,
            subject_pseudonym=f"2026-04:{subject:064x}",
            purpose=purpose,
            legal_basis="GDPR Art. 6(1)(e)",
            case_reference="C",
            requested_fields=fields,
            released_fields=fields if decision == ALLOW else (),
            decision=decision,
        )
        index = len(self.entries)
        leaf = hashlib.sha256(b"%d" % index).digest()
        self.entries.append(AuditEntry(index, f"id-{index}", time, record, leaf))

    def report(self, **heuristics: Any) -> dict[str, Any]:
        return build_report(self.entries, START, WEEK_END, Heuristics(**heuristics))


def _types(report: dict[str, Any]) -> list[str]:
    return [a["type"] for a in report["anomalies"]]


def _steady(log: Log, per_day: int = 5) -> None:
    """A usual week: req-a fetches ``per_day`` different people each day, at noon."""
    for day in range(7):
        for k in range(per_day):
            log.add(START + dt.timedelta(days=day, hours=12, minutes=k), subject=day * 100 + k)


def test_counts_by_requester_purpose_dataset_outcome() -> None:
    log = Log()
    log.add(START, "req-a")
    log.add(START, "req-a", decision=DENY)
    log.add(START, "req-b", dataset="household", purpose="school-transport")
    log.add(START, "", kind="policy_change", dataset="", purpose="")
    counts = log.report()["counts"]
    assert counts["by_requester"] == {"req-a": 2, "req-b": 1, "(none)": 1}
    assert counts["by_purpose"] == {"housing-allowance": 2, "school-transport": 1, "(none)": 1}
    assert counts["by_dataset"] == {"taxed-income": 2, "household": 1, "(none)": 1}
    assert counts["by_outcome"] == {"allow": 3, "deny": 1}
    assert counts["by_kind"] == {"exchange": 3, "policy_change": 1}


def test_a_steady_week_has_no_anomalies() -> None:
    log = Log()
    _steady(log)
    report = log.report()
    assert report["anomalies"] == []
    assert report["notes"] == []
    assert report["window"]["entries"] == 35


def test_subject_rate_flags_a_day_with_many_more_people() -> None:
    log = Log()
    _steady(log)
    for k in range(16):  # day 3: 5 usual + 16 more = 21 distinct, baseline 5
        log.add(START + dt.timedelta(days=3, hours=15, seconds=k), subject=9000 + k)
    (anomaly,) = log.report()["anomalies"]
    assert anomaly == {
        "type": "SUBJECT_RATE",
        "requester": "req-a",
        "day": "2026-04-04",
        "distinct_subjects": 21,
        "baseline": 5.0,
    }


def test_subject_rate_needs_both_the_floor_and_the_factor() -> None:
    below_floor = Log()
    _steady(below_floor, per_day=1)
    for k in range(18):  # 19 distinct people against a baseline of 1: under the floor of 20
        below_floor.add(START + dt.timedelta(days=2, hours=9, seconds=k), subject=5000 + k)
    assert below_floor.report()["anomalies"] == []

    busy = Log()
    _steady(busy, per_day=10)
    for k in range(20):  # 30 against a usual 10: exactly 3x is not "more than" 3x
        busy.add(START + dt.timedelta(days=2, hours=9, seconds=k), subject=5000 + k)
    assert busy.report()["anomalies"] == []
    busy.add(START + dt.timedelta(days=2, hours=10), subject=7777)
    assert _types(busy.report()) == ["SUBJECT_RATE"]


def test_subject_rate_counts_people_not_fetches() -> None:
    log = Log()
    _steady(log)
    for k in range(40):  # the same two people forty times: no surge of subjects
        log.add(START + dt.timedelta(days=4, hours=8, minutes=k), subject=k % 2, dataset=f"d{k}")
    assert "SUBJECT_RATE" not in _types(log.report())


def test_subject_rate_needs_history() -> None:
    log = Log()
    for k in range(50):
        log.add(START + dt.timedelta(hours=1, seconds=k), subject=k)
    report = build_report(log.entries, START, START + dt.timedelta(days=2))
    assert "SUBJECT_RATE" not in _types(report)
    assert report["notes"][0].startswith("SUBJECT_RATE not evaluated")


def test_repeated_request_within_the_window() -> None:
    log = Log()
    for minutes in (0, 20, 55):
        log.add(START + dt.timedelta(minutes=minutes), subject=42)
    (anomaly,) = log.report()["anomalies"]
    assert anomaly["type"] == "REPEATED_REQUEST"
    assert (anomaly["count_in_window"], anomaly["total"]) == (3, 3)
    assert (anomaly["first_index"], anomaly["last_index"]) == (0, 2)
    assert anomaly["fields"] == ["taxed_income"]


def test_repeats_spread_out_or_different_are_not_flagged() -> None:
    log = Log()
    for hours in (0, 2, 4, 6):  # four times, but never three within an hour
        log.add(START + dt.timedelta(hours=hours), subject=42)
    log.add(START + dt.timedelta(minutes=1), subject=42, fields=("assets",))  # another request
    log.add(START + dt.timedelta(minutes=2), subject=42, purpose="school-transport")
    assert log.report()["anomalies"] == []
    assert _types(log.report(repeat_window_s=4 * 3600)) == ["REPEATED_REQUEST"]


def test_denial_surge_per_requester_and_overall() -> None:
    log = Log()
    _steady(log)
    for day in range(7):  # one denial a day is usual
        log.add(START + dt.timedelta(days=day, hours=9), subject=day, decision=DENY)
    for k in range(12):
        log.add(START + dt.timedelta(days=5, hours=14, minutes=k), "req-b", k, decision=DENY)
    surges = [a for a in log.report()["anomalies"] if a["type"] == "DENIAL_SURGE"]
    assert [(a["requester"], a["hour"], a["denials"]) for a in surges] == [
        ("*", "2026-04-06T14:00:00Z", 12),
        ("req-b", "2026-04-06T14:00:00Z", 12),
    ]
    assert all(a["baseline"] == 0.0 for a in surges)


def test_denials_below_the_floor_are_not_a_surge() -> None:
    log = Log()
    for k in range(9):
        log.add(START + dt.timedelta(hours=3, minutes=k), subject=k, decision=DENY)
    assert log.report()["anomalies"] == []
    assert _types(log.report(denial_floor=9)) == ["DENIAL_SURGE", "DENIAL_SURGE"]


def test_median_without_one_value() -> None:
    assert _median_without([0, 0, 0, 5, 9], 9) == 0.0
    assert _median_without([1, 2, 3, 4], 4) == 2.0
    assert _median_without([1, 2, 3, 4], 1) == 3.0
    assert _median_without([1, 2, 3], 2) == 2.0
    assert _median_without([7], 7) == 0.0
