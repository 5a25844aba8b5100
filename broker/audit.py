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

``verify_log`` recomputes the whole log from the stored rows (Core rows, no ORM
objects, so a million entries verify in seconds) against every signed
checkpoint in the store and any the caller trusts from elsewhere (a witness).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def time_ordered_id(time: dt.datetime) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits.

    Entry ids made in time order land next to each other in the unique index, so appends
    touch the same few index pages however large the log grows (random UUIDv4s would touch
    one random page per entry).
    """
    ms = int(time.timestamp() * 1000) & ((1 << 48) - 1)
    rand = secrets.randbits(74)
    value = (
        (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


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


def row_values(entry: AuditEntry) -> dict[str, Any]:
    """The ``audit_entries`` column values of ``entry``."""
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
    """Which entries to list or export; empty fields match everything.

    ``start`` is inclusive and ``end`` exclusive. ``subject_pseudonyms`` matches
    any of several pseudonyms: one subject has one per live pseudonym key epoch
    (``Pseudonymiser.pseudonyms``).
    """

    subject_pseudonym: str = ""
    requester: str = ""
    purpose: str = ""
    decision: str = ""
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    kind: str = ""
    subject_pseudonyms: tuple[str, ...] = ()
    dataset: str = ""

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of this filter."""
        table = AuditEntryRow
        conditions: list[sa.ColumnElement[bool]] = []
        pseudonyms = [p for p in (self.subject_pseudonym, *self.subject_pseudonyms) if p]
        if len(pseudonyms) == 1:
            conditions.append(table.subject_pseudonym == pseudonyms[0])
        elif pseudonyms:
            conditions.append(table.subject_pseudonym.in_(pseudonyms))
        for column, value in (
            (table.requester, self.requester),
            (table.purpose, self.purpose),
            (table.decision, self.decision),
            (table.kind, self.kind),
            (table.dataset, self.dataset),
        ):
            if value:
                conditions.append(column == value)
        if self.start is not None:
            conditions.append(table.time >= self.start)
        if self.end is not None:
            conditions.append(table.time < self.end)
        return conditions


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
        clock: Callable[[], dt.datetime] | None = None,
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
        # Injected in tests to place entries in time; always timezone-aware.
        self._clock = clock or _utcnow
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
        now = self._clock()
        entries = []
        for pending in batch:
            index = frontier.size
            entry_id = time_ordered_id(now)
            leaf = merkle.leaf_hash(canonical_entry(index, entry_id, now, pending.record))
            frontier.append(leaf)
            entries.append(AuditEntry(index, entry_id, now, pending.record, leaf))
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(sa.insert(AuditEntryRow), [row_values(e) for e in entries])
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
                    CheckpointRow(size=size, root_hash=root, note=note, created_at=self._clock())
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
        after = decode_page_token(page_token) if page_token else -1
        entries, more = await self._page(flt, after, page_size)
        token = encode_page_token(entries[-1].index) if more else ""
        return entries, token

    async def _page(
        self, flt: EntryFilter, after: int, limit: int
    ) -> tuple[list[AuditEntry], bool]:
        query = (
            sa.select(AuditEntryRow)
            .where(AuditEntryRow.idx > after, *flt.where())
            .order_by(AuditEntryRow.idx)
            .limit(limit + 1)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [entry_from_row(r) for r in rows[:limit]], len(rows) > limit

    async def export(self, flt: EntryFilter, batch: int = 500) -> AsyncIterator[list[AuditEntry]]:
        """Every entry matching ``flt`` in log order, ``batch`` at a time.

        Pages by index, so a long export holds no transaction open.
        """
        after = -1
        while True:
            entries, more = await self._page(flt, after, max(1, batch))
            if entries:
                yield entries
                after = entries[-1].index
            if not more:
                return

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
    """What ``verify_log`` found: the recomputed tree and, if bad, where it broke."""

    ok: bool
    size: int
    root: bytes
    first_bad_index: int | None = None
    problem: str = ""
    checkpoints: int = 0
    # The largest signed checkpoint checked (stored or trusted), and how many
    # entries past it are covered only by the unsigned tree state.
    latest_checkpoint_size: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def unsigned_entries(self) -> int:
        return max(0, self.size - self.latest_checkpoint_size)


@dataclass(frozen=True)
class _Anchor:
    """A signed checkpoint to check the recomputed tree against, and where it came from."""

    checkpoint: Checkpoint
    source: str


# The columns a leaf is computed from, in ``_canonical_from_raw``'s order. Selected
# with plain types: no JSON or datetime result processing, no ORM objects.
_VERIFY_COLUMNS = (
    "idx",
    "entry_id",
    "time",
    "kind",
    "requester",
    "service",
    "provider",
    "dataset",
    "subject_pseudonym",
    "purpose",
    "legal_basis",
    "case_reference",
    "requested_fields",
    "released_fields",
    "decision",
    "reasons",
    "policy_revision",
    "decision_id",
    "consent_id",
    "data_digest",
    "details",
    "leaf_hash",
)
_RAW_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "idx": sa.BigInteger(),
    "time": sa.String(),
    "requested_fields": sa.String(),
    "released_fields": sa.String(),
    "reasons": sa.String(),
    "details": sa.String(),
    "leaf_hash": sa.LargeBinary(),
}
_VERIFY_BATCH = 10_000


def _raw_select() -> sa.Select[Any]:
    table = AuditEntryRow.__table__
    columns = [
        sa.type_coerce(table.c[name], _RAW_TYPES.get(name, sa.String())).label(name)
        for name in _VERIFY_COLUMNS
    ]
    return sa.select(*columns).order_by(table.c.idx)


def _json_value(value: Any) -> Any:
    # SQLite hands JSON columns back as text; other drivers may decode them already.
    return json.loads(value) if isinstance(value, str | bytes) else value


def _raw_time(value: Any) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError("time is not a timestamp")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return _time_text(value)


def _generic_from_raw(row: Sequence[Any]) -> bytes:
    """``canonical_entry`` of a raw ``_VERIFY_COLUMNS`` row, by the book (any driver types)."""
    details = _json_value(row[20])
    document = {
        "v": ENCODING_VERSION,
        "index": row[0],
        "entry_id": row[1],
        "time": _raw_time(row[2]),
        "kind": row[3],
        "requester": row[4],
        "service": row[5],
        "provider": row[6],
        "dataset": row[7],
        "subject": row[8],
        "purpose": row[9],
        "legal_basis": row[10],
        "case_reference": row[11],
        "requested_fields": list(_json_value(row[12])),
        "released_fields": list(_json_value(row[13])),
        "decision": row[14],
        "reasons": [[x["code"], x["message"], x.get("article", "")] for x in _json_value(row[15])],
        "policy_revision": row[16],
        "decision_id": row[17],
        "consent_id": row[18],
        "data_digest": row[19],
        "details": dict(sorted(details.items())),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# SQLAlchemy's SQLite DATETIME text, as the log writes it (UTC, always microseconds).
_SQLITE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")
_esc = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) quotes strings with
_encode_nested = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _strings(values: Sequence[str]) -> str:
    return "[" + ",".join([_esc(v) for v in values]) + "]"


def _fast_from_raw(row: Sequence[Any]) -> bytes:
    """``_generic_from_raw`` for SQLite's text columns, written out key by key (sorted).

    About twice as fast as building and dumping a dict; raises on anything it does
    not expect, and the caller falls back to the generic path.
    """
    time = row[2]
    if _SQLITE_TIME.fullmatch(time) is None:
        raise ValueError("not SQLite's time text")
    requested, released, reasons, details = json.loads(f"[{row[12]},{row[13]},{row[15]},{row[20]}]")
    reasons_text = ",".join(
        [f"[{_esc(x['code'])},{_esc(x['message'])},{_esc(x.get('article', ''))}]" for x in reasons]
    )
    if all(type(v) is str for v in details.values()):
        details_text = "{" + ",".join([f"{_esc(k)}:{_esc(details[k])}" for k in sorted(details)])
        details_text += "}"
    else:
        details_text = _encode_nested(details)
    if type(row[0]) is not int:
        raise TypeError("index is not an integer")
    return (
        f'{{"case_reference":{_esc(row[11])},"consent_id":{_esc(row[18])},'
        f'"data_digest":{_esc(row[19])},"dataset":{_esc(row[7])},"decision":{_esc(row[14])},'
        f'"decision_id":{_esc(row[17])},"details":{details_text},"entry_id":{_esc(row[1])},'
        f'"index":{row[0]},"kind":{_esc(row[3])},"legal_basis":{_esc(row[10])},'
        f'"policy_revision":{_esc(row[16])},"provider":{_esc(row[6])},"purpose":{_esc(row[9])},'
        f'"reasons":[{reasons_text}],"released_fields":{_strings(released)},'
        f'"requested_fields":{_strings(requested)},"requester":{_esc(row[4])},'
        f'"service":{_esc(row[5])},"subject":{_esc(row[8])},'
        f'"time":"{time[:10]}T{time[11:]}Z","v":{ENCODING_VERSION}}}'
    ).encode()


def _canonical_from_raw(row: Sequence[Any]) -> bytes:
    """``canonical_entry`` of a raw ``_VERIFY_COLUMNS`` row, without building an entry.

    Produces exactly the bytes ``canonical_entry`` does for the same stored values (the
    tests hold the three encoders together). Raises if the row cannot be read.
    """
    try:
        return _fast_from_raw(row)
    except (TypeError, ValueError, KeyError, AttributeError):
        return _generic_from_raw(row)


async def _anchors(
    session: AsyncSession, verifier: NoteVerifier, origin: str, trusted: Iterable[str | bytes]
) -> tuple[list[_Anchor], str]:
    """Every checkpoint to check against, by size; or a problem with one of them."""
    anchors: list[_Anchor] = []
    rows: Sequence[CheckpointRow] = (
        await session.scalars(sa.select(CheckpointRow).order_by(CheckpointRow.size))
    ).all()
    for row in rows:
        try:
            cp = open_checkpoint(row.note.encode(), verifier, origin=origin)
        except CheckpointError as exc:
            return [], f"stored checkpoint {row.id} is not validly signed: {exc}"
        if cp.size != row.size or cp.root != bytes(row.root_hash):
            return [], f"stored checkpoint {row.id} does not match its signed note"
        anchors.append(_Anchor(cp, f"stored checkpoint {row.id}"))
    for i, note in enumerate(trusted):
        raw = note.encode() if isinstance(note, str) else note
        try:
            cp = open_checkpoint(raw, verifier, origin=origin)
        except CheckpointError as exc:
            return [], f"trusted checkpoint {i} is not validly signed: {exc}"
        anchors.append(_Anchor(cp, f"trusted checkpoint {i}"))
    anchors.sort(key=lambda a: a.checkpoint.size)
    return anchors, ""


async def verify_log(
    sessions: async_sessionmaker[AsyncSession],
    verifier: NoteVerifier,
    *,
    trusted: Iterable[str | bytes] = (),
    origin: str | None = None,
) -> VerifyResult:
    """Recompute every leaf and the root; check them against every signed checkpoint.

    Checkpoints come from the store and from ``trusted`` (signed notes kept
    outside it, e.g. by a witness), all verified with ``verifier`` for the log
    ``origin`` (default: the key's name). Reports the first entry found bad:
    an entry edited in place is named exactly (its content no longer matches
    its leaf hash); a gap or a moved entry by the index where the sequence
    breaks; a history recomputed wholesale by the first entry after the last
    checkpoint that still matches. Without any checkpoint only the internal
    consistency of rows and tree state can be checked; the result says so.
    """
    origin = verifier.name if origin is None else origin
    async with sessions() as session:
        anchors, problem = await _anchors(session, verifier, origin, trusted)
        if problem:
            return VerifyResult(False, 0, merkle.EMPTY_ROOT, 0, problem)
        state = await session.get(TreeStateRow, 1)
        result, frontier = await _recompute(session, anchors)
    if not result.ok:
        return result
    size = result.size
    if state is None:
        stored_size, stored_frontier = 0, []
    else:
        stored_size, stored_frontier = state.size, [bytes.fromhex(h) for h in state.frontier]
    if stored_size != size or stored_frontier != frontier.hashes():
        return replace(
            result,
            ok=False,
            first_bad_index=min(size, stored_size),
            problem=f"the stored tree state ({stored_size} entries) does not match the "
            f"{size} stored entries",
        )
    warnings: list[str] = []
    if not anchors and size:
        warnings.append(
            "no signed checkpoint to check against: only the rows' own consistency was "
            "verified (check against a witness's checkpoint)"
        )
    elif result.unsigned_entries:
        warnings.append(
            f"{result.unsigned_entries} entries after the latest checkpoint are not yet signed"
        )
    return replace(result, warnings=tuple(warnings))


async def _recompute(
    session: AsyncSession, anchors: Sequence[_Anchor]
) -> tuple[VerifyResult, merkle.Frontier]:
    """Stream the rows in index order, rehash each and check the anchors as the tree grows."""
    frontier = merkle.Frontier()
    append = frontier.append
    leaf_of = merkle.leaf_hash
    pending = iter(anchors)
    anchor = next(pending, None)
    good_upto = 0
    latest = 0
    count = len(anchors)

    def bad(index: int, problem: str) -> tuple[VerifyResult, merkle.Frontier]:
        return (
            VerifyResult(False, frontier.size, frontier.root(), index, problem, count, latest),
            frontier,
        )

    while anchor is not None and anchor.checkpoint.size == 0:
        if anchor.checkpoint.root != merkle.EMPTY_ROOT:
            return bad(0, f"the {anchor.source} of the empty tree has a wrong root")
        anchor = next(pending, None)
    result = await session.stream(_raw_select().execution_options(yield_per=_VERIFY_BATCH))
    async for rows in result.partitions():
        for row in rows:
            index = frontier.size
            if row[0] != index:
                if row[0] > index:
                    return bad(index, f"entry {index} is missing")
                return bad(index, f"entry {row[0]} appears out of order")
            try:
                leaf = leaf_of(_canonical_from_raw(row))
            except (TypeError, ValueError, KeyError, AttributeError):
                return bad(index, f"entry {index} cannot be read (altered)")
            if leaf != row[21]:
                return bad(index, f"entry {index} does not match its leaf hash (altered)")
            append(leaf)
            while anchor is not None and anchor.checkpoint.size == frontier.size:
                if anchor.checkpoint.root != frontier.root():
                    return bad(
                        good_upto,
                        f"entries {good_upto}..{frontier.size - 1} do not match the "
                        f"{anchor.source} of size {anchor.checkpoint.size} (history rewritten)",
                    )
                good_upto = latest = frontier.size
                anchor = next(pending, None)
    if anchor is not None:
        return bad(
            frontier.size,
            f"the {anchor.source} covers {anchor.checkpoint.size} entries but only "
            f"{frontier.size} are stored (entries removed)",
        )
    return VerifyResult(True, frontier.size, frontier.root(), None, "", count, latest), frontier
