"""The citizen-facing ConsentService through a real broker, OPA and agencies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from broker.audit import EntryFilter
from broker.client import CallError
from broker.jws import JwsError, keys_from_jwks
from consent.receipts import verify_receipt
from tests.conftest import Stack

PURPOSE = "preschool-fee-reduction"
FIELDS = ["income_year", "taxed_income_sek"]
LEGAL_BASIS = "Skollagen (2010:800) 8 kap. 16 §"


def _adults(stack: Stack) -> list[str]:
    population = stack.population
    return population.find_all(lambda c: not c.protected_identity and c.age_on(_today()) >= 30)


def _today() -> Any:
    import datetime as dt

    return dt.date.today()


async def _grant(stack: Stack, subject: str, token: str | None = None) -> dict[str, Any]:
    async with stack.client("citizen-portal") as portal:
        return await portal.grant(
            subject,
            kind="explicit_request",
            requester="exempelby-kommun",
            service="preschool-fee",
            dataset="taxed-income",
            fields=FIELDS,
            purpose=PURPOSE,
            language="en",
            token=token or stack.token(subject),
        )


async def test_grant_gives_a_receipt_that_verifies_and_detects_change(stack: Stack) -> None:
    subject = _adults(stack)[0]
    consent = await _grant(stack, subject)
    assert consent["state"] == "CONSENT_STATE_ACTIVE"
    assert consent["given_by"] == "subject"
    assert consent["lawful_basis"].startswith("GDPR Art. 6(1)(e)")
    async with stack.client("citizen-portal") as portal:
        keys = keys_from_jwks(await portal.receipt_keys(token=stack.token(subject)))
        again = await portal.get_receipt(subject, consent["id"], token=stack.token(subject))
    assert again == consent["receipt"]
    content = verify_receipt(consent["receipt"], keys)
    assert content["record"]["consent_id"] == consent["id"]
    assert content["event"] == "given"
    assert content["record"]["fields"] == FIELDS
    header, payload, signature = consent["receipt"].split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(JwsError):
        verify_receipt(f"{header}.{flipped}.{signature}", keys)


async def test_receipt_check_offline_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    subject = _adults(stack)[1]
    consent = await _grant(stack, subject)
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(consent["receipt"])
    keys = stack.settings.keys_dir / "receipt-jwks.json"
    command = [
        sys.executable,
        "-m",
        "broker.cli",
        "consent",
        "verify-receipt",
        str(receipt),
        "--keys",
        str(keys),
    ]
    ok = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert consent["id"] in ok.stdout
    text = consent["receipt"]
    receipt.write_text(text[:40] + ("x" if text[40] != "x" else "y") + text[41:])
    tampered = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False
    )
    assert tampered.returncode == 1
    assert '"valid": false' in tampered.stdout


@pytest.mark.parametrize(
    ("token_kind", "reason"),
    [
        ("none", "ID_TOKEN_MISSING"),
        ("expired", "ID_TOKEN_EXPIRED"),
        ("wrong-audience", "ID_TOKEN_INVALID"),
        ("wrong-issuer", "ID_TOKEN_INVALID"),
        ("garbage", "ID_TOKEN_INVALID"),
    ],
)
async def test_bad_id_tokens_are_refused(stack: Stack, token_kind: str, reason: str) -> None:
    subject = _adults(stack)[2]
    tokens = {
        "none": None,
        "expired": stack.token(subject, now=int(time.time()) - 7200, lifetime=600),
        "wrong-audience": stack.token(subject, audience="someone-else"),
        "wrong-issuer": stack.token(subject, issuer="evil-idp"),
        "garbage": "a.b.c",
    }
    async with stack.client("citizen-portal") as portal:
        with pytest.raises(CallError) as caught:
            await portal.list_consents(subject, token=tokens[token_kind])
    assert caught.value.code == "UNAUTHENTICATED"
    assert caught.value.reason == reason


async def test_acting_for_someone_else_is_refused_and_audited(stack: Stack) -> None:
    mallory, victim = _adults(stack)[3:5]
    async with stack.client("citizen-portal") as portal:
        with pytest.raises(CallError) as caught:
            await portal.list_consents(victim, token=stack.token(mallory))
    assert caught.value.code == "PERMISSION_DENIED"
    assert caught.value.reason == "NOT_AUTHORISED_FOR_SUBJECT"
    assert stack.broker.audit is not None
    assert stack.broker.pseudonymiser is not None
    pseudonym = stack.broker.pseudonymiser.pseudonym(victim)
    entries, _ = await stack.broker.audit.list_entries(
        EntryFilter(subject_pseudonym=pseudonym, kind="access_refused"), 10
    )
    assert [e.record.reasons[0].code for e in entries] == ["NOT_AUTHORISED_FOR_SUBJECT"]
    assert victim not in repr(entries)


async def test_guardian_acts_for_a_child_but_not_after_they_grow_up(stack: Stack) -> None:
    population = stack.population
    guardian = population.an_adult_with_children()
    facts = population.facts(guardian, _today())
    assert facts is not None
    assert facts.ward_ids, "the fixture needs a guardian of a minor"
    child = facts.ward_ids[0]
    async with stack.client("citizen-portal") as portal:
        subjects = await portal.list_subjects(token=stack.token(guardian))
        relations = {s["subject_id"]: s["relation"] for s in subjects["subjects"]}
        assert relations[guardian] == "self"
        assert relations[child] == "guardian"
    consent = await _grant(stack, child, token=stack.token(guardian))
    assert consent["given_by"] == "guardian"
    async with stack.client("citizen-portal") as portal:
        listed = await portal.list_consents(child, token=stack.token(guardian))
        assert [c["id"] for c in listed["consents"]] == [consent["id"]]
        # The child's consents are not the guardian's own.
        own = await portal.list_consents(guardian, token=stack.token(guardian))
        assert consent["id"] not in [c["id"] for c in own.get("consents", [])]


async def test_a_guardian_cannot_act_for_an_adult_household_member(stack: Stack) -> None:
    population = stack.population
    parent = population.find(
        lambda c: any(
            other != c.pnr
            and (person := population.citizen(other)) is not None
            and person.age_on(_today()) >= 18
            and c.pnr in person.guardian_ids
            for other in population.household_of(c.pnr)
        )
    )
    grown = next(
        other
        for other in population.household_of(parent)
        if (person := population.citizen(other)) is not None
        and parent in person.guardian_ids
        and person.age_on(_today()) >= 18
    )
    async with stack.client("citizen-portal") as portal:
        with pytest.raises(CallError) as caught:
            await portal.list_consents(grown, token=stack.token(parent))
    assert caught.value.reason == "NOT_AUTHORISED_FOR_SUBJECT"


async def test_a_requester_cannot_call_the_consent_service(stack: Stack) -> None:
    subject = _adults(stack)[5]
    async with stack.client("exempelby-preschool-fee") as eservice:
        with pytest.raises(CallError) as caught:
            await eservice.list_consents(subject, token=stack.token(subject))
    assert caught.value.reason == "ROLE_NOT_PERMITTED"


async def test_withdrawal_is_immediate_under_concurrent_load(stack: Stack) -> None:
    """No fetch that starts after withdraw returned may use the consent."""
    subject = _adults(stack)[6]
    consent = await _grant(stack, subject)
    loop = asyncio.get_running_loop()
    withdrawn_at: list[float] = []
    outcomes: list[tuple[float, str]] = []
    done, enough = asyncio.Event(), asyncio.Event()

    async def fetch_loop(client: Any) -> None:
        while not done.is_set():
            started = loop.time()
            try:
                await client.fetch(
                    subject,
                    "taxed-income",
                    FIELDS,
                    PURPOSE,
                    LEGAL_BASIS,
                    "EXB-LOAD-1",
                    f"load-{uuid.uuid4()}",
                )
                outcomes.append((started, "allow"))
                if sum(1 for o in outcomes if o[1] == "allow") >= 20:
                    enough.set()
            except CallError as exc:
                outcomes.append((started, exc.reason))
            if withdrawn_at and len([o for o in outcomes if o[0] > withdrawn_at[0]]) >= 40:
                done.set()

    async with (
        stack.client("exempelby-preschool-fee") as eservice,
        stack.client("citizen-portal") as portal,
    ):
        workers = [asyncio.create_task(fetch_loop(eservice)) for _ in range(8)]
        await asyncio.wait_for(enough.wait(), 60)
        await portal.withdraw(subject, consent["id"], token=stack.token(subject))
        withdrawn_at.append(loop.time())
        await asyncio.wait_for(asyncio.gather(*workers), 60)
    after = [reason for started, reason in outcomes if started > withdrawn_at[0]]
    before = [reason for started, reason in outcomes if started <= withdrawn_at[0]]
    assert before.count("allow") >= 20
    assert len(after) >= 40
    assert set(after) == {"CONSENT_WITHDRAWN"}
