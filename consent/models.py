"""Consent tables: a record per consent, and its append-only history of events.

The subject is stored only as a keyed pseudonym. A consent's current state
(active, withdrawn, expired) is derived from its events and validity period,
never stored as a mutable flag.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, name, str_id, text, utc


class ConsentRow(Base):
    __tablename__ = "consents"
    __table_args__ = (sa.Index("ix_consents_lookup", "subject_key", "requester", "purpose"),)

    id: Mapped[str_id] = mapped_column(primary_key=True)
    subject_key: Mapped[str] = mapped_column(sa.String(80))
    kind: Mapped[str] = mapped_column(sa.String(32))
    requester: Mapped[name]
    service: Mapped[name]
    provider: Mapped[name]
    dataset: Mapped[name]
    purpose: Mapped[name]
    fields: Mapped[list[str]] = mapped_column(sa.JSON)
    given_at: Mapped[utc]
    valid_from: Mapped[utc]
    valid_until: Mapped[utc]
    notice_version: Mapped[name]
    language: Mapped[str] = mapped_column(sa.String(16))
    given_by: Mapped[str] = mapped_column(sa.String(16))
    method: Mapped[str] = mapped_column(sa.String(32))
    jurisdiction: Mapped[str] = mapped_column(sa.String(8))


class ConsentEventRow(Base):
    """Append-only history: given, withdrawn (expiry is derived from valid_until)."""

    __tablename__ = "consent_events"
    __table_args__ = (sa.UniqueConstraint("consent_id", "event", name="uq_consent_events_once"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    consent_id: Mapped[str_id] = mapped_column(sa.ForeignKey("consents.id"), index=True)
    event: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[utc]
    actor: Mapped[text]
