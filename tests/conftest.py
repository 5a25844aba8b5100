"""Shared fixtures: a migrated SQLite store, a development PKI, an in-process stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker import db
from broker.app import Broker
from broker.client import BrokerClient
from broker.config import Settings, load_settings
from broker.keys import dev_idp_key
from broker.pki import init_pki, tls_files
from broker.providers import SyntheticPopulation, run_providers
from consent.tokens import mint


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[Any]]:
    """Sessions on a fresh SQLite file made by the Alembic migrations."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tillit.db'}"
    await asyncio.to_thread(db.migrate, url)
    engine = db.make_engine(url)
    try:
        yield db.sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return directory


@dataclass
class Stack:
    """A broker (with its own OPA) and the demo agencies, in-process, on loopback ports."""

    settings: Settings
    broker: Broker
    population: SyntheticPopulation

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    def client(self, party: str) -> BrokerClient:
        return BrokerClient(self.target, tls_files(self.settings.pki_dir, party))

    def token(self, subject_id: str, **overrides: Any) -> str:
        identity = self.settings.identity
        options: dict[str, Any] = {"issuer": identity.issuer, "audience": identity.audience}
        options.update(overrides)
        return mint(dev_idp_key(self.settings.keys_dir), subject_id, **options)


STACK_POPULATION = 2_000


@contextlib.asynccontextmanager
async def running_stack(
    data_dir: Path, *, policies: Path | None = None, watch_interval: float = 0.0
) -> AsyncIterator[Stack]:
    """Start agencies and a broker (with its own OPA) on loopback; stop them after."""
    settings = load_settings(env={})
    settings = replace(
        settings,
        broker=replace(settings.broker, data_dir=data_dir, listen="127.0.0.1:0"),
        providers=replace(settings.providers, population_size=STACK_POPULATION),
        opa=replace(
            settings.opa, policies=policies or settings.opa.policies, watch_interval=watch_interval
        ),
    )
    init_pki(settings.pki_dir)
    ports: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    providers = asyncio.create_task(
        run_providers(
            settings.pki_dir,
            dict.fromkeys(settings.providers.addresses, "127.0.0.1:0"),
            population_size=STACK_POPULATION,
            ready=ports.set_result,
            stop=stop,
        )
    )
    broker: Broker | None = None
    try:
        bound = await asyncio.wait_for(asyncio.shield(ports), 60)
        settings = replace(
            settings,
            providers=replace(
                settings.providers, addresses={a: f"127.0.0.1:{p}" for a, p in bound.items()}
            ),
        )
        broker = Broker(settings)
        await broker.start()
        yield Stack(settings, broker, SyntheticPopulation(STACK_POPULATION))
    finally:
        if broker is not None:
            await broker.stop()
        stop.set()
        await providers


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
