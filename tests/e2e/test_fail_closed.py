"""Fail closed, proven: when OPA cannot give a well-formed decision, no data leaves.

The broker runs with ``[opa] mode = "external"`` against an OPA this module
starts, stops and swaps at will, reached through a TCP proxy that can delay
OPA's answers. Each case checks the caller's error (UNAVAILABLE,
POLICY_UNAVAILABLE, no values) and the deny entry in the audit log.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.client import BrokerClient, CallError
from broker.opa_process import OpaProcess, find_opa, free_port
from broker.pki import TlsFiles, tls_files
from tests.e2e.conftest import (
    DATASET,
    FIELDS,
    POLICIES,
    PURPOSE,
    Deployment,
    Providers,
    Subjects,
    all_entries,
    grant,
    start_broker,
    stop_broker,
)

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT_MS = 300
SLOW = 2.0  # seconds OPA's answers are held back: well past TIMEOUT_MS
DEADLINE = 20.0


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` until it holds, failing after ``DEADLINE`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # polling a condition with a deadline


class DelayProxy:
    """A loopback TCP proxy to OPA that can hold back OPA's answers by ``delay`` seconds."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
            except OSError:
                return  # OPA is down: the client sees its connection closed
            await asyncio.gather(
                self._pipe(reader, up_writer, delayed=False),
                self._pipe(up_reader, writer, delayed=True),
            )
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if delayed and self.delay:
                    await asyncio.sleep(self.delay)  # the injected fault, not synchronisation
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()  # one side gone: close the other, as a real connection would


class ExternalOpa:
    """The OPA the broker is pointed at, run by this test on a fixed port."""

    def __init__(self, binary: str, tls: TlsFiles, client_tls: TlsFiles, log_dir: Path) -> None:
        self.binary = binary
        self.tls = tls
        self.port = free_port()
        self.log_dir = log_dir
        self.policies: Path | None = None
        self._process: OpaProcess | None = None
        context = ssl.create_default_context(cafile=str(client_tls.ca))
        context.load_cert_chain(str(client_tls.cert), str(client_tls.key))
        self._context = context
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context, force_close=True),
                timeout=aiohttp.ClientTimeout(total=5),
            )
        return self._session

    async def run(self, policies: Path) -> None:
        """(Re)start OPA on the same port with ``policies`` loaded; return once healthy."""
        await self.stop()
        self._process = OpaProcess(
            self.binary,
            policies,
            self.tls,
            port=self.port,
            watch=False,
            log_file=self.log_dir / "opa.log",
        )
        await self._process.start()
        self.policies = policies
        await eventually(self.healthy, "OPA to answer its health check")

    async def stop(self) -> None:
        if self._process is not None:
            await self._process.stop()
            self._process = None
            self.policies = None

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()

    async def healthy(self) -> bool:
        if self._process is None or not self._process.running():
            return False
        try:
            async with self._http().get(f"{self.url}/health") as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError):
            return False

    async def revision(self) -> str:
        """``data.tillit.meta.revision``, as the broker pushed it ("" if absent)."""
        async with self._http().get(f"{self.url}/v1/data/tillit/meta/revision") as response:
            body = await response.json()
        result = body.get("result", "")
        return result if isinstance(result, str) else ""

    async def decide(self, case_reference: str) -> tuple[int, dict[str, Any]]:
        """Ask OPA directly what the broker would get for a request with this case reference."""
        async with self._http().post(
            f"{self.url}/v1/data/tillit/exchange/decision",
            json={"input": {"case_reference": case_reference}},
        ) as response:
            body: dict[str, Any] = await response.json()
            return response.status, body


@dataclass
class External:
    deployment: Deployment
    opa: ExternalOpa
    proxy: DelayProxy
    revision: str
    eservice: BrokerClient
    portal: BrokerClient
    dpo: BrokerClient

    async def with_real_policies(self) -> None:
        """Make sure OPA runs the real policies and has the broker's revision."""
        if self.opa.policies != POLICIES:
            await self.opa.run(POLICIES)
        await eventually(self._has_revision, "the broker to push its policy revision")

    async def _has_revision(self) -> bool:
        return await self.opa.revision() == self.revision


@pytest.fixture(scope="module")
async def external(
    stack_dir: Path, providers: Providers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[External]:
    data_dir = tmp_path_factory.mktemp("external")
    shutil.copytree(stack_dir / "pki", data_dir / "pki")
    opa = ExternalOpa(
        find_opa(),
        tls_files(stack_dir / "pki", "opa"),
        tls_files(stack_dir / "pki", "broker"),
        tmp_path_factory.mktemp("external-opa"),
    )
    proxy = DelayProxy(opa.port)
    deployment: Deployment | None = None
    try:
        await opa.run(POLICIES)
        await proxy.start()
        deployment = await start_broker(
            data_dir,
            providers,
            mode="external",
            url=f"https://127.0.0.1:{proxy.port}",
            timeout_ms=TIMEOUT_MS,
            watch_interval=0.1,
        )
        assert deployment.opa_children == [], "an external OPA is not the broker's child"
        revision = await opa.revision()
        assert revision.startswith("sha256:"), "the broker pushes its revision at start-up"
        async with (
            deployment.client("exempelby-preschool-fee") as eservice,
            deployment.client("citizen-portal") as portal,
            deployment.client("dpo") as dpo,
        ):
            yield External(deployment, opa, proxy, revision, eservice, portal, dpo)
    finally:
        if deployment is not None:
            await stop_broker(deployment)
        await proxy.stop()
        await opa.close()


async def fetch(ext: External, subject: str, legal_basis: str, case: str = "EXB-FC-1") -> Any:
    return await ext.eservice.fetch(
        subject, DATASET, list(FIELDS), PURPOSE, legal_basis, case, f"fc-{uuid.uuid4()}"
    )


async def assert_failed_closed(ext: External, call: Awaitable[Any], cause: str) -> CallError:
    """``call`` is refused with POLICY_UNAVAILABLE and nothing else; its deny is audited."""
    with pytest.raises(CallError) as caught:
        await call
    error = caught.value
    assert (error.code, error.reason) == ("UNAVAILABLE", "POLICY_UNAVAILABLE"), error
    assert cause in error.message, error.message
    # The error says where its audit entry is, and carries no data of any kind.
    assert set(error.metadata) == {"decision_id", "audit_index"}, error.metadata
    entries = await all_entries(ext.dpo)
    (entry,) = [e for e in entries.values() if e["decision_id"] == error.metadata["decision_id"]]
    assert str(entry["index"]) == error.metadata["audit_index"]
    assert entry["decision"] == "DECISION_DENY"
    assert [r["code"] for r in entry["reasons"]] == ["POLICY_UNAVAILABLE"]
    assert entry["released_fields"] == []
    assert entry["data_digest"] == ""
    assert entry["requested_fields"] == list(FIELDS)
    return error


async def test_opa_down_fails_closed_and_recovers_when_it_is_back(
    external: External, subjects: Subjects, legal_basis: str
) -> None:
    ext = external
    await ext.with_real_policies()
    subject = subjects.adult()
    await grant(ext.portal, subject, ext.deployment.token(subject))
    before = await fetch(ext, subject, legal_basis)
    assert before["values"]  # the set-up works: with OPA up, data flows

    await ext.opa.stop()
    await assert_failed_closed(ext, fetch(ext, subject, legal_basis), "unreachable")

    await ext.opa.run(POLICIES)  # same port, and none of the data the broker pushed
    # The broker notices the restarted OPA lacks its revision and pushes it again.
    await ext.with_real_policies()
    after = await fetch(ext, subject, legal_basis)
    assert after["values"] == before["values"]
    assert after["provenance"]["policy_revision"] == ext.revision


async def test_slow_opa_fails_closed_within_the_timeout(
    external: External, subjects: Subjects, legal_basis: str
) -> None:
    ext = external
    await ext.with_real_policies()
    subject = subjects.adult()
    await grant(ext.portal, subject, ext.deployment.token(subject))
    loop = asyncio.get_running_loop()
    ext.proxy.delay = SLOW
    try:
        started = loop.time()
        await assert_failed_closed(ext, fetch(ext, subject, legal_basis), "in time")
        # The broker gave up at its own deadline; it did not wait for the late answer.
        assert loop.time() - started < SLOW
    finally:
        ext.proxy.delay = 0.0
    assert (await fetch(ext, subject, legal_basis))["values"]


async def test_an_undefined_decision_fails_closed(
    external: External, subjects: Subjects, legal_basis: str
) -> None:
    ext = external
    await ext.opa.run(FIXTURES / "undefined_decision")
    status, body = await ext.opa.decide("EXB-FC-1")
    assert (status, "result" in body) == (200, False)  # the fixture does leave it undefined
    await assert_failed_closed(ext, fetch(ext, subjects.adult(), legal_basis), "no decision")


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("ALLOW-IS-A-STRING", "allow must be a boolean"),
        ("ALLOW-WITHOUT-REVISION", "no policy revision"),
        ("ALLOW-WITHOUT-FIELDS", "permitted no field"),
        ("ALLOW-WITH-NO-FIELD", "permitted no field"),
        ("ALLOW-ONLY-UNREQUESTED-FIELDS", "permitted no field"),
        ("FIELDS-ARE-NOT-STRINGS", "permitted_fields must be a list of strings"),
        ("NOT-AN-OBJECT", "no decision"),
        ("DENY-WITHOUT-REASON", "a denial must give a reason"),
        ("CONFLICT", "could not evaluate"),
    ],
)
async def test_a_malformed_decision_fails_closed(
    external: External, subjects: Subjects, legal_basis: str, case: str, cause: str
) -> None:
    ext = external
    if ext.opa.policies != FIXTURES / "malformed_decision":
        await ext.opa.run(FIXTURES / "malformed_decision")
    status, body = await ext.opa.decide(case)
    if case == "CONFLICT":
        assert status == 500  # OPA reports the conflict instead of deciding
    else:
        assert status == 200
        assert body["result"] is True or "allow" in body["result"]
    subject = subjects.adult()
    # A consent on record, so only the malformed decision stands in the way.
    await grant(ext.portal, subject, ext.deployment.token(subject))
    await assert_failed_closed(ext, fetch(ext, subject, legal_basis, case=case), cause)
