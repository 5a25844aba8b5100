"""The assembled broker: policy revisions, hot reload, and their audit trail."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.audit import EntryFilter
from broker.client import CallError
from broker.config import REPO_ROOT
from tests.conftest import Stack, running_stack

LEGAL_BASIS = "Socialförsäkringsbalken (2010:110) 110 kap. 31 §"


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("policies") / "policies"
    shutil.copytree(REPO_ROOT / "policies", copy)
    return copy


@pytest.fixture(scope="module")
async def watched(tmp_path_factory: pytest.TempPathFactory, policies: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        tmp_path_factory.mktemp("watched"), policies=policies, watch_interval=0.2
    ) as running:
        yield running


async def _fetch_address(stack: Stack) -> dict[str, object]:
    subject = stack.population.an_adult()
    async with stack.client("social-insurance-parental-benefit") as client:
        return await client.fetch(
            subject,
            "address",
            ["street_address", "postal_code"],
            "parental-benefit-check",
            LEGAL_BASIS,
            "FK-2026-1",
            f"reload-{uuid.uuid4()}",
        )


async def _policy_changes(stack: Stack) -> list[tuple[str, str]]:
    assert stack.broker.audit is not None
    entries, _ = await stack.broker.audit.list_entries(EntryFilter(kind="policy_change"), 100)
    return [(e.record.details["previous_revision"], e.record.policy_revision) for e in entries]


async def _until(predicate: object, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)  # polling a condition with a deadline, not a fixed wait


async def test_start_up_records_the_policy_in_force(watched: Stack) -> None:
    changes = await _policy_changes(watched)
    assert changes[0] == ("", watched.broker.revision)
    result = await _fetch_address(watched)
    assert result["provenance"]["policy_revision"] == watched.broker.revision  # type: ignore[index]


async def test_changed_policy_data_is_picked_up_and_audited(watched: Stack, policies: Path) -> None:
    before = watched.broker.revision
    purposes_file = policies / "tillit/registry/purposes/data.json"
    purposes = json.loads(purposes_file.read_text())
    permitted = purposes["parental-benefit-check"]["datasets"]["address"]
    purposes["parental-benefit-check"]["datasets"]["address"] = [
        f for f in permitted if f != "postal_code"
    ]
    purposes_file.write_text(json.dumps(purposes, indent=2))

    async def changed() -> bool:
        return watched.broker.revision != before

    await _until(changed)
    after = watched.broker.revision
    assert (before, after) in await _policy_changes(watched)
    with pytest.raises(CallError) as caught:
        await _fetch_address(watched)
    assert caught.value.reason == "FIELDS_NOT_PERMITTED"
    assert caught.value.metadata["excess_fields"] == "postal_code"


async def test_a_broken_policy_leaves_the_old_one_in_force(watched: Stack, policies: Path) -> None:
    before = watched.broker.revision
    broken = policies / "tillit/exchange/broken.rego"
    broken.write_text("package tillit.exchange\n\nthis is not rego\n")
    try:
        assert await watched.broker.reload_policy() == before
        async with watched.client("dpo") as dpo:
            assert (await dpo.verify())["ok"] is True
        changes = await _policy_changes(watched)
        assert all(after != "" for _, after in changes)
        assert changes[-1][1] == before
    finally:
        broken.unlink()
