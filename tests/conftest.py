"""Shared fixtures: a migrated SQLite store and a development PKI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker import db
from broker.pki import init_pki


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
