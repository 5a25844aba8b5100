"""Crypto-shredding: per-month audit pseudonym keys, destroyed after retention, log intact."""

from __future__ import annotations

import datetime as dt
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker import auditor
from broker.audit import ALLOW, AuditLog, AuditRecord, EntryFilter, verify_log
from broker.checkpoint import NoteSigner
from broker.config import load_settings
from broker.keys import Pseudonymiser
from broker.shredding import EpochKeyring, epoch_end, epoch_of, shred_after

ORIGIN = "tillit.test/audit"
SIGNER = NoteSigner.from_private_key(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x04" * 32))
LONG_LIVED = b"\x11" * 32
SUBJECT = "198507179862"


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def at(year: int, month: int, day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def test_epochs_are_utc_calendar_months() -> None:
    assert epoch_of(at(2026, 1, 31, 23)) == "2026-01"
    local = dt.datetime(2026, 2, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert epoch_of(local) == "2026-01"  # still January in UTC
    assert epoch_end("2026-12") == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert shred_after("2026-01", 30) == dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    assert shred_after("2026-01", 0) is None
    with pytest.raises(ValueError, match="not an epoch"):
        epoch_end("2026-13")


def test_keys_are_made_per_month_private_and_reused(tmp_path: Path) -> None:
    clock = Clock(at(2026, 1, 15))
    keyring = EpochKeyring.open(tmp_path / "pseudonym", retention_days=30, clock=clock)
    january = keyring.current()
    path = tmp_path / "pseudonym" / "2026-01.key"
    assert january[0] == "2026-01"
    assert path.read_bytes() == january[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    clock.now = at(2026, 2, 1, 0)
    assert keyring.current()[0] == "2026-02"
    again = EpochKeyring.open(tmp_path / "pseudonym", retention_days=30, clock=clock)
    assert dict(again.live()) == dict(keyring.live())  # another process reads the same keys


def test_pseudonyms_carry_the_epoch_and_consent_keeps_its_key(tmp_path: Path) -> None:
    clock = Clock(at(2026, 1, 15))
    keyring = EpochKeyring.open(tmp_path / "p", retention_days=30, clock=clock)
    pseudonymiser = Pseudonymiser(LONG_LIVED, epochs=keyring)
    january = pseudonymiser.pseudonym(SUBJECT)
    consent_january = pseudonymiser.pseudonym(SUBJECT, "consent")
    clock.now = at(2026, 2, 10)
    february = pseudonymiser.pseudonym(SUBJECT)

    assert january.startswith("2026-01:")
    assert february.startswith("2026-02:")
    assert january != february  # a new month, a new key: months are not linkable
    legacy = Pseudonymiser(LONG_LIVED).pseudonym(SUBJECT)
    assert pseudonymiser.pseudonyms(SUBJECT) == [february, january, legacy]
    assert pseudonymiser.pseudonym(SUBJECT, "consent") == consent_january
    assert consent_january.startswith("k1:")
    assert pseudonymiser.pseudonyms(SUBJECT, "consent") == [consent_january]


def test_without_epoch_keys_the_old_behaviour_holds() -> None:
    plain = Pseudonymiser(LONG_LIVED)
    token = plain.pseudonym(SUBJECT)
    assert token.startswith("k1:")
    assert plain.pseudonyms(SUBJECT) == [token]
    assert Pseudonymiser(LONG_LIVED, "k2").pseudonym(SUBJECT).startswith("k2:")


def test_shredding_waits_for_the_retention_period(tmp_path: Path) -> None:
    clock = Clock(at(2026, 1, 15))
    keyring = EpochKeyring.open(tmp_path / "p", retention_days=30, clock=clock)
    clock.now = at(2026, 2, 3)
    keyring.current()
    clock.now = dt.datetime(2026, 3, 2, 23, 59, tzinfo=dt.UTC)
    assert keyring.shred() == []  # January ended 30 days ago less a minute
    clock.now = dt.datetime(2026, 3, 3, 0, 0, tzinfo=dt.UTC)
    assert keyring.shred(dry_run=True) == ["2026-01"]
    assert (tmp_path / "p" / "2026-01.key").exists()
    assert keyring.shred() == ["2026-01"]
    assert not (tmp_path / "p" / "2026-01.key").exists()
    assert [e for e, _ in keyring.live()] == ["2026-02"]
    assert keyring.epochs_on_disk() == ["2026-02"]


def test_expired_keys_are_not_used_even_before_the_file_is_shredded(tmp_path: Path) -> None:
    clock = Clock(at(2026, 1, 15))
    keyring = EpochKeyring.open(tmp_path / "p", retention_days=10, clock=clock)
    pseudonymiser = Pseudonymiser(LONG_LIVED, epochs=keyring)
    january = pseudonymiser.pseudonym(SUBJECT)
    clock.now = at(2026, 2, 11)
    assert january not in pseudonymiser.pseudonyms(SUBJECT)
    assert (tmp_path / "p" / "2026-01.key").exists()  # still on disk until `audit shred`
    reopened = EpochKeyring.open(tmp_path / "p", retention_days=10, clock=clock)
    assert "2026-01" not in dict(reopened.live())


def test_zero_retention_keeps_every_key(tmp_path: Path) -> None:
    clock = Clock(at(2020, 1, 15))
    keyring = EpochKeyring.open(tmp_path / "p", retention_days=0, clock=clock)
    clock.now = at(2030, 1, 1)
    assert keyring.shred() == []
    assert "2020-01" in dict(keyring.live())


def _record(pseudonym: str, case: str) -> AuditRecord:
    return AuditRecord(
        kind="exchange",
        requester="exempelby-housing",
        service="housing-allowance",
        provider="tax-agency",
        dataset="taxed-income",
        subject_pseudonym=pseudonym,
        purpose="housing-allowance",
        legal_basis="GDPR Art. 6(1)(e)",
        case_reference=case,
        requested_fields=("taxed_income",),
        released_fields=("taxed_income",),
        decision=ALLOW,
        details={"actor": pseudonym},
    )


async def test_shredded_month_is_unlinked_while_the_log_still_verifies(
    sessions: async_sessionmaker[Any], tmp_path: Path
) -> None:
    clock = Clock(at(2026, 1, 20))
    keyring = EpochKeyring.open(tmp_path / "p", retention_days=30, clock=clock)
    pseudonymiser = Pseudonymiser(LONG_LIVED, epochs=keyring)
    log = AuditLog(sessions, SIGNER, origin=ORIGIN, clock=clock)
    await log.start()
    try:
        january = pseudonymiser.pseudonym(SUBJECT)
        await log.append(_record(january, "JAN"))
        await log.append(_record(pseudonymiser.pseudonym("199001011239"), "OTHER"))
        clock.now = at(2026, 3, 10)
        await log.append(_record(pseudonymiser.pseudonym(SUBJECT), "MAR"))
        await log.checkpoint()

        async def cases() -> list[str]:
            flt = EntryFilter(subject_pseudonyms=tuple(pseudonymiser.pseudonyms(SUBJECT)))
            entries, _ = await log.list_entries(flt, 100)
            return [e.record.case_reference for e in entries]

        clock.now = at(2026, 3, 2)
        assert await cases() == ["JAN", "MAR"]  # within retention: the citizen sees both
        clock.now = at(2026, 3, 4)
        assert keyring.shred() == ["2026-01"]
        assert await cases() == ["MAR"]  # January's entry can no longer be found by person
        stored, _ = await log.list_entries(EntryFilter(), 100)
        assert stored[0].record.subject_pseudonym == january  # but it is still in the log
    finally:
        await log.stop()
    verdict = await verify_log(sessions, SIGNER.verifier())
    assert verdict.ok
    assert verdict.size == 3


async def test_shred_command_uses_the_configured_retention(tmp_path: Path) -> None:
    settings = load_settings(None, env={})
    settings = replace(
        settings,
        broker=replace(settings.broker, data_dir=tmp_path),
        audit=replace(settings.audit, retention_days=30),
    )
    old = EpochKeyring.open(
        settings.keys_dir / "pseudonym", clock=lambda: dt.datetime(2020, 5, 5, tzinfo=dt.UTC)
    )
    EpochKeyring.open(settings.keys_dir / "pseudonym")  # this month's
    assert len(old.epochs_on_disk()) == 2
    dry = auditor.shred(settings, dry_run=True)
    assert dry["shredded"] == ["2020-05"]
    assert len(old.epochs_on_disk()) == 2
    done = auditor.shred(settings, dry_run=False)
    assert done["shredded"] == ["2020-05"]
    assert done["live"] == [epoch_of(dt.datetime.now(dt.UTC))]
