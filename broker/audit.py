"""The audit log: append-only, tamper-evident, durable before any data leaves.

Every exchange, allowed or denied, and every policy change becomes one entry.
Entries are the leaves of an RFC 6962 Merkle tree (leaf = hash of the entry's
canonical encoding, see ``canonical_entry``). The tree's frontier is stored
with each commit, so appending costs O(log n) and never rehashes history.
Signed checkpoints (C2SP tlog-checkpoint notes) commit to a tree size and root;
they are only ever made from committed state, so a crash cannot leave a
checkpoint covering entries that are not stored.

Appends are group-committed: one writer task takes every entry queued while the
previous commit was in flight and makes them durable in a single transaction;
each ``append`` returns only after its own commit succeeded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broker import merkle
from broker.checkpoint import Checkpoint, CheckpointError, NoteSigner, NoteVerifier, open_checkpoint
from broker.checkpoint import sign as sign_checkpoint
from broker.errors import AuditUnavailable, InvalidRequest, NotFound, Reason
from broker.models import AuditEntryRow, CheckpointRow, IdempotencyRow, TreeStateRow

log = logging.getLogger(__name__)

ALLOW, DENY = "allow", "deny"
ENCODING_VERSION = 1


@dataclass(frozen=True)
class AuditRecord:
    """What a caller asks to log. Never holds personal data or the data released."""

    kind: str
    requester: str
    service: str
    provider: str
    dataset: str
    subject_pseudonym: str
    purpose: str
    legal_basis: str
    case_reference: str
    requested_fields: tuple[str, ...]
    released_fields: tuple[str, ...]
    decision: str
    reasons: tuple[Reason, ...] = ()
    policy_revision: str = ""
    decision_id: str = ""
    consent_id: str = ""
    data_digest: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    # (requester, key, request fingerprint): recorded in the same commit, so a
    # retry finds the exchange it repeats. Not part of the leaf.
    idempotency: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class AuditEntry:
    """A stored entry: the record plus its position, id, time and leaf hash."""

    index: int
    entry_id: str
    time: dt.datetime
    record: AuditRecord
    leaf_hash: bytes


def _time_text(time: dt.datetime) -> str:
    return time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_entry(index: int, entry_id: str, time: dt.datetime, record: AuditRecord) -> bytes:
    """The bytes a leaf hashes: UTF-8 JSON, sorted keys, no spaces, versioned.

    Lists keep their order; times are UTC with microseconds; the subject is the
    pseudonym only.
    """
    document = {
        "v": ENCODING_VERSION,
        "index": index,
        "entry_id": entry_id,
        "time": _time_text(time),
        "kind": record.kind,
        "requester": record.requester,
        "service": record.service,
        "provider": record.provider,
        "dataset": record.dataset,
        "subject": record.subject_pseudonym,
        "purpose": record.purpose,
        "legal_basis": record.legal_basis,
        "case_reference": record.case_reference,
        "requested_fields": list(record.requested_fields),
        "released_fields": list(record.released_fields),
        "decision": record.decision,
        "reasons": [[r.code, r.message, r.article] for r in record.reasons],
        "policy_revision": record.policy_revision,
        "decision_id": record.decision_id,
        "consent_id": record.consent_id,
        "data_digest": record.data_digest,
        "details": dict(sorted(record.details.items())),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _row_values(entry: AuditEntry) -> dict[str, Any]:
    r = entry.record
    return {
        "idx": entry.index,
        "entry_id": entry.entry_id,
        "time": entry.time,
        "kind": r.kind,
        "requester": r.requester,
        "service": r.service,
        "provider": r.provider,
        "dataset": r.dataset,
        "subject_pseudonym": r.subject_pseudonym,
        "purpose": r.purpose,
        "legal_basis": r.legal_basis,
        "case_reference": r.case_reference,
        "requested_fields": list(r.requested_fields),
        "released_fields": list(r.released_fields),
        "decision": r.decision,
        "reasons": [
            {"code": x.code, "message": x.message, "article": x.article} for x in r.reasons
        ],
        "policy_revision": r.policy_revision,
        "decision_id": r.decision_id,
        "consent_id": r.consent_id,
        "data_digest": r.data_digest,
        "details": dict(r.details),
        "leaf_hash": entry.leaf_hash,
    }


def entry_from_row(row: Any) -> AuditEntry:
    """Rebuild an entry from a row (ORM object or Core row with the same names)."""
    record = AuditRecord(
        kind=row.kind,
        requester=row.requester,
        service=row.service,
        provider=row.provider,
        dataset=row.dataset,
        subject_pseudonym=row.subject_pseudonym,
        purpose=row.purpose,
        legal_basis=row.legal_basis,
        case_reference=row.case_reference,
        requested_fields=tuple(row.requested_fields),
        released_fields=tuple(row.released_fields),
        decision=row.decision,
        reasons=tuple(Reason(x["code"], x["message"], x.get("article", "")) for x in row.reasons),
        policy_revision=row.policy_revision,
        decision_id=row.decision_id,
        consent_id=row.consent_id,
        data_digest=row.data_digest,
        details=dict(row.details),
    )
    time = row.time if row.time.tzinfo else row.time.replace(tzinfo=dt.UTC)
    return AuditEntry(row.idx, row.entry_id, time, record, bytes(row.leaf_hash))


@dataclass(frozen=True)
class EntryFilter:
    subject_pseudonym: str = ""
    requester: str = ""
    purpose: str = ""
    decision: str = ""
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    kind: str = ""


def encode_page_token(index: int) -> str:
    return base64.urlsafe_b64encode(f"after:{index}".encode()).decode()


def decode_page_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, value = text.split(":", 1)
        if prefix != "after":
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("page_token is not valid", reason="INVALID_PAGE_TOKEN") from exc


@dataclass
class _Pending:
    record: AuditRecord
    future: asyncio.Future[AuditEntry]


class AuditLog:
    """Appends, checkpoints, lists and proves. One writer per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signer: NoteSigner,
        *,
        origin: str,
        batch_max: int = 256,
        batch_wait_ms: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self.sessions = sessions
        self._signer = signer
        self.origin = origin
        self._batch_max = batch_max
        self._batch_wait = batch_wait_ms / 1000
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._frontier = merkle.Frontier()
        self._writer: asyncio.Task[None] | None = None
        self._checkpoint_lock = asyncio.Lock()
        self.commits = 0

    @property
    def size(self) -> int:
        """Entries committed so far."""
        return self._frontier.size

    async def start(self) -> None:
        await self._load_state()
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    async def stop(self) -> None:
        if self._writer is not None:
            # Let queued appends become durable before stopping.
            if not self._writer.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), 10)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(AuditUnavailable("the audit log is shutting down"))

    async def _load_state(self) -> None:
        async with self._sessions() as session:
            state = await session.get(TreeStateRow, 1)
            count = await session.scalar(sa.select(sa.func.count()).select_from(AuditEntryRow))
        if state is None:
            if count:
                raise AuditUnavailable("audit entries exist without a tree state")
            self._frontier = merkle.Frontier()
            return
        if count != state.size:
            raise AuditUnavailable("the audit log's tree state does not match its entries")
        self._frontier = merkle.Frontier.from_hashes(
            state.size, [bytes.fromhex(h) for h in state.frontier]
        )

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Queue ``record`` and return once it is durable (raises ``AuditUnavailable``)."""
        if self._writer is None or self._writer.done():
            raise AuditUnavailable("the audit log is not running")
        future: asyncio.Future[AuditEntry] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(record, future))
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self._batch_wait
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        frontier = self._frontier.copy()
        now = dt.datetime.now(dt.UTC)
        entries = []
        for pending in batch:
            index = frontier.size
            entry_id = str(uuid.uuid4())
            leaf = merkle.leaf_hash(canonical_entry(index, entry_id, now, pending.record))
            frontier.append(leaf)
            entries.append(AuditEntry(index, entry_id, now, pending.record, leaf))
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(sa.insert(AuditEntryRow), [_row_values(e) for e in entries])
                state = {
                    "id": 1,
                    "size": frontier.size,
                    "frontier": [h.hex() for h in frontier.hashes()],
                    "updated_at": now,
                }
                updated = await session.execute(
                    sa.update(TreeStateRow)
                    .where(TreeStateRow.id == 1, TreeStateRow.size == self._frontier.size)
                    .values(**state)
                )
                if updated.rowcount == 0:  # type: ignore[attr-defined]
                    if self._frontier.size != 0:
                        raise AuditUnavailable("the audit tree state moved under this writer")
                    await session.execute(sa.insert(TreeStateRow).values(**state))
                await self._record_idempotency(session, entries, now)
        except Exception as exc:
            log.error("audit commit of %d entries failed: %s", len(batch), type(exc).__name__)
            failure = AuditUnavailable("the audit entry could not be made durable")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            try:
                await self._load_state()
            except Exception:
                log.exception("could not reload the audit tree state")
            return
        self._frontier = frontier
        self.commits += 1
        for pending, entry in zip(batch, entries, strict=True):
            if not pending.future.done():
                pending.future.set_result(entry)

    @staticmethod
    async def _record_idempotency(
        session: AsyncSession, entries: list[AuditEntry], now: dt.datetime
    ) -> None:
        keyed: dict[tuple[str, str], AuditEntry] = {}
        for entry in entries:
            if entry.record.idempotency is not None:
                requester, key, _ = entry.record.idempotency
                keyed.setdefault((requester, key), entry)
        if not keyed:
            return
        existing = await session.execute(
            sa.select(IdempotencyRow.requester, IdempotencyRow.key).where(
                sa.tuple_(IdempotencyRow.requester, IdempotencyRow.key).in_(list(keyed))
            )
        )
        for pair in existing:
            keyed.pop((pair[0], pair[1]), None)
        if keyed:
            await session.execute(
                sa.insert(IdempotencyRow),
                [
                    {
                        "requester": requester,
                        "key": key,
                        "fingerprint": entry.record.idempotency[2]
                        if entry.record.idempotency
                        else "",
                        "audit_index": entry.index,
                        "decision_id": entry.record.decision_id,
                        "data_digest": entry.record.data_digest,
                        "created_at": now,
                    }
                    for (requester, key), entry in keyed.items()
                ],
            )

    # -- checkpoints -----------------------------------------------------------------

    async def checkpoint(self) -> tuple[str, int, bytes]:
        """Sign and store a checkpoint of the committed tree if it grew; return the latest."""
        async with self._checkpoint_lock:
            size, root = self._frontier.size, self._frontier.root()
            latest = await self._latest_checkpoint_row()
            if latest is not None and latest.size == size:
                return latest.note, latest.size, bytes(latest.root_hash)
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self._signer).decode()
            async with self._sessions() as session, session.begin():
                session.add(
                    CheckpointRow(
                        size=size, root_hash=root, note=note, created_at=dt.datetime.now(dt.UTC)
                    )
                )
            return note, size, root

    async def _latest_checkpoint_row(self) -> CheckpointRow | None:
        async with self._sessions() as session:
            result: CheckpointRow | None = await session.scalar(
                sa.select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)
            )
            return result

    async def latest_checkpoint(self) -> tuple[str, int, bytes]:
        """The newest stored checkpoint, making one if there is none yet."""
        row = await self._latest_checkpoint_row()
        if row is None:
            return await self.checkpoint()
        return row.note, row.size, bytes(row.root_hash)

    async def run_checkpoints(self, interval: float, stop: asyncio.Event) -> None:
        """Issue a checkpoint every ``interval`` seconds while the log grows."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            try:
                await self.checkpoint()
            except Exception:
                log.exception("scheduled checkpoint failed")

    # -- reading -----------------------------------------------------------------------

    async def list_entries(
        self, flt: EntryFilter, page_size: int, page_token: str = ""
    ) -> tuple[list[AuditEntry], str]:
        """Entries in log order matching ``flt``; returns (page, next page token)."""
        page_size = max(1, min(page_size or 100, 1000))
        query = sa.select(AuditEntryRow).order_by(AuditEntryRow.idx).limit(page_size + 1)
        if page_token:
            query = query.where(AuditEntryRow.idx > decode_page_token(page_token))
        if flt.subject_pseudonym:
            query = query.where(AuditEntryRow.subject_pseudonym == flt.subject_pseudonym)
        if flt.requester:
            query = query.where(AuditEntryRow.requester == flt.requester)
        if flt.purpose:
            query = query.where(AuditEntryRow.purpose == flt.purpose)
        if flt.decision:
            query = query.where(AuditEntryRow.decision == flt.decision)
        if flt.kind:
            query = query.where(AuditEntryRow.kind == flt.kind)
        if flt.start is not None:
            query = query.where(AuditEntryRow.time >= flt.start)
        if flt.end is not None:
            query = query.where(AuditEntryRow.time < flt.end)
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
        entries = [entry_from_row(r) for r in rows[:page_size]]
        token = encode_page_token(entries[-1].index) if len(rows) > page_size else ""
        return entries, token

    async def _leaves(self, start: int, end: int) -> list[bytes]:
        async with self._sessions() as session:
            rows = await session.execute(
                sa.select(AuditEntryRow.leaf_hash)
                .where(AuditEntryRow.idx >= start, AuditEntryRow.idx < end)
                .order_by(AuditEntryRow.idx)
            )
            return [bytes(r[0]) for r in rows]

    async def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, proof) for entry ``index`` in the tree of ``size`` entries."""
        if not 0 <= index < size <= self.size:
            raise NotFound("no such entry in a tree of that size", reason="ENTRY_NOT_IN_TREE")
        leaves = await self._leaves(0, size)
        proof = merkle.inclusion_proof(index, size, lambda a, b: leaves[a:b])
        return leaves[index], proof

    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        if not 0 < size1 <= size2 <= self.size:
            raise InvalidRequest(
                "sizes must satisfy 0 < first <= second <= log size", reason="INVALID_TREE_SIZE"
            )
        leaves = await self._leaves(0, size2)
        return merkle.consistency_proof(size1, size2, lambda a, b: leaves[a:b])


# -- verification --------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    size: int
    root: bytes
    first_bad_index: int | None = None
    problem: str = ""
    checkpoints: int = 0


async def _stream_rows(session: AsyncSession) -> AsyncIterator[Any]:
    result = await session.stream(
        sa.select(AuditEntryRow.__table__)
        .order_by(AuditEntryRow.idx)
        .execution_options(yield_per=5000)
    )
    async for row in result:
        yield row


async def verify_log(
    sessions: async_sessionmaker[AsyncSession], verifier: NoteVerifier
) -> VerifyResult:
    """Recompute every leaf and the root; check signed checkpoints and the tree state.

    Reports the first entry found bad. An entry edited in place is named exactly
    (its content no longer matches its leaf hash); a history recomputed
    wholesale is caught by the signed checkpoints, and named as the first
    entry after the last checkpoint that still matches.
    """
    async with sessions() as session:
        cp_rows: Sequence[CheckpointRow] = (
            await session.scalars(sa.select(CheckpointRow).order_by(CheckpointRow.size))
        ).all()
        state = await session.get(TreeStateRow, 1)
        checkpoints: list[Checkpoint] = []
        for row in cp_rows:
            try:
                cp = open_checkpoint(row.note.encode(), verifier)
            except CheckpointError as exc:
                return VerifyResult(
                    False, 0, b"", 0, f"checkpoint {row.id} is not validly signed: {exc}"
                )
            checkpoints.append(cp)
        frontier = merkle.Frontier()
        pending = iter(checkpoints)
        next_cp = next(pending, None)
        good_upto = 0
        async for row in _stream_rows(session):
            index = frontier.size
            if row.idx != index:
                problem = (
                    f"entry {index} is missing"
                    if row.idx > index
                    else f"entry {row.idx} appears out of order"
                )
                return VerifyResult(False, index, frontier.root(), index, problem, len(checkpoints))
            entry = entry_from_row(row)
            leaf = merkle.leaf_hash(
                canonical_entry(index, entry.entry_id, entry.time, entry.record)
            )
            if leaf != entry.leaf_hash:
                return VerifyResult(
                    False,
                    index,
                    frontier.root(),
                    index,
                    f"entry {index} does not match its leaf hash (altered)",
                    len(checkpoints),
                )
            frontier.append(leaf)
            while next_cp is not None and next_cp.size == frontier.size:
                if next_cp.root != frontier.root():
                    return VerifyResult(
                        False,
                        frontier.size,
                        frontier.root(),
                        good_upto,
                        f"entries {good_upto}..{frontier.size - 1} do not match the signed "
                        f"checkpoint of size {next_cp.size} (history rewritten)",
                        len(checkpoints),
                    )
                good_upto = frontier.size
                next_cp = next(pending, None)
        size, root = frontier.size, frontier.root()
        if next_cp is not None:
            return VerifyResult(
                False,
                size,
                root,
                size,
                f"a signed checkpoint covers {next_cp.size} entries but only {size} are stored "
                "(entries removed)",
                len(checkpoints),
            )
        if state is not None and (
            state.size != size or [bytes.fromhex(h) for h in state.frontier] != frontier.hashes()
        ):
            return VerifyResult(
                False,
                size,
                root,
                min(size, state.size),
                "the stored tree state does not match the entries",
                len(checkpoints),
            )
    return VerifyResult(True, size, root, None, "", len(checkpoints))
