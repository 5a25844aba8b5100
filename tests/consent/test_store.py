"""The consent store on a real, migrated SQLite file."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.errors import AlreadyExists, InvalidRequest, NotFound
from consent.store import ConsentGrant, ConsentKind, ConsentState, ConsentStore

GRANT = ConsentGrant(
    kind=ConsentKind.EXPLICIT_REQUEST,
    requester="exempelby-kommun",
    service="preschool-fee",
    provider="tax-agency",
    dataset="taxed-income",
    purpose="preschool-fee-reduction",
    fields=("income_year", "taxed_income_sek"),
)


@pytest.fixture
def store(sessions: async_sessionmaker[Any]) -> ConsentStore:
    return ConsentStore(sessions)


async def test_grant_then_lookup_for_exchange(store: ConsentStore) -> None:
    consent = await store.grant("k1:alice", GRANT, "portal")
    now = dt.datetime.now(dt.UTC)
    assert consent.state(now) is ConsentState.ACTIVE
    assert consent.valid_until - consent.given_at == dt.timedelta(days=365)
    found = await store.for_exchange("k1:alice", "exempelby-kommun", "preschool-fee-reduction")
    assert [c.id for c in found] == [consent.id]
    assert await store.for_exchange("k1:bob", "exempelby-kommun", "preschool-fee-reduction") == []
    assert await store.for_exchange("k1:alice", "exempelby-kommun", "housing-allowance") == []


async def test_withdrawal_is_seen_by_the_next_lookup(store: ConsentStore) -> None:
    consent = await store.grant("k1:alice", GRANT, "portal")
    withdrawn = await store.withdraw("k1:alice", consent.id, "portal")
    assert withdrawn.withdrawn_at is not None
    [found] = await store.for_exchange("k1:alice", "exempelby-kommun", "preschool-fee-reduction")
    assert found.withdrawn_at == withdrawn.withdrawn_at
    assert found.state(dt.datetime.now(dt.UTC)) is ConsentState.WITHDRAWN
    assert found.policy_input()["withdrawn_at"] is not None


async def test_withdrawing_twice_or_someone_elses_is_refused(store: ConsentStore) -> None:
    consent = await store.grant("k1:alice", GRANT, "portal")
    with pytest.raises(NotFound):
        await store.withdraw("k1:mallory", consent.id, "portal")
    await store.withdraw("k1:alice", consent.id, "portal")
    with pytest.raises(AlreadyExists):
        await store.withdraw("k1:alice", consent.id, "portal")
    with pytest.raises(NotFound):
        await store.withdraw("k1:alice", "no-such-id", "portal")


async def test_validity_must_be_future_and_bounded(store: ConsentStore) -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(InvalidRequest, match="future"):
        await store.grant("k1:a", _until(now - dt.timedelta(seconds=1)), "portal")
    with pytest.raises(InvalidRequest, match="three years"):
        await store.grant("k1:a", _until(now + dt.timedelta(days=4 * 365)), "portal")
    short = await store.grant("k1:a", _until(now + dt.timedelta(days=1)), "portal")
    assert short.state(now + dt.timedelta(days=2)) is ConsentState.EXPIRED


def _until(when: dt.datetime) -> ConsentGrant:
    return ConsentGrant(**{**GRANT.__dict__, "valid_until": when})


async def test_list_is_paginated_and_per_subject(store: ConsentStore) -> None:
    ids = {(await store.grant("k1:alice", GRANT, "portal")).id for _ in range(5)}
    await store.grant("k1:bob", GRANT, "portal")
    seen: list[str] = []
    after = ""
    while True:
        page, more = await store.list("k1:alice", page_size=2, after=after)
        seen += [c.id for c in page]
        if not more:
            break
        after = page[-1].id
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == ids
    with pytest.raises(InvalidRequest):
        await store.list("k1:bob", after=seen[0])
