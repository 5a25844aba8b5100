"""The exchange end to end: real broker, OPA and agencies processes, real clients over mTLS."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from broker._gen.tillit.audit.v1 import audit_pb2
from broker.client import BrokerClient, CallError
from broker.demo import statute_of
from broker.identity import channel_credentials
from broker.pki import TlsFiles, init_pki, tls_files
from broker.servicers import AUDIT, CONSENT, EXCHANGE
from tests.e2e.conftest import (
    DATASET,
    FIELDS,
    POLICIES,
    PURPOSE,
    Deployment,
    Subjects,
    all_entries,
    grant,
    health_status,
)

pytestmark = pytest.mark.e2e

# Every refusal the policy or the fail-closed path made in this module, for the audit check.
DENIALS: list[CallError] = []


def key() -> str:
    return f"e2e-{uuid.uuid4()}"


async def refused(call: Any) -> CallError:
    """Await ``call``, which must fail; return the error as the caller sees it."""
    with pytest.raises(CallError) as caught:
        await call
    error = caught.value
    if "audit_index" in error.metadata:
        DENIALS.append(error)
    return error


def fetch(
    client: BrokerClient,
    subject: str,
    legal_basis: str,
    *,
    fields: tuple[str, ...] = FIELDS,
    dataset: str = DATASET,
    purpose: str = PURPOSE,
    case: str = "EXB-2026-0042",
    idempotency_key: str | None = None,
) -> Any:
    return client.fetch(
        subject, dataset, list(fields), purpose, legal_basis, case, idempotency_key or key()
    )


async def test_the_once_only_story(
    deployment: Deployment,
    eservice: BrokerClient,
    portal: BrokerClient,
    dpo: BrokerClient,
    subjects: Subjects,
    legal_basis: str,
) -> None:
    subject = subjects.adult()
    token = deployment.token(subject)
    consent = await grant(portal, subject, token)
    assert consent["state"] == "CONSENT_STATE_ACTIVE"

    result = await fetch(eservice, subject, legal_basis)
    income = subjects.income(subject)
    assert result["values"] == {name: income[name] for name in FIELDS}
    provenance = result["provenance"]
    assert provenance["provider"] == "tax-agency"
    assert provenance["dataset"] == DATASET
    assert provenance["consent_id"] == consent["id"]
    assert provenance["policy_revision"].startswith("sha256:")
    assert uuid.UUID(provenance["decision_id"])
    assert provenance["retrieved_at"]
    allowed_index = int(provenance["audit_index"])

    over_asking = fetch(eservice, subject, legal_basis, fields=(*FIELDS, "capital_income_sek"))
    excess = await refused(over_asking)
    assert (excess.code, excess.reason) == ("PERMISSION_DENIED", "FIELDS_NOT_PERMITTED")
    assert excess.metadata["excess_fields"] == "capital_income_sek"

    withdrawn = await portal.withdraw(subject, consent["id"], token=token)
    assert withdrawn["state"] == "CONSENT_STATE_WITHDRAWN"
    # No wait: the withdrawal holds for the very next request.
    after = await refused(fetch(eservice, subject, legal_basis))
    assert (after.code, after.reason) == ("PERMISSION_DENIED", "CONSENT_WITHDRAWN")

    events = (await portal.access_events(subject, token=token))["events"]
    seen = [
        (int(e["audit_index"]), e["outcome"], [r["code"] for r in e["reasons"]]) for e in events
    ]
    assert seen == [
        (allowed_index, "allow", []),
        (int(excess.metadata["audit_index"]), "deny", ["FIELDS_NOT_PERMITTED"]),
        (int(after.metadata["audit_index"]), "deny", ["CONSENT_WITHDRAWN"]),
    ]
    assert all(e["requester"] == "exempelby-kommun" and e["purpose"] == PURPOSE for e in events)

    verdict = await dpo.verify()
    assert verdict["ok"] is True, verdict
    assert int(verdict["tree_size"]) > int(after.metadata["audit_index"])


async def test_a_bad_check_digit_is_refused_without_echoing_the_number(
    eservice: BrokerClient, subjects: Subjects, legal_basis: str
) -> None:
    good = subjects.adult()
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    error = await refused(fetch(eservice, bad, legal_basis))
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "INVALID_SUBJECT_ID")
    shown = str(error.as_dict())
    assert bad not in shown
    assert bad[2:] not in shown
    assert f"{bad[:8]}-{bad[8:]}" not in shown


async def test_an_unknown_dataset_is_refused(
    eservice: BrokerClient, subjects: Subjects, legal_basis: str
) -> None:
    error = await refused(fetch(eservice, subjects.adult(), legal_basis, dataset="medical-records"))
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "UNKNOWN_DATASET")


async def test_a_missing_idempotency_key_is_refused(
    eservice: BrokerClient, subjects: Subjects, legal_basis: str
) -> None:
    subject = subjects.adult()
    with pytest.raises(CallError) as caught:
        await eservice.fetch(subject, DATASET, list(FIELDS), PURPOSE, legal_basis, "EXB-1", "")
    assert (caught.value.code, caught.value.reason) == (
        "INVALID_ARGUMENT",
        "INVALID_IDEMPOTENCY_KEY",
    )


async def test_an_idempotent_retry_answers_as_before_and_logs_nothing_new(
    deployment: Deployment,
    eservice: BrokerClient,
    portal: BrokerClient,
    subjects: Subjects,
    legal_basis: str,
) -> None:
    subject = subjects.adult()
    token = deployment.token(subject)
    await grant(portal, subject, token)
    retry_key = key()
    first = await fetch(eservice, subject, legal_basis, idempotency_key=retry_key)
    again = await fetch(eservice, subject, legal_basis, idempotency_key=retry_key)
    assert again["values"] == first["values"]
    for name in ("audit_index", "decision_id", "consent_id", "policy_revision"):
        assert again["provenance"][name] == first["provenance"][name], name
    events = (await portal.access_events(subject, token=token))["events"]
    assert [int(e["audit_index"]) for e in events] == [int(first["provenance"]["audit_index"])]

    other = await refused(
        fetch(eservice, subject, legal_basis, case="EXB-2026-9999", idempotency_key=retry_key)
    )
    assert (other.code, other.reason) == ("FAILED_PRECONDITION", "IDEMPOTENCY_KEY_REUSED")
    events = (await portal.access_events(subject, token=token))["events"]
    assert len(events) == 1


async def test_the_dpo_may_not_fetch(
    deployment: Deployment, dpo: BrokerClient, subjects: Subjects, legal_basis: str
) -> None:
    error = await refused(fetch(dpo, subjects.adult(), legal_basis))
    assert (error.code, error.reason) == ("PERMISSION_DENIED", "ROLE_NOT_PERMITTED")
    assert error.metadata["role"] == "dpo"


async def test_a_requester_may_not_read_the_audit_log(eservice: BrokerClient) -> None:
    with pytest.raises(CallError) as caught:
        await eservice.audit_entries(page_size=10)
    assert (caught.value.code, caught.value.reason) == ("PERMISSION_DENIED", "ROLE_NOT_PERMITTED")
    with pytest.raises(CallError) as caught:
        await eservice.verify()
    assert caught.value.code == "PERMISSION_DENIED"


async def test_a_certificate_from_another_ca_is_refused_at_the_tls_layer(
    deployment: Deployment, tmp_path: Path, subjects: Subjects, legal_basis: str
) -> None:
    init_pki(tmp_path / "rogue")
    rogue = tls_files(tmp_path / "rogue", "exempelby-preschool-fee")
    # Trust the real broker, so only the client certificate can be the problem.
    tls = TlsFiles(deployment.tls("dpo").ca, rogue.cert, rogue.key)
    async with BrokerClient(deployment.target, tls, timeout=5.0) as client:
        with pytest.raises(CallError) as caught:
            await fetch(client, subjects.adult(), legal_basis)
    assert caught.value.code == "UNAVAILABLE"
    assert caught.value.reason == ""  # refused before any handler could answer


async def test_a_plaintext_client_cannot_connect(deployment: Deployment) -> None:
    async with grpc.aio.insecure_channel(deployment.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/grpc.health.v1.Health/Check")(
                health_pb2.HealthCheckRequest().SerializeToString(), timeout=5.0
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def _services_by_reflection(target: str, tls: TlsFiles) -> list[str]:
    with grpc.secure_channel(target, channel_credentials(tls)) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services: list[str] = list(database.get_services())
        # The descriptors are served too: a client can build requests from them alone.
        exchange = descriptor_pool.DescriptorPool(database).FindServiceByName(EXCHANGE)
        assert exchange.methods_by_name["FetchData"].input_type.name == "FetchDataRequest"
        return services


async def test_health_and_reflection(deployment: Deployment) -> None:
    tls = deployment.tls("exempelby-preschool-fee")
    for name in ("", EXCHANGE, CONSENT, AUDIT):
        assert await health_status(deployment.target, tls, name) == 1, name  # SERVING
    services = await asyncio.to_thread(_services_by_reflection, deployment.target, tls)
    assert {EXCHANGE, CONSENT, AUDIT, "grpc.health.v1.Health"} <= set(services)


async def test_denials_of_every_kind_are_refused_with_their_reason(
    deployment: Deployment,
    subjects: Subjects,
    eservice: BrokerClient,
    legal_basis: str,
) -> None:
    no_consent = await refused(fetch(eservice, subjects.adult(), legal_basis))
    assert no_consent.reason == "CONSENT_MISSING"

    async with deployment.client("exempelby-housing-allowance") as other_service:
        wrong_service = await refused(fetch(other_service, subjects.adult(), legal_basis))
    assert "REQUESTER_NOT_AUTHORISED" in wrong_service.metadata["reasons"].split(",")

    async with deployment.client("social-insurance-parental-benefit") as agency:
        protected = await refused(
            fetch(
                agency,
                subjects.protected(),
                statute_of(POLICIES, "parental-benefit-check"),
                dataset="address",
                fields=("street_address", "municipality_code"),
                purpose="parental-benefit-check",
            )
        )
    assert "PROTECTED_IDENTITY" in protected.metadata["reasons"].split(",")
    for error in (no_consent, wrong_service, protected):
        assert error.code == "PERMISSION_DENIED"
        assert error.metadata["decision_id"]


async def test_every_denial_is_in_the_audit_log(
    eservice: BrokerClient, dpo: BrokerClient, subjects: Subjects, legal_basis: str
) -> None:
    # One denial of its own, so the test also stands alone; then every one met above.
    await refused(fetch(eservice, subjects.adult(), legal_basis))
    entries = await all_entries(dpo)
    for error in DENIALS:
        entry = entries[int(error.metadata["audit_index"])]
        assert entry["decision"] == audit_pb2.Decision.Name(audit_pb2.DECISION_DENY)
        assert entry["decision_id"] == error.metadata["decision_id"]
        assert [r["code"] for r in entry["reasons"]] == error.metadata["reasons"].split(",")
        assert entry["released_fields"] == []
        assert entry["data_digest"] == ""
        assert len(entry["subject_pseudonym"]) >= 32


async def test_no_identity_number_is_stored_or_logged(
    deployment: Deployment,
    eservice: BrokerClient,
    portal: BrokerClient,
    subjects: Subjects,
    legal_basis: str,
) -> None:
    """The store holds pseudonyms only: no subject's number, in any form, in any file."""
    subject = subjects.adult()  # traffic of its own: a consent, an allow and a deny
    await grant(portal, subject, deployment.token(subject))
    await fetch(eservice, subject, legal_basis)
    await refused(fetch(eservice, subject, legal_basis, fields=(*FIELDS, "capital_income_sek")))
    files = [p for p in deployment.data_dir.glob("tillit.db*") if p.is_file()]
    assert deployment.database in files
    stored = b"".join(p.read_bytes() for p in files)
    assert b"exempelby-kommun" in stored  # the scan does see the log's text
    logs = "".join(p.read_text(errors="replace") for p in deployment.data_dir.glob("*.log"))
    for pnr in subjects.used:
        for form in (pnr, pnr[2:], f"{pnr[:8]}-{pnr[8:]}"):
            assert form.encode() not in stored
            assert form not in logs
