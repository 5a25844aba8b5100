"""The data protection officer's side of ``AuditService``: fetch over gRPC, verify locally.

Nothing the broker says is taken on trust here: checkpoints are opened with the log's verifier
key, inclusion proofs are checked against the signed root, and an entry's content is re-hashed
into its leaf. Wire types stay in this module; callers get domain types and plain dictionaries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from broker import db, merkle
from broker._gen.tillit.audit.v1 import audit_pb2, audit_pb2_grpc
from broker.audit import (
    ALLOW,
    DENY,
    AuditEntry,
    AuditRecord,
    canonical_entry,
    encode_page_token,
    verify_log,
)
from broker.audit_export import RecordWriter, processing_record
from broker.audit_report import Heuristics, ReportBuilder
from broker.checkpoint import CheckpointError, NoteVerifier, open_checkpoint
from broker.client import CallError
from broker.config import Settings
from broker.errors import ConfigError, Reason
from broker.rpc import error_info
from broker.shredding import EpochKeyring
from broker.witness import LogSource, WitnessError, WitnessState, observe

__all__ = [
    "AuditClient",
    "entry_from_pb",
    "export",
    "local_verifier",
    "parse_time",
    "prove",
    "report",
    "shred",
    "timestamp",
    "verifier_from",
    "verify",
    "witness",
]

_DECISIONS = {audit_pb2.DECISION_ALLOW: ALLOW, audit_pb2.DECISION_DENY: DENY}
_DECISIONS_TO_PB = {ALLOW: audit_pb2.DECISION_ALLOW, DENY: audit_pb2.DECISION_DENY}


def local_verifier(settings: Settings) -> NoteVerifier:
    """The log's verifier from the signing key in the data directory (never creates one)."""
    path = settings.keys_dir / "log-signing.key"
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"no usable log signing key at {path}; pass the log's --vkey instead"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return NoteVerifier(settings.audit.origin, key.public_key())


def verifier_from(vkey: str, settings: Settings) -> NoteVerifier:
    """``--vkey`` if given (a vkey string or a file holding one), else the local key."""
    if not vkey:
        return local_verifier(settings)
    text = vkey
    if "+" not in vkey and Path(vkey).is_file():
        text = Path(vkey).read_text().strip()
    try:
        return NoteVerifier.from_verifier_key(text)
    except CheckpointError as exc:
        raise ConfigError(f"bad verifier key: {exc}") from exc


def entry_from_pb(message: audit_pb2.AuditEntry) -> AuditEntry:
    """A wire entry as a domain entry (the inverse of the servicer's conversion)."""
    record = AuditRecord(
        kind=message.kind,
        requester=message.requester,
        service=message.service,
        provider=message.provider,
        dataset=message.dataset,
        subject_pseudonym=message.subject_pseudonym,
        purpose=message.purpose,
        legal_basis=message.legal_basis,
        case_reference=message.case_reference,
        requested_fields=tuple(message.requested_fields),
        released_fields=tuple(message.released_fields),
        decision=_DECISIONS.get(message.decision, ""),
        reasons=tuple(Reason(r.code, r.message, r.article) for r in message.reasons),
        policy_revision=message.policy_revision,
        decision_id=message.decision_id,
        consent_id=message.consent_id,
        data_digest=message.data_digest,
        details=dict(message.details),
    )
    time = message.time.ToDatetime(dt.UTC)
    return AuditEntry(message.index, message.entry_id, time, record, bytes(message.leaf_hash))


def timestamp(value: dt.datetime) -> Timestamp:
    """A protobuf ``Timestamp`` of an aware datetime."""
    message = Timestamp()
    message.FromDatetime(value.astimezone(dt.UTC))
    return message


class AuditClient:
    """Typed calls to ``AuditService`` on an open channel; errors come back as ``CallError``."""

    def __init__(
        self, stub: audit_pb2_grpc.AuditServiceAsyncStub, *, timeout: float = 60.0
    ) -> None:
        self._stub = stub
        self._timeout = timeout

    @staticmethod
    def _error(exc: grpc.aio.AioRpcError) -> CallError:
        info = error_info(exc)
        return CallError(
            exc.code().name,
            exc.details() or "",
            info.reason if info else "",
            dict(info.metadata) if info else {},
        )

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    async def latest_checkpoint(self) -> str:
        response = await self._call(
            self._stub.GetLatestCheckpoint, audit_pb2.GetLatestCheckpointRequest()
        )
        return str(response.checkpoint)

    async def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        response = await self._call(
            self._stub.GetConsistencyProof,
            audit_pb2.GetConsistencyProofRequest(first_size=first_size, second_size=second_size),
        )
        return [bytes(h) for h in response.hashes]

    async def inclusion_proof(
        self, index: int, tree_size: int
    ) -> tuple[int, int, bytes, list[bytes]]:
        """(index, tree size, leaf hash, proof) as the broker sent them."""
        response = await self._call(
            self._stub.GetInclusionProof,
            audit_pb2.GetInclusionProofRequest(index=index, tree_size=tree_size),
        )
        return (
            int(response.index),
            int(response.tree_size),
            bytes(response.leaf_hash),
            [bytes(h) for h in response.hashes],
        )

    async def entry(self, index: int) -> AuditEntry | None:
        """Entry ``index`` itself, or ``None`` if the broker has no such entry."""
        response = await self._call(
            self._stub.ListEntries,
            audit_pb2.ListEntriesRequest(page_size=1, page_token=encode_page_token(index - 1)),
        )
        if not response.entries or response.entries[0].index != index:
            return None
        return entry_from_pb(response.entries[0])

    async def export(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        requester: str = "",
        purpose: str = "",
        dataset: str = "",
        decision: str = "",
    ) -> AsyncIterator[AuditEntry]:
        """Every entry in ``[since, until)`` matching the filters, in log order."""
        request = audit_pb2.ExportEntriesRequest(
            requester=requester,
            purpose=purpose,
            dataset=dataset,
            decision=_DECISIONS_TO_PB.get(decision, audit_pb2.DECISION_UNSPECIFIED),
        )
        if since is not None:
            request.start_time.CopyFrom(timestamp(since))
        if until is not None:
            request.end_time.CopyFrom(timestamp(until))
        call = self._stub.ExportEntries(request)
        try:
            async for response in call:
                for message in response.entries:
                    yield entry_from_pb(message)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None


async def prove(client: AuditClient, verifier: NoteVerifier, index: int) -> dict[str, Any]:
    """Prove entry ``index`` is in the log, as far as the signed checkpoint says.

    Fetches the latest checkpoint (verified with ``verifier``), the inclusion proof for that
    tree size and the entry itself; checks the proof against the signed root and that the
    entry's content hashes to the proven leaf. ``ok`` is true only if every check passed.
    """
    result: dict[str, Any] = {"ok": False, "index": index}
    note = await client.latest_checkpoint()
    result["checkpoint"] = note
    try:
        cp = open_checkpoint(note.encode(), verifier, origin=verifier.name)
    except CheckpointError as exc:
        result["problem"] = f"the latest checkpoint is not validly signed: {exc}"
        return result
    result.update(tree_size=cp.size, root_hash=cp.root.hex())
    if not 0 <= index < cp.size:
        result["problem"] = f"entry {index} is not covered by the latest checkpoint ({cp.size})"
        return result
    got_index, size, leaf, proof = await client.inclusion_proof(index, cp.size)
    result.update(leaf_hash=leaf.hex(), proof=[h.hex() for h in proof])
    if (got_index, size) != (index, cp.size):
        result["problem"] = "the broker proved a different entry or tree size than asked"
        return result
    try:
        merkle.verify_inclusion(leaf, index, cp.size, proof, cp.root)
    except merkle.MerkleError as exc:
        result["problem"] = f"the inclusion proof does not check out: {exc}"
        return result
    entry = await client.entry(index)
    if entry is None:
        result["problem"] = f"the broker does not return entry {index}"
        return result
    recomputed = merkle.leaf_hash(
        canonical_entry(entry.index, entry.entry_id, entry.time, entry.record)
    )
    result["entry_matches_leaf"] = recomputed == leaf
    if recomputed != leaf:
        result["problem"] = f"entry {index} as served does not hash to the proven leaf"
        return result
    result["entry"] = {
        "entry_id": entry.entry_id,
        "time": entry.time.isoformat(),
        "kind": entry.record.kind,
        "requester": entry.record.requester,
        "dataset": entry.record.dataset,
        "purpose": entry.record.purpose,
        "decision": entry.record.decision,
    }
    result["ok"] = True
    return result


# -- the ``tillit audit`` subcommands: each returns (JSON document, exit status) -------------


def parse_time(text: str) -> dt.datetime | None:
    """``--since``/``--until``: a date (midnight UTC) or an ISO 8601 time (naive = UTC)."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"not a date or ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def verify(
    settings: Settings, vkey: str, witness_states: Sequence[Path], checkpoints: Sequence[Path]
) -> tuple[dict[str, Any], int]:
    """Recompute the whole store against its checkpoints and any kept outside it."""
    verifier = verifier_from(vkey, settings)
    trusted: list[str] = []
    for path in witness_states:
        state = WitnessState.load(path)
        if state is None:
            raise ConfigError(f"no witness state at {path}")
        trusted.append(state.checkpoint)
    trusted.extend(path.read_text() for path in checkpoints)
    # Verification reads the store itself, so it does not trust a running broker.
    await asyncio.to_thread(db.migrate, settings.database_url)
    engine = db.make_engine(settings.database_url)
    try:
        result = await verify_log(db.sessionmaker(engine), verifier, trusted=trusted)
    finally:
        await engine.dispose()
    document = {
        "ok": result.ok,
        "tree_size": result.size,
        "root_hash": result.root.hex(),
        "checkpoints_checked": result.checkpoints,
        "latest_checkpoint_size": result.latest_checkpoint_size,
        "first_bad_index": result.first_bad_index,
        "problem": result.problem,
        "warnings": list(result.warnings),
    }
    return document, 0 if result.ok else 2


async def witness(client: LogSource, state_path: Path, vkey: str) -> tuple[dict[str, Any], int]:
    """One witness run; the state file is updated only if the log passed."""
    try:
        state = WitnessState.load(state_path)
        observation, new_state = await observe(client, state, vkey=vkey or None)
    except WitnessError as exc:
        document = {"ok": False, "reason": exc.reason, "problem": exc.message}
        return document, 2 if exc.tampered else 1
    new_state.save(state_path)
    document = {
        "ok": True,
        "first_use": observation.first_use,
        "previous_size": observation.previous_size,
        "tree_size": observation.size,
        "root_hash": observation.root.hex(),
        "consistency_proof_hashes": observation.proof_hashes,
        "state": str(state_path),
    }
    return document, 0


async def export(
    client: AuditClient,
    out: TextIO,
    fmt: str,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    retention_days: int,
    **filters: str,
) -> int:
    """Stream the records of processing in ``[since, until)`` to ``out``; return the count."""
    writer = RecordWriter(out, fmt)
    async for entry in client.export(since=since, until=until, **filters):
        writer.write(processing_record(entry, retention_days))
    return writer.count


async def report(
    client: AuditClient,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    heuristics: Heuristics | None = None,
) -> dict[str, Any]:
    """Counts and anomalies over ``[since, until)``."""
    builder = ReportBuilder(since, until, heuristics)
    async for entry in client.export(since=since, until=until):
        builder.add(entry)
    return builder.report()


def shred(settings: Settings, *, dry_run: bool) -> dict[str, Any]:
    """Destroy the audit pseudonym keys whose retention has run out."""
    retention = settings.audit.retention_days
    keyring = EpochKeyring(settings.keys_dir / "pseudonym", retention_days=retention)
    shredded = keyring.shred(dry_run=dry_run)
    return {
        "retention_days": retention,
        "dry_run": dry_run,
        "shredded": shredded,
        "live": [e for e in keyring.epochs_on_disk() if e not in shredded],
        "note": "" if retention > 0 else "retention_days is 0: keys are kept for ever",
    }
