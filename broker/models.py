"""The broker's tables: the audit log, its tree state and checkpoints, idempotency."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, UtcDateTime, name, str_id, text, utc


class AuditEntryRow(Base):
    """One leaf of the audit log. Append-only: rows are never updated or deleted."""

    __tablename__ = "audit_entries"

    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    entry_id: Mapped[str_id] = mapped_column(unique=True)
    time: Mapped[utc] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    requester: Mapped[name] = mapped_column(index=True)
    service: Mapped[name]
    provider: Mapped[name]
    dataset: Mapped[name]
    subject_pseudonym: Mapped[str] = mapped_column(sa.String(80), index=True)
    purpose: Mapped[name] = mapped_column(index=True)
    legal_basis: Mapped[text]
    case_reference: Mapped[name]
    requested_fields: Mapped[list[str]] = mapped_column(sa.JSON)
    released_fields: Mapped[list[str]] = mapped_column(sa.JSON)
    decision: Mapped[str] = mapped_column(sa.String(16), index=True)
    reasons: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON)
    policy_revision: Mapped[str] = mapped_column(sa.String(80))
    decision_id: Mapped[str_id]
    consent_id: Mapped[str_id]
    data_digest: Mapped[str] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    leaf_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class TreeStateRow(Base):
    """The Merkle tree's frontier after the last committed append (one row)."""

    __tablename__ = "audit_tree_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    frontier: Mapped[list[str]] = mapped_column(sa.JSON)
    updated_at: Mapped[utc]


class CheckpointRow(Base):
    """A signed checkpoint (C2SP tlog-checkpoint note) over a committed prefix."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    note: Mapped[text]
    created_at: Mapped[utc]


class IdempotencyRow(Base):
    """Maps a requester's idempotency key to the exchange it first produced."""

    __tablename__ = "idempotency_keys"

    requester: Mapped[name] = mapped_column(primary_key=True)
    key: Mapped[name] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    audit_index: Mapped[int] = mapped_column(sa.BigInteger)
    decision_id: Mapped[str_id]
    data_digest: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


def load_all() -> None:
    """Import every module that defines tables, so the metadata is complete."""
    import consent.models  # noqa: F401
