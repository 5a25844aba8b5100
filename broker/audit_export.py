"""Audit entries as records of processing (GDPR Art. 30), in JSON Lines or CSV.

One row per exchange (or other logged event), with the columns a record of processing asks
for, named after Art. 30(1):

===================  =========================================================================
column               meaning (Art. 30(1) point)
===================  =========================================================================
index, entry_id      the entry's position and id in the verifiable log (to prove it later)
leaf_hash            its RFC 6962 leaf hash (hex): ``tillit audit prove INDEX`` checks it
time                 when the decision was recorded (UTC, ISO 8601)
kind                 ``exchange``, ``policy_change``, ``access_refused``, ...
controller           the administration holding and disclosing the data (a)
recipient            the requesting administration (d); ``recipient_service`` its e-service
purpose              the stated purpose (b); ``legal_basis`` the Art. 6 basis and statute
data_category        the dataset (c); ``fields_requested`` / ``fields_disclosed`` its fields
data_subject         the subject's keyed pseudonym, never the identity number (c)
pseudonym_epoch      the month whose key made the pseudonym
link_erased_after    when that key is destroyed under the retention setting (f); empty: never
decision, reasons    allow or deny, reason codes, and the articles they rest on
case_reference       the requester's case; consent_id, decision_id, policy_revision
data_digest          SHA-256 of the disclosed values (never the values)
===================  =========================================================================

Transfers to third countries (e) do not occur: every party is a Swedish public body.
Lists are joined with ``;`` in CSV and kept as arrays in JSON Lines. CSV cells that a
spreadsheet would run as a formula (leading ``=``, ``+``, ``-``, ``@``, tab, CR) are prefixed
with ``'``; JSON Lines is the exact form.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from broker.audit import AuditEntry
from broker.shredding import is_epoch, shred_after

__all__ = ["COLUMNS", "FORMATS", "RecordWriter", "processing_record", "write_records"]

COLUMNS = (
    "index",
    "entry_id",
    "time",
    "kind",
    "controller",
    "recipient",
    "recipient_service",
    "purpose",
    "legal_basis",
    "data_category",
    "fields_requested",
    "fields_disclosed",
    "data_subject",
    "pseudonym_epoch",
    "link_erased_after",
    "decision",
    "reasons",
    "articles",
    "case_reference",
    "consent_id",
    "decision_id",
    "policy_revision",
    "data_digest",
    "leaf_hash",
)
FORMATS = ("jsonl", "csv")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def processing_record(entry: AuditEntry, retention_days: int = 0) -> dict[str, Any]:
    """The Art. 30 record of one entry (keys in ``COLUMNS`` order)."""
    r = entry.record
    epoch = r.subject_pseudonym.split(":", 1)[0] if ":" in r.subject_pseudonym else ""
    erased = shred_after(epoch, retention_days) if is_epoch(epoch) else None
    return {
        "index": entry.index,
        "entry_id": entry.entry_id,
        "time": entry.time.isoformat().replace("+00:00", "Z"),
        "kind": r.kind,
        "controller": r.provider,
        "recipient": r.requester,
        "recipient_service": r.service,
        "purpose": r.purpose,
        "legal_basis": r.legal_basis,
        "data_category": r.dataset,
        "fields_requested": list(r.requested_fields),
        "fields_disclosed": list(r.released_fields),
        "data_subject": r.subject_pseudonym,
        "pseudonym_epoch": epoch if is_epoch(epoch) else "",
        "link_erased_after": erased.date().isoformat() if erased else "",
        "decision": r.decision,
        "reasons": [x.code for x in r.reasons],
        "articles": sorted({x.article for x in r.reasons if x.article}),
        "case_reference": r.case_reference,
        "consent_id": r.consent_id,
        "decision_id": r.decision_id,
        "policy_revision": r.policy_revision,
        "data_digest": r.data_digest,
        "leaf_hash": entry.leaf_hash.hex(),
    }


def _cell(value: Any) -> str:
    text = ";".join(value) if isinstance(value, list) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class RecordWriter:
    """Writes records one at a time (so an export streams), as ``jsonl`` or ``csv``."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self._out = out
        self._fmt = fmt
        self.count = 0
        self._csv = csv.writer(out, lineterminator="\r\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(COLUMNS)

    def write(self, record: dict[str, Any]) -> None:
        if self._csv is None:
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self._csv.writerow([_cell(record[c]) for c in COLUMNS])
        self.count += 1


def write_records(records: Iterable[dict[str, Any]], out: TextIO, fmt: str) -> int:
    """Write ``records`` to ``out`` as ``jsonl`` or ``csv``; return how many."""
    writer = RecordWriter(out, fmt)
    for record in records:
        writer.write(record)
    return writer.count
