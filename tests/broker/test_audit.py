"""The audit log on a real SQLite store: group commit, durability, listing, proofs, restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker import merkle
from broker.audit import (
    ALLOW,
    DENY,
    AuditLog,
    AuditRecord,
    EntryFilter,
    _fast_from_raw,
    _generic_from_raw,
    _raw_select,
    canonical_entry,
    decode_page_token,
    encode_page_token,
    time_ordered_id,
    verify_log,
)
from broker.checkpoint import NoteSigner, NoteVerifier, open_checkpoint
from broker.errors import AuditUnavailable, InvalidRequest, NotFound, Reason
from broker.models import AuditEntryRow

ORIGIN = "tillit.test/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
SIGNER = NoteSigner.from_private_key(ORIGIN, KEY)
VERIFIER = NoteVerifier(ORIGIN, KEY.public_key())
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class Clock:
    """A settable clock for the log, so entries can be placed in time."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def record(
    requester: str = "exempelby-preschool-fee",
    *,
    purpose: str = "preschool-fee-reduction",
    decision: str = ALLOW,
    subject: str = "2026-03:aa",
    dataset: str = "taxed-income",
    kind: str = "exchange",
    case: str = "EXB-1",
    details: dict[str, str] | None = None,
) -> AuditRecord:
    return AuditRecord(
        kind=kind,
        requester=requester,
        service="preschool-fee",
        provider="tax-agency",
        dataset=dataset,
        subject_pseudonym=subject,
        purpose=purpose,
        legal_basis="GDPR Art. 6(1)(e)",
        case_reference=case,
        requested_fields=("taxed_income", "income_year"),
        released_fields=("taxed_income", "income_year") if decision == ALLOW else (),
        decision=decision,
        reasons=() if decision == ALLOW else (Reason("CONSENT_MISSING", "no consent", "Art. 7"),),
        policy_revision="rev-1",
        decision_id=str(uuid.uuid4()),
        data_digest="ab" * 32 if decision == ALLOW else "",
        details=details or {},
    )


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def log(sessions: async_sessionmaker[Any], clock: Clock) -> AsyncIterator[AuditLog]:
    audit = AuditLog(sessions, SIGNER, origin=ORIGIN, clock=clock)
    await audit.start()
    try:
        yield audit
    finally:
        await audit.stop()


async def _count(sessions: async_sessionmaker[Any]) -> int:
    async with sessions() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(AuditEntryRow)))


# -- appending ---------------------------------------------------------------------------------


async def test_concurrent_appends_share_commits_and_get_contiguous_indices(
    log: AuditLog, sessions: async_sessionmaker[Any]
) -> None:
    entries = await asyncio.gather(*(log.append(record(case=f"C-{i}")) for i in range(200)))
    assert sorted(e.index for e in entries) == list(range(200))
    assert 1 <= log.commits < 200  # group commit: many entries per transaction
    assert await _count(sessions) == 200  # every append returned only once durable
    assert log.size == 200
    result = await verify_log(sessions, VERIFIER)
    assert result.ok
    assert result.size == 200
    assert result.root == merkle.root_from_leaves(
        [e.leaf_hash for e in sorted(entries, key=lambda e: e.index)]
    )


async def test_append_returns_the_stored_leaf(log: AuditLog) -> None:
    entry = await log.append(record(details={"idempotency_key": "k-1"}))
    assert entry.leaf_hash == merkle.leaf_hash(
        canonical_entry(entry.index, entry.entry_id, entry.time, entry.record)
    )
    assert entry.time == T0


async def test_restart_continues_the_frontier(
    sessions: async_sessionmaker[Any], clock: Clock
) -> None:
    first = AuditLog(sessions, SIGNER, origin=ORIGIN, clock=clock)
    await first.start()
    before = [await first.append(record(case=f"A-{i}")) for i in range(5)]
    await first.checkpoint()
    await first.stop()

    second = AuditLog(sessions, SIGNER, origin=ORIGIN, clock=clock)
    await second.start()
    try:
        assert second.size == 5
        after = [await second.append(record(case=f"B-{i}")) for i in range(3)]
        assert [e.index for e in after] == [5, 6, 7]
        leaves = [e.leaf_hash for e in before + after]
        _, size, root = await second.checkpoint()
        assert (size, root) == (8, merkle.root_from_leaves(leaves))
    finally:
        await second.stop()
    result = await verify_log(sessions, VERIFIER)
    assert result.ok
    assert result.checkpoints == 2
    assert result.latest_checkpoint_size == 8


async def test_append_after_stop_is_refused(log: AuditLog) -> None:
    await log.stop()
    with pytest.raises(AuditUnavailable):
        await log.append(record())


# -- durability: a checkpoint never covers what is not stored ---------------------------------


async def _fail_inserts(sessions: async_sessionmaker[Any], on: bool) -> None:
    async with sessions() as session, session.begin():
        if on:
            await session.execute(
                sa.text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entries "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            await session.execute(sa.text("DROP TRIGGER refuse_audit"))


async def test_failed_commit_is_not_checkpointed(
    log: AuditLog, sessions: async_sessionmaker[Any]
) -> None:
    for i in range(3):
        await log.append(record(case=f"D-{i}"))
    note, size, root = await log.checkpoint()
    assert size == 3

    await _fail_inserts(sessions, True)
    failed = await asyncio.gather(
        *(log.append(record(case=f"lost-{i}")) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(f, AuditUnavailable) for f in failed)
    assert log.size == 3
    assert await log.checkpoint() == (note, 3, root)  # the same checkpoint, nothing new
    assert await _count(sessions) == 3

    await _fail_inserts(sessions, False)
    entry = await log.append(record(case="D-3"))
    assert entry.index == 3  # the failed batch left no gap
    _, size, _ = await log.checkpoint()
    assert size == 4
    assert (await verify_log(sessions, VERIFIER)).ok


async def test_failed_tree_state_update_rolls_back_the_entries(
    log: AuditLog, sessions: async_sessionmaker[Any]
) -> None:
    await log.append(record())
    async with sessions() as session, session.begin():
        await session.execute(
            sa.text(
                "CREATE TRIGGER refuse_state BEFORE UPDATE ON audit_tree_state "
                "BEGIN SELECT RAISE(ABORT, 'io error'); END"
            )
        )
    with pytest.raises(AuditUnavailable):
        await log.append(record(case="rolled-back"))
    assert await _count(sessions) == 1  # the entry rows went with the failed transaction
    assert (await log.checkpoint())[1] == 1


# -- listing -----------------------------------------------------------------------------------


@pytest.fixture
async def varied(log: AuditLog, clock: Clock) -> AuditLog:
    """Ten entries an hour apart: two requesters, two purposes, denials at 3 and 7."""
    for i in range(10):
        clock.now = T0 + dt.timedelta(hours=i)
        await log.append(
            record(
                "req-a" if i % 2 == 0 else "req-b",
                purpose="p-1" if i < 5 else "p-2",
                decision=DENY if i in (3, 7) else ALLOW,
                subject=f"2026-03:{i % 3:02x}",
                dataset="household" if i == 9 else "taxed-income",
                kind="policy_change" if i == 8 else "exchange",
            )
        )
    return log


async def _indices(log: AuditLog, flt: EntryFilter) -> list[int]:
    entries, token = await log.list_entries(flt, 100)
    assert token == ""
    return [e.index for e in entries]


async def test_list_filters(varied: AuditLog) -> None:
    assert await _indices(varied, EntryFilter(requester="req-a")) == [0, 2, 4, 6, 8]
    assert await _indices(varied, EntryFilter(purpose="p-2")) == [5, 6, 7, 8, 9]
    assert await _indices(varied, EntryFilter(decision=DENY)) == [3, 7]
    assert await _indices(varied, EntryFilter(kind="policy_change")) == [8]
    assert await _indices(varied, EntryFilter(dataset="household")) == [9]
    assert await _indices(varied, EntryFilter(subject_pseudonym="2026-03:01")) == [1, 4, 7]
    both = EntryFilter(subject_pseudonyms=("2026-03:01", "2026-03:02"))
    assert await _indices(varied, both) == [1, 2, 4, 5, 7, 8]
    combined = EntryFilter(requester="req-b", purpose="p-2", decision=ALLOW)
    assert await _indices(varied, combined) == [5, 9]


async def test_list_time_range_is_start_inclusive_end_exclusive(varied: AuditLog) -> None:
    window = EntryFilter(start=T0 + dt.timedelta(hours=2), end=T0 + dt.timedelta(hours=5))
    assert await _indices(varied, window) == [2, 3, 4]
    assert await _indices(varied, EntryFilter(start=T0 + dt.timedelta(hours=8))) == [8, 9]
    assert await _indices(varied, EntryFilter(end=T0 + dt.timedelta(minutes=1))) == [0]


async def test_list_pages_through_everything_once(varied: AuditLog) -> None:
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        entries, token = await varied.list_entries(EntryFilter(), 3, token)
        seen += [e.index for e in entries]
        pages += 1
        if not token:
            break
    assert seen == list(range(10))
    assert pages == 4
    # A filtered page's token continues after the last match, not after the last index.
    first, token = await varied.list_entries(EntryFilter(requester="req-b"), 2)
    rest, end = await varied.list_entries(EntryFilter(requester="req-b"), 2, token)
    assert [e.index for e in first + rest] == [1, 3, 5, 7]
    assert end != ""


async def test_bad_page_token_is_refused(varied: AuditLog) -> None:
    with pytest.raises(InvalidRequest):
        await varied.list_entries(EntryFilter(), 10, "not-a-token")


async def test_export_yields_every_match_in_batches(varied: AuditLog) -> None:
    batches = [b async for b in varied.export(EntryFilter(decision=ALLOW), batch=3)]
    assert [len(b) for b in batches] == [3, 3, 2]
    assert [e.index for b in batches for e in b] == [0, 1, 2, 4, 5, 6, 8, 9]
    assert [b async for b in varied.export(EntryFilter(requester="nobody"))] == []


# -- proofs ------------------------------------------------------------------------------------


async def test_every_inclusion_proof_verifies_against_the_signed_root(log: AuditLog) -> None:
    entries = [await log.append(record(case=f"P-{i}")) for i in range(13)]
    note, size, root = await log.checkpoint()
    checkpoint = open_checkpoint(note.encode(), VERIFIER, origin=ORIGIN)
    assert (checkpoint.size, checkpoint.root) == (size, root) == (13, log._frontier.root())
    for entry in entries:
        for tree in (entry.index + 1, 13):
            leaf, proof = await log.inclusion_proof(entry.index, tree)
            assert leaf == entry.leaf_hash
            tree_root = merkle.root_from_leaves([e.leaf_hash for e in entries[:tree]])
            merkle.verify_inclusion(leaf, entry.index, tree, proof, tree_root)
    leaf, proof = await log.inclusion_proof(4, 13)
    with pytest.raises(merkle.MerkleError):
        merkle.verify_inclusion(entries[5].leaf_hash, 4, 13, proof, root)


async def test_every_consistency_proof_verifies(log: AuditLog) -> None:
    entries = [await log.append(record(case=f"Q-{i}")) for i in range(11)]
    roots = [merkle.root_from_leaves([e.leaf_hash for e in entries[:n]]) for n in range(12)]
    for first in range(1, 12):
        for second in range(first, 12):
            proof = await log.consistency_proof(first, second)
            merkle.verify_consistency(first, second, proof, roots[first], roots[second])


async def test_proofs_outside_the_log_are_refused(log: AuditLog) -> None:
    await log.append(record())
    with pytest.raises(NotFound):
        await log.inclusion_proof(1, 1)
    with pytest.raises(NotFound):
        await log.inclusion_proof(0, 2)
    with pytest.raises(InvalidRequest):
        await log.consistency_proof(0, 1)
    with pytest.raises(InvalidRequest):
        await log.consistency_proof(1, 2)


async def test_checkpoint_is_signed_and_reissued_only_when_the_log_grew(log: AuditLog) -> None:
    empty_note, empty_size, empty_root = await log.checkpoint()
    assert (empty_size, empty_root) == (0, merkle.EMPTY_ROOT)
    await log.append(record())
    note, size, _ = await log.checkpoint()
    assert size == 1
    assert note != empty_note
    assert await log.checkpoint() == await log.latest_checkpoint()
    assert open_checkpoint(note.encode(), VERIFIER).size == 1


# -- the encoders verify_log uses agree with canonical_entry ----------------------------------


async def test_fast_and_generic_encodings_match_canonical_entry(
    log: AuditLog, sessions: async_sessionmaker[Any]
) -> None:
    odd = [
        record(case='quote " backslash \\ slash /'),
        record(case="ctrl \x01\x1f tab\t newline\n", details={"z": "1", "a": "ä€😀"}),
        record(requester="åäö-myndighet", subject="k1:ff", decision=DENY),
        record(details={}),
        record(case="", dataset="", details={"\u2028": "\u2029"}),
    ]
    entries = [await log.append(r) for r in odd]
    async with sessions() as session:
        rows = (await session.execute(_raw_select())).all()
    assert len(rows) == len(entries)
    for row, entry in zip(rows, entries, strict=True):
        expected = canonical_entry(entry.index, entry.entry_id, entry.time, entry.record)
        assert _fast_from_raw(row) == expected
        assert _generic_from_raw(row) == expected
    assert (await verify_log(sessions, VERIFIER)).ok


def test_entry_ids_are_uuid7_in_time_order() -> None:
    ids = [time_ordered_id(T0 + dt.timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == int(T0.timestamp() * 1000)


def test_page_tokens_are_opaque_but_round_trip() -> None:
    assert encode_page_token(41) != "41"
    assert decode_page_token(encode_page_token(41)) == 41
