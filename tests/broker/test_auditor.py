"""The DPO's tools against a real ``AuditService`` over mutual TLS on a loopback port:
export streaming, inclusion proofs checked locally, the witness, and the ``tillit audit``
commands themselves."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker import auditor, cli, merkle
from broker._gen.tillit.audit.v1 import audit_pb2_grpc
from broker.app import log_signer
from broker.audit import ALLOW, DENY, AuditEntry, AuditLog, AuditRecord, canonical_entry
from broker.audit_export import COLUMNS, processing_record, write_records
from broker.checkpoint import NoteSigner, NoteVerifier
from broker.client import CallError
from broker.config import Settings, load_settings
from broker.errors import Reason
from broker.identity import channel_credentials, server_credentials
from broker.pki import tls_files
from broker.rpc import create_server, mark_serving
from broker.servicers import AUDIT, AUTHZ, AuditServicer

T0 = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)


@dataclass
class Service:
    settings: Settings
    log: AuditLog
    port: int
    verifier: NoteVerifier
    entries: list[AuditEntry]

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"


def _record(i: int) -> AuditRecord:
    deny = i % 4 == 1
    return AuditRecord(
        kind="exchange",
        requester="exempelby-kommun" if i % 2 else "social-insurance",
        service="housing-allowance",
        provider="tax-agency",
        dataset="taxed-income" if i % 3 else "household",
        subject_pseudonym=f"2026-06:{i:064x}",
        purpose="housing-allowance",
        legal_basis="GDPR Art. 6(1)(e); lag (2001:761)",
        case_reference='=HYPERLINK("x")' if i == 2 else f"HA-{i}",
        requested_fields=("taxed_income", "income_year"),
        released_fields=() if deny else ("taxed_income", "income_year"),
        decision=DENY if deny else ALLOW,
        reasons=(Reason("CONSENT_MISSING", "no explicit request", "GDPR Art. 6(1)(e)"),)
        if deny
        else (),
        decision_id=f"d-{i}",
        consent_id="" if deny else f"c-{i}",
        data_digest="" if deny else f"{i:064x}",
        details={"idempotency_key": f"k-{i}"},
    )


@pytest.fixture
async def service(
    sessions: async_sessionmaker[Any], pki_dir: Path, tmp_path: Path
) -> AsyncIterator[Service]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "pki").symlink_to(pki_dir)
    settings = load_settings(None, env={})
    settings = replace(settings, broker=replace(settings.broker, data_dir=data_dir))
    signer = log_signer(settings)  # the data directory's key: `audit vkey` prints it
    clock = [T0]
    log = AuditLog(sessions, signer, origin=settings.audit.origin, clock=lambda: clock[0])
    await log.start()
    entries = []
    for i in range(12):
        clock[0] = T0 + dt.timedelta(hours=i)
        entries.append(await log.append(_record(i)))
    await log.checkpoint()

    def register(server: grpc.aio.Server) -> list[str]:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(
            AuditServicer(log, signer.verifier()), server
        )
        return [AUDIT]

    server, port, health = create_server(
        "127.0.0.1:0", server_credentials(tls_files(pki_dir, "broker")), register, AUTHZ
    )
    await server.start()
    await mark_serving(health, [AUDIT])
    try:
        yield Service(settings, log, port, signer.verifier(), entries)
    finally:
        await server.stop(None)
        await log.stop()


@pytest.fixture
async def dpo(service: Service, pki_dir: Path) -> AsyncIterator[auditor.AuditClient]:
    credentials = channel_credentials(tls_files(pki_dir, "dpo"))
    async with grpc.aio.secure_channel(service.target, credentials) as channel:
        yield auditor.AuditClient(audit_pb2_grpc.AuditServiceStub(channel))


# -- export ------------------------------------------------------------------------------------


async def test_export_streams_a_time_range_of_rehashable_entries(
    service: Service, dpo: auditor.AuditClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AuditServicer, "EXPORT_BATCH", 2)  # several stream messages
    since, until = T0 + dt.timedelta(hours=3), T0 + dt.timedelta(hours=9)
    exported = [e async for e in dpo.export(since=since, until=until)]
    assert [e.index for e in exported] == [3, 4, 5, 6, 7, 8]
    for entry in exported:
        original = service.entries[entry.index]
        assert entry == original  # every field, details included, survives the wire
        canonical = canonical_entry(entry.index, entry.entry_id, entry.time, entry.record)
        assert merkle.leaf_hash(canonical) == entry.leaf_hash
    denied = [e.index async for e in dpo.export(decision=DENY, requester="exempelby-kommun")]
    assert denied == [1, 5, 9]


async def test_export_refuses_an_empty_time_range(dpo: auditor.AuditClient) -> None:
    with pytest.raises(CallError) as caught:
        [e async for e in dpo.export(since=T0, until=T0)]
    assert (caught.value.code, caught.value.reason) == ("INVALID_ARGUMENT", "INVALID_TIME_RANGE")


async def test_requesters_may_not_export(service: Service, pki_dir: Path) -> None:
    credentials = channel_credentials(tls_files(pki_dir, "exempelby-preschool-fee"))
    async with grpc.aio.secure_channel(service.target, credentials) as channel:
        client = auditor.AuditClient(audit_pb2_grpc.AuditServiceStub(channel))
        with pytest.raises(CallError) as caught:
            [e async for e in client.export()]
    assert caught.value.code == "PERMISSION_DENIED"


def test_processing_records_in_jsonl_and_csv(service: Service) -> None:
    records = [processing_record(e, retention_days=365) for e in service.entries[:3]]
    assert list(records[0]) == list(COLUMNS)
    first = records[1]
    assert first["recipient"] == "exempelby-kommun"
    assert first["controller"] == "tax-agency"
    assert first["data_subject"] == f"2026-06:{1:064x}"
    assert first["pseudonym_epoch"] == "2026-06"
    assert first["link_erased_after"] == "2027-07-01"  # July 1st plus 365 days
    assert (first["decision"], first["reasons"], first["articles"]) == (
        "deny",
        ["CONSENT_MISSING"],
        ["GDPR Art. 6(1)(e)"],
    )
    assert first["time"] == "2026-06-01T11:00:00Z"

    jsonl = io.StringIO()
    assert write_records(records, jsonl, "jsonl") == 3
    assert [json.loads(line) for line in jsonl.getvalue().splitlines()] == records

    text = io.StringIO()
    write_records(records, text, "csv")
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert rows[0]["fields_requested"] == "taxed_income;income_year"
    assert rows[2]["case_reference"] == '\'=HYPERLINK("x")'  # not run as a formula
    with pytest.raises(ValueError, match="format"):
        write_records(records, text, "xml")


# -- prove -------------------------------------------------------------------------------------


async def test_prove_checks_the_proof_and_the_entry_against_the_signed_root(
    service: Service, dpo: auditor.AuditClient
) -> None:
    for index in (0, 5, 11):
        result = await auditor.prove(dpo, service.verifier, index)
        assert result["ok"], result
        assert result["entry_matches_leaf"] is True
        assert result["leaf_hash"] == service.entries[index].leaf_hash.hex()
        assert result["tree_size"] == 12


async def test_prove_fails_with_the_wrong_key_or_an_index_past_the_checkpoint(
    service: Service, dpo: auditor.AuditClient
) -> None:
    stranger = NoteSigner.from_private_key(
        service.settings.audit.origin, Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    ).verifier()
    wrong_key = await auditor.prove(dpo, stranger, 3)
    assert not wrong_key["ok"]
    assert wrong_key["problem"].startswith("the latest checkpoint is not validly signed")
    beyond = await auditor.prove(dpo, service.verifier, 12)
    assert beyond["problem"] == "entry 12 is not covered by the latest checkpoint (12)"


async def test_prove_notices_an_entry_served_altered(
    service: Service, dpo: auditor.AuditClient, sessions: async_sessionmaker[Any]
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            sa.text("UPDATE audit_entries SET purpose = 'marketing' WHERE idx = 4")
        )
    result = await auditor.prove(dpo, service.verifier, 4)
    assert not result["ok"]
    assert result["entry_matches_leaf"] is False
    assert result["problem"] == "entry 4 as served does not hash to the proven leaf"


# -- witness over gRPC -------------------------------------------------------------------------


async def test_witness_over_grpc(
    service: Service, dpo: auditor.AuditClient, tmp_path: Path
) -> None:
    state = tmp_path / "witness.json"
    vkey = service.verifier.verifier_key()
    first, code = await auditor.witness(dpo, state, vkey)
    assert (code, first["tree_size"]) == (0, 12)
    await service.log.append(_record(12))
    second, code = await auditor.witness(dpo, state, "")
    assert (code, second["previous_size"], second["tree_size"]) == (0, 12, 13)


# -- the commands ------------------------------------------------------------------------------


async def _tillit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, list(argv))
    return code, capsys.readouterr().out


async def test_commands_end_to_end(
    service: Service, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["--data-dir", str(service.settings.data_dir), "audit"]
    remote = ["--broker", service.target]

    code, out = await _tillit(capsys, *base, "vkey")
    vkey = out.strip()
    assert (code, vkey) == (0, service.verifier.verifier_key())

    code, out = await _tillit(capsys, *base, "prove", "7", *remote, "--vkey", vkey)
    assert code == 0
    assert json.loads(out)["ok"] is True

    code, out = await _tillit(
        capsys, *base, "witness", "--state", str(tmp_path / "w.json"), *remote, "--vkey", vkey
    )
    assert (code, json.loads(out)["first_use"]) == (0, True)

    code, out = await _tillit(
        capsys, *base, "export", "--format", "csv", "--since", "2026-06-01T15:00", *remote
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["index"]) for r in rows] == [5, 6, 7, 8, 9, 10, 11]

    code, out = await _tillit(capsys, *base, "report", "--until", "2026-06-02", *remote)
    report = json.loads(out)
    assert (code, report["window"]["entries"]) == (0, 12)
    assert report["counts"]["by_outcome"] == {"allow": 9, "deny": 3}

    code, out = await _tillit(
        capsys, *base, "list", "--decision", "deny", "--until", "2026-06-01T06:00", *remote
    )
    assert (code, json.loads(out).get("entries", [])) == (0, [])

    code, out = await _tillit(capsys, *base, "prove", "99", *remote, "--vkey", vkey)
    assert code == 2
    assert "not covered" in json.loads(out)["problem"]
