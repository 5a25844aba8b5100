"""The ``tillit`` command against the running stack, and the demo and serve lifecycles."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from broker.client import BrokerClient
from tests.e2e.conftest import (
    DATASET,
    FIELDS,
    PURPOSE,
    REQUESTER,
    SERVICE,
    Deployment,
    Providers,
    Subjects,
    grant,
    processes_mentioning,
    run_cli,
    start_broker,
    stop_broker,
)

pytestmark = pytest.mark.e2e


def fetch_args(subject: str, legal_basis: str, fields: tuple[str, ...] = FIELDS) -> list[str]:
    return [
        "fetch",
        "--subject",
        subject,
        "--dataset",
        DATASET,
        "--fields",
        ",".join(fields),
        "--purpose",
        PURPOSE,
        "--legal-basis",
        legal_basis,
        "--case",
        "EXB-CLI-1",
    ]


async def test_fetch_prints_json_and_exits_0_or_1(
    deployment: Deployment, subjects: Subjects, legal_basis: str
) -> None:
    subject = subjects.adult()
    code, out, err = await run_cli(
        "consent",
        "grant",
        "--subject",
        subject,
        "--requester",
        REQUESTER,
        "--service",
        SERVICE,
        "--dataset",
        DATASET,
        "--fields",
        ",".join(FIELDS),
        "--purpose",
        PURPOSE,
        config=deployment.config,
    )
    assert code == 0, err
    consent_id = json.loads(out)["id"]

    code, out, err = await run_cli(*fetch_args(subject, legal_basis), config=deployment.config)
    assert code == 0, err
    result = json.loads(out)
    income = subjects.income(subject)
    assert result["values"] == {name: income[name] for name in FIELDS}
    assert result["provenance"]["consent_id"] == consent_id

    code, out, _ = await run_cli(
        *fetch_args(subject, legal_basis, (*FIELDS, "capital_income_sek")),
        config=deployment.config,
    )
    assert code == 1
    error = json.loads(out)["error"]
    assert (error["code"], error["reason"]) == ("PERMISSION_DENIED", "FIELDS_NOT_PERMITTED")

    bad = subject[:-1] + str((int(subject[-1]) + 1) % 10)
    code, out, err = await run_cli(*fetch_args(bad, legal_basis), config=deployment.config)
    assert code == 1
    assert json.loads(out)["error"]["reason"] == "INVALID_SUBJECT_ID"
    assert bad not in out + err
    assert bad[2:] not in out + err


def _snapshot(deployment: Deployment, target: Path) -> Path:
    """A consistent copy of the live store (and the log's keys) in ``target``."""
    target.mkdir()
    shutil.copytree(deployment.data_dir / "keys", target / "keys")
    copy = target / "tillit.db"
    with (
        closing(sqlite3.connect(deployment.database)) as source,
        closing(sqlite3.connect(copy)) as destination,
    ):
        source.backup(destination)
    return copy


def _flip_a_byte(database: Path, index: int) -> None:
    with closing(sqlite3.connect(database)) as connection, connection:
        (reference,) = connection.execute(
            "SELECT case_reference FROM audit_entries WHERE idx = ?", (index,)
        ).fetchone()
        raw = bytearray(reference.encode())
        raw[-1] ^= 0x01
        changed = connection.execute(
            "UPDATE audit_entries SET case_reference = ? WHERE idx = ?", (raw.decode(), index)
        ).rowcount
    assert changed == 1


async def test_audit_verify_passes_then_names_the_altered_entry(
    deployment: Deployment,
    portal: BrokerClient,
    eservice: BrokerClient,
    subjects: Subjects,
    legal_basis: str,
    tmp_path: Path,
) -> None:
    subject = subjects.adult()
    await grant(portal, subject, deployment.token(subject))
    result = await eservice.fetch(
        subject, DATASET, list(FIELDS), PURPOSE, legal_basis, "EXB-CLI-2", f"cli-{uuid.uuid4()}"
    )
    index = int(result["provenance"]["audit_index"])

    code, out, err = await run_cli("audit", "verify", config=deployment.config)
    assert code == 0, out + err
    verdict = json.loads(out)
    assert verdict["ok"] is True
    assert verdict["tree_size"] > index

    # Tamper with a copy, so the shared broker's log stays intact for other tests.
    copy = _snapshot(deployment, tmp_path / "tampered")
    code, out, err = await run_cli("--data-dir", copy.parent, "audit", "verify")
    assert code == 0, out + err  # the copy verifies before it is touched
    _flip_a_byte(copy, index)
    code, out, err = await run_cli("--data-dir", copy.parent, "audit", "verify")
    assert code != 0
    verdict = json.loads(out)
    assert verdict["ok"] is False
    assert verdict["first_bad_index"] == index
    assert f"entry {index}" in verdict["problem"]


async def test_demo_exits_0_and_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    code, out, err = await run_cli("--data-dir", data_dir, "demo", timeout=120)
    assert code == 0, out + err
    assert "Demo finished: every step behaved as promised." in out
    assert "Demo FAILED" not in out
    # Every child the demo started (OPA, agencies) names files under its data directory.
    assert not processes_mentioning(str(data_dir))


async def test_serve_stops_on_sigterm_and_takes_its_opa_along(
    deployment: Deployment, providers: Providers, tmp_path: Path
) -> None:
    data_dir = tmp_path / "serve"
    data_dir.mkdir()
    shutil.copytree(deployment.pki_dir, data_dir / "pki")
    running = await start_broker(data_dir, providers)
    try:
        assert len(running.opa_children) == 1
        (opa,) = running.opa_children
        assert opa.alive()
        assert opa.cmdline()[1:3] == ["run", "--server"]
    finally:
        await stop_broker(running)
    assert not opa.alive()
