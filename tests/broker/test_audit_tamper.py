"""Tampering with a real SQLite audit store, and who catches it.

The log is written through ``AuditLog.append`` (20 entries, checkpoints at 8 and 20); then the
database is edited behind the broker's back, as an insider with write access could. Edits in
place are named by ``verify_log`` down to the entry; a history recomputed wholesale is caught
by the signed checkpoints, or, when the insider also deleted those and re-signed with the real
key, by a witness that remembers an earlier checkpoint.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker import merkle
from broker.audit import (
    ALLOW,
    DENY,
    AuditEntry,
    AuditLog,
    AuditRecord,
    canonical_entry,
    entry_from_row,
    row_values,
    verify_log,
)
from broker.checkpoint import NoteSigner, NoteVerifier
from broker.errors import Reason
from broker.models import AuditEntryRow, TreeStateRow
from broker.witness import WitnessError, WitnessState, observe

ORIGIN = "tillit.test/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
SIGNER = NoteSigner.from_private_key(ORIGIN, KEY)
VERIFIER = NoteVerifier(ORIGIN, KEY.public_key())
# The insider's own key, under the log's name: signatures parse but do not verify.
FORGER = NoteSigner.from_private_key(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x09" * 32))
T0 = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
SIZE = 20


def _record(i: int) -> AuditRecord:
    deny = i % 5 == 3
    return AuditRecord(
        kind="exchange",
        requester=f"requester-{i % 3}",
        service="housing-allowance",
        provider="tax-agency",
        dataset="taxed-income",
        subject_pseudonym=f"2026-05:{i:064x}",
        purpose="housing-allowance",
        legal_basis="GDPR Art. 6(1)(e)",
        case_reference=f"CASE-{i}",
        requested_fields=("taxed_income",),
        released_fields=() if deny else ("taxed_income",),
        decision=DENY if deny else ALLOW,
        reasons=(Reason("CONSENT_MISSING", "no consent", "GDPR Art. 7"),) if deny else (),
        decision_id=str(uuid.UUID(int=i)),
        data_digest="" if deny else f"{i:064x}",
    )


class Source:
    """The witness's view of a (restarted) broker: its latest checkpoint and proofs."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def latest_checkpoint(self) -> str:
        return (await self.log.checkpoint())[0]

    async def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return await self.log.consistency_proof(first_size, second_size)


async def _write(
    sessions: async_sessionmaker[Any],
    records: Sequence[AuditRecord],
    signer: NoteSigner,
    *,
    checkpoint_at: Sequence[int],
    start: dt.datetime = T0,
) -> list[AuditEntry]:
    """Append ``records`` through a real ``AuditLog``, checkpointing after the given sizes."""
    now = [start]
    log = AuditLog(sessions, signer, origin=ORIGIN, clock=lambda: now[0])
    await log.start()
    entries = []
    try:
        for record in records:
            now[0] += dt.timedelta(minutes=1)
            entries.append(await log.append(record))
            if log.size in checkpoint_at:
                await log.checkpoint()
    finally:
        await log.stop()
    return entries


@pytest.fixture
async def entries(sessions: async_sessionmaker[Any]) -> list[AuditEntry]:
    written = await _write(
        sessions, [_record(i) for i in range(SIZE)], SIGNER, checkpoint_at=(8, SIZE)
    )
    assert (await verify_log(sessions, VERIFIER)).ok  # untouched, it verifies
    return written


@pytest.fixture
async def witnessed(sessions: async_sessionmaker[Any], entries: list[AuditEntry]) -> WitnessState:
    """A witness that saw the log at 20 entries, before anyone touched it."""
    async with _running(sessions) as log:
        observation, state = await observe(Source(log), None, vkey=VERIFIER.verifier_key())
    assert observation.size == SIZE
    return state


class _running:
    """``async with _running(sessions) as log``: the broker (re)started on the store."""

    def __init__(self, sessions: async_sessionmaker[Any], signer: NoteSigner = SIGNER) -> None:
        self._log = AuditLog(sessions, signer, origin=ORIGIN)

    async def __aenter__(self) -> AuditLog:
        await self._log.start()
        return self._log

    async def __aexit__(self, *exc: object) -> None:
        await self._log.stop()


async def _sql(sessions: async_sessionmaker[Any], statement: str, **params: Any) -> int:
    async with sessions() as session, session.begin():
        result = await session.execute(sa.text(statement), params)
        return int(result.rowcount)


async def _rehash(sessions: async_sessionmaker[Any], indices: Sequence[int]) -> None:
    """What a careful insider does after an edit: recompute the edited rows' leaf hashes."""
    async with sessions() as session, session.begin():
        for index in indices:
            row = await session.get(AuditEntryRow, index)
            assert row is not None
            entry = entry_from_row(row)
            row.leaf_hash = merkle.leaf_hash(
                canonical_entry(index, entry.entry_id, entry.time, entry.record)
            )


async def _restate(sessions: async_sessionmaker[Any]) -> None:
    """...and recompute the stored frontier from the (edited) leaves."""
    async with sessions() as session, session.begin():
        leaves = (
            await session.scalars(sa.select(AuditEntryRow.leaf_hash).order_by(AuditEntryRow.idx))
        ).all()
        frontier = merkle.Frontier()
        frontier.extend(bytes(leaf) for leaf in leaves)
        await session.execute(
            sa.update(TreeStateRow)
            .where(TreeStateRow.id == 1)
            .values(size=frontier.size, frontier=[h.hex() for h in frontier.hashes()])
        )


async def _forge(index: int, entries: Sequence[AuditEntry]) -> dict[str, Any]:
    """A plausible row for position ``index`` with a correctly computed leaf hash."""
    record = replace(_record(index), case_reference="FORGED", requester="requester-0")
    time = entries[min(index, len(entries) - 1)].time
    entry_id = str(uuid.uuid4())
    leaf = merkle.leaf_hash(canonical_entry(index, entry_id, time, record))
    return row_values(AuditEntry(index, entry_id, time, record, leaf))


async def _insert(sessions: async_sessionmaker[Any], values: dict[str, Any]) -> None:
    async with sessions() as session, session.begin():
        await session.execute(sa.insert(AuditEntryRow), [values])


# -- edits in place: named exactly ------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("requester", "someone-else"),
        ("case_reference", "CASE-5 "),
        ("requested_fields", '["taxed_income", "assets"]'),
        ("time", "2026-05-04 08:05:00.000001"),
        ("decision", "allow"),
    ],
)
async def test_changed_field_is_named(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry], column: str, value: str
) -> None:
    index = 13 if column == "decision" else 5  # entry 13 was a denial
    statement = f"UPDATE audit_entries SET {column} = :v WHERE idx = :i"  # noqa: S608
    assert await _sql(sessions, statement, v=value, i=index) == 1
    result = await verify_log(sessions, VERIFIER)
    assert not result.ok
    assert result.first_bad_index == index
    assert result.problem == f"entry {index} does not match its leaf hash (altered)"


async def test_changed_field_with_recomputed_leaf_breaks_the_signed_root(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _sql(sessions, "UPDATE audit_entries SET requester = 'x' WHERE idx = 11")
    await _rehash(sessions, [11])
    await _restate(sessions)
    result = await verify_log(sessions, VERIFIER)
    assert not result.ok
    assert result.first_bad_index == 8  # the first entry after the last checkpoint that holds
    assert result.problem == (
        "entries 8..19 do not match the stored checkpoint 2 of size 20 (history rewritten)"
    )


async def test_unreadable_row_is_named(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _sql(sessions, "UPDATE audit_entries SET reasons = '[{}]' WHERE idx = 3")
    result = await verify_log(sessions, VERIFIER)
    assert (result.first_bad_index, result.problem) == (3, "entry 3 cannot be read (altered)")


# -- deletions ---------------------------------------------------------------------------------


async def test_deleted_row_is_named(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    assert await _sql(sessions, "DELETE FROM audit_entries WHERE idx = 7") == 1
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 7)
    assert result.problem == "entry 7 is missing"


async def test_deleted_last_row_is_caught_by_the_checkpoint(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _sql(sessions, "DELETE FROM audit_entries WHERE idx = 19")
    await _restate(sessions)  # even with the tree state made to match
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 19)
    assert result.problem == (
        "the stored checkpoint 2 covers 20 entries but only 19 are stored (entries removed)"
    )


async def test_deleted_last_row_after_the_last_checkpoint_is_caught_by_the_tree_state(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _write(sessions, [_record(SIZE)], SIGNER, checkpoint_at=(), start=T0 + dt.timedelta(1))
    await _sql(sessions, "DELETE FROM audit_entries WHERE idx = 20")
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 20)
    assert "tree state (21 entries) does not match the 20 stored entries" in result.problem


# -- insertions --------------------------------------------------------------------------------


async def test_row_inserted_at_the_end_is_caught_by_the_tree_state(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _insert(sessions, await _forge(SIZE, entries))
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, SIZE)
    assert "tree state (20 entries) does not match the 21 stored entries" in result.problem


async def test_row_inserted_in_the_middle_is_named(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    # Make room at 10 (two steps, so the primary key never collides), then slip a row in.
    await _sql(sessions, "UPDATE audit_entries SET idx = -(idx + 1) WHERE idx >= 10")
    await _sql(sessions, "UPDATE audit_entries SET idx = -idx WHERE idx < 0")
    await _insert(sessions, await _forge(10, entries))
    result = await verify_log(sessions, VERIFIER)
    # The forged row itself hashes correctly; the entry it pushed along does not.
    assert (result.ok, result.first_bad_index) == (False, 11)
    assert result.problem == "entry 11 does not match its leaf hash (altered)"

    await _rehash(sessions, range(11, SIZE + 1))
    await _restate(sessions)
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 8)
    assert "do not match the stored checkpoint 2 of size 20 (history rewritten)" in result.problem


# -- reordering --------------------------------------------------------------------------------


async def _swap(sessions: async_sessionmaker[Any], a: int, b: int) -> None:
    await _sql(sessions, "UPDATE audit_entries SET idx = -1 WHERE idx = :a", a=a)
    await _sql(sessions, "UPDATE audit_entries SET idx = :a WHERE idx = :b", a=a, b=b)
    await _sql(sessions, "UPDATE audit_entries SET idx = :b WHERE idx = -1", b=b)


async def test_swapped_rows_are_named(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _swap(sessions, 4, 6)
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 4)
    assert result.problem == "entry 4 does not match its leaf hash (altered)"


async def test_swapped_rows_with_recomputed_leaves_break_the_first_checkpoint(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _swap(sessions, 4, 6)
    await _rehash(sessions, [4, 6])
    await _restate(sessions)
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert result.problem == (
        "entries 0..7 do not match the stored checkpoint 1 of size 8 (history rewritten)"
    )


# -- the whole log replaced by a recomputed one -----------------------------------------------


async def _replace_log(
    sessions: async_sessionmaker[Any],
    records: Sequence[AuditRecord],
    signer: NoteSigner,
    *,
    drop_checkpoints: bool,
) -> list[AuditEntry]:
    """Delete everything and append ``records`` afresh: new ids, times, leaves and frontier."""
    await _sql(sessions, "DELETE FROM audit_entries")
    await _sql(sessions, "DELETE FROM audit_tree_state")
    if drop_checkpoints:
        await _sql(sessions, "DELETE FROM audit_checkpoints")
    return await _write(
        sessions, records, signer, checkpoint_at=(8, len(records)), start=T0 + dt.timedelta(1)
    )


def _without(index: int, extra: int = 0) -> list[AuditRecord]:
    """The history minus one inconvenient entry, optionally grown by ``extra`` new ones."""
    kept = [_record(i) for i in range(SIZE) if i != index]
    return kept + [_record(100 + i) for i in range(extra)]


async def test_recomputed_log_fails_the_old_checkpoints(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry]
) -> None:
    await _replace_log(sessions, _without(12, extra=1), SIGNER, drop_checkpoints=False)
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert result.problem == (
        "entries 0..7 do not match the stored checkpoint 1 of size 8 (history rewritten)"
    )


async def test_recomputed_log_signed_with_another_key_is_refused(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry], witnessed: WitnessState
) -> None:
    await _replace_log(sessions, _without(12, extra=3), FORGER, drop_checkpoints=True)
    result = await verify_log(sessions, VERIFIER)
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert result.problem.startswith("stored checkpoint ")
    assert result.problem.endswith(
        f"is not validly signed: note is not signed by {ORIGIN}+{VERIFIER.key_id.hex()}"
    )

    async with _running(sessions, FORGER) as log:
        with pytest.raises(WitnessError) as caught:
            await observe(Source(log), witnessed)
    assert caught.value.reason == "BAD_CHECKPOINT"
    assert caught.value.tampered


async def test_recomputed_log_resigned_with_the_real_key_is_caught_by_the_witness(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry], witnessed: WitnessState
) -> None:
    # The insider holds the signing key, rewrites history without entry 12, adds three
    # entries so the log still grows, deletes every old checkpoint and signs new ones.
    await _replace_log(sessions, _without(12, extra=3), SIGNER, drop_checkpoints=True)
    alone = await verify_log(sessions, VERIFIER)
    assert alone.ok  # the store alone is self-consistent: nothing in it remembers

    async with _running(sessions) as log:
        with pytest.raises(WitnessError) as caught:
            await observe(Source(log), witnessed)
    assert caught.value.reason == "INCONSISTENT"
    assert "does not extend the 20 entries this witness accepted" in caught.value.message

    # ...and the witness's checkpoint, handed to verify, names where history diverges.
    anchored = await verify_log(sessions, VERIFIER, trusted=[witnessed.checkpoint])
    assert (anchored.ok, anchored.first_bad_index) == (False, 8)
    assert anchored.problem == (
        "entries 8..19 do not match the trusted checkpoint 0 of size 20 (history rewritten)"
    )


async def test_same_content_recomputed_at_the_same_size_is_caught_by_the_witness(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry], witnessed: WitnessState
) -> None:
    # Every record kept, but re-issued (new ids and times): the same size, another root.
    await _replace_log(sessions, [e.record for e in entries], SIGNER, drop_checkpoints=True)
    assert (await verify_log(sessions, VERIFIER)).ok
    async with _running(sessions) as log:
        with pytest.raises(WitnessError) as caught:
            await observe(Source(log), witnessed)
    assert caught.value.reason == "ROOT_CHANGED"


async def test_truncated_log_is_caught_by_the_witness(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry], witnessed: WitnessState
) -> None:
    await _replace_log(sessions, _without(12), SIGNER, drop_checkpoints=True)
    async with _running(sessions) as log:
        with pytest.raises(WitnessError) as caught:
            await observe(Source(log), witnessed)
    assert caught.value.reason == "LOG_SHRANK"


async def test_honest_growth_passes_the_witness(
    sessions: async_sessionmaker[Any], entries: list[AuditEntry], witnessed: WitnessState
) -> None:
    await _write(sessions, [_record(SIZE + i) for i in range(5)], SIGNER, checkpoint_at=(25,))
    async with _running(sessions) as log:
        observation, state = await observe(Source(log), witnessed)
    assert (observation.previous_size, observation.size, state.size) == (SIZE, 25, 25)
    assert observation.proof_hashes > 0
    assert (await verify_log(sessions, VERIFIER, trusted=[witnessed.checkpoint])).ok
