"""End-to-end fixtures: real ``tillit`` processes on loopback ports, over real mTLS.

One session-wide stack serves the exchange and CLI tests: ``tillit pki init``,
then ``tillit providers serve`` and ``tillit serve`` (which starts its own OPA),
each from a TOML config written here. Readiness is the gRPC health check
reporting SERVING, polled with a deadline. At teardown every process gets
SIGTERM and must exit cleanly, leaving no OPA behind.

Tests share these processes, so each one uses its own synthetic subjects
(``Subjects``), drawn from the same population the providers serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broker.client import BrokerClient
from broker.config import REPO_ROOT, IdentitySettings
from broker.demo import statute_of
from broker.identity import channel_credentials
from broker.keys import dev_idp_key
from broker.opa_process import find_opa, free_port
from broker.pki import TlsFiles, tls_files
from broker.providers import SEED, SERVICE_NAME, SyntheticPopulation
from broker.servicers import AUDIT, CONSENT, EXCHANGE
from consent.tokens import mint

TILLIT = Path(sys.executable).with_name("tillit")
POLICIES = REPO_ROOT / "policies"
POPULATION_SIZE = 2000
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
AGENCIES = ("tax-agency", "population-register", "social-insurance")

# The demo story's request (see broker/demo.py).
PURPOSE = "preschool-fee-reduction"
REQUESTER, SERVICE = "exempelby-kommun", "preschool-fee"
DATASET = "taxed-income"
FIELDS = ("income_year", "taxed_income_sek")


# -- processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcRef:
    """A process identified by pid and start time, so a reused pid is not mistaken for it."""

    pid: int
    start_time: str

    @classmethod
    def of(cls, pid: int) -> ProcRef | None:
        stat = _stat(pid)
        return None if stat is None else cls(pid, stat[19])

    def alive(self) -> bool:
        stat = _stat(self.pid)
        # A zombie has exited; only its parent's bookkeeping is left.
        return stat is not None and stat[19] == self.start_time and stat[0] != "Z"

    def cmdline(self) -> list[str]:
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from the state on (the name may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[ProcRef]:
    """Direct children of ``pid``, from /proc (``task/*/children`` where the kernel has it)."""
    pids: set[int] = set()
    tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if tasks:
        for task in tasks:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in task.read_text().split())
    else:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None and stat[1] == str(pid):
                    pids.add(int(entry.name))
    return [ref for p in sorted(pids) if (ref := ProcRef.of(p)) is not None]


def processes_mentioning(text: str) -> list[ProcRef]:
    """Every live process whose command line mentions ``text`` (e.g. a data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            ref = ProcRef.of(int(entry.name))
            if ref is not None and ref.alive() and any(text in a for a in ref.cmdline()):
                found.append(ref)
    return found


def hermetic_env() -> dict[str, str]:
    """Our environment without ``TILLIT_*`` overrides (except the OPA binary)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env["TILLIT_OPA"] = find_opa()
    return env


async def run_cli(
    *args: str | Path, config: Path | None = None, timeout: float = 60.0
) -> tuple[int, str, str]:
    """Run ``tillit [--config C] args...``; return (exit code, stdout, stderr)."""
    command = [str(TILLIT), *(["--config", str(config)] if config else []), *map(str, args)]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=hermetic_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Service:
    """A ``tillit`` process started by a fixture, its output going to a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, config: Path, *args: str, log_dir: Path) -> Service:
        log = log_dir / f"{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [str(TILLIT), "--config", str(config), *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=hermetic_env(),
                start_new_session=True,
            )
        return cls(name, proc, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def describe(self) -> str:
        return f"{self.name} (exit {self.proc.poll()}); its output:\n{self.output()[-4000:]}"

    async def stop(self) -> int:
        """SIGTERM, then wait (bounded) for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT} s")


async def health_status(target: str, tls: TlsFiles, service: str) -> int | None:
    """The health status of ``service`` at ``target``, or None if it does not answer."""
    # A fresh channel per probe: a channel that failed to connect backs off for seconds.
    async with grpc.aio.secure_channel(target, channel_credentials(tls)) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2.0
            )
        except grpc.aio.AioRpcError:
            return None
    status: int = response.status
    return status


async def wait_serving(
    service: Service, target: str, tls: TlsFiles, names: Sequence[str], timeout: float
) -> None:
    """Poll the health check until every name is SERVING, failing if the process dies."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = list(names)
    while pending:
        if service.proc.poll() is not None:
            pytest.fail(f"{service.describe()}\nexited before serving")
        status = await health_status(target, tls, pending[0])
        if status == health_pb2.HealthCheckResponse.SERVING:
            pending.pop(0)
            continue
        if loop.time() > deadline:
            pytest.fail(f"{service.describe()}\nnot SERVING {pending[0]} after {timeout} s")
        await asyncio.sleep(0.05)  # polling a condition with a deadline


def toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a ``tillit`` TOML config file."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


# -- deployments --------------------------------------------------------------------------


@dataclass
class Providers:
    addresses: dict[str, str]
    service: Service
    pki_dir: Path


@dataclass
class Deployment:
    """A running broker and what a test needs to reach it."""

    data_dir: Path
    config: Path
    target: str
    broker: Service
    opa_children: list[ProcRef] = field(default_factory=list)

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def database(self) -> Path:
        return self.data_dir / "tillit.db"

    def tls(self, party: str) -> TlsFiles:
        return tls_files(self.pki_dir, party)

    def client(self, party: str) -> BrokerClient:
        return BrokerClient(self.target, self.tls(party))

    def token(self, subject: str) -> str:
        """A citizen's ID token from the development identity provider the broker trusts."""
        identity = IdentitySettings()
        key = dev_idp_key(self.data_dir / "keys")
        return mint(key, subject, issuer=identity.issuer, audience=identity.audience)


def broker_config(
    data_dir: Path, port: int, providers: Providers, opa: Mapping[str, Any] | None = None
) -> Path:
    return write_config(
        data_dir / "tillit.toml",
        {
            "broker": {
                "listen": f"127.0.0.1:{port}",
                "data_dir": data_dir,
                "shutdown_grace": 2.0,
            },
            "opa": {"binary": find_opa(), **(opa or {})},
            "providers": {
                "addresses": providers.addresses,
                "population_size": POPULATION_SIZE,
            },
        },
    )


async def start_broker(data_dir: Path, providers: Providers, **opa: Any) -> Deployment:
    """``tillit serve`` with the given data directory (which must hold the PKI)."""
    port = free_port()
    config = broker_config(data_dir, port, providers, opa)
    service = Service.start("broker", config, "serve", log_dir=data_dir)
    deployment = Deployment(data_dir, config, f"127.0.0.1:{port}", service)
    try:
        await wait_serving(
            service,
            deployment.target,
            deployment.tls("dpo"),
            [EXCHANGE, CONSENT, AUDIT],
            START_TIMEOUT,
        )
    except BaseException:
        await service.stop()  # never leave a half-started broker behind
        raise
    deployment.opa_children = [
        ref
        for ref in children_of(service.proc.pid)
        if [Path(arg).name for arg in ref.cmdline()[:1]] == ["opa"]
    ]
    return deployment


async def stop_broker(deployment: Deployment) -> None:
    """SIGTERM the broker; it must exit 0 and take its OPA with it."""
    code = await deployment.broker.stop()
    assert code == 0, deployment.broker.describe()
    left = [ref.pid for ref in deployment.opa_children if ref.alive()]
    assert not left, f"OPA processes left behind by the broker: {left}"
    assert not processes_mentioning(str(deployment.data_dir)), "processes left behind"


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a development PKI made by ``tillit pki init``."""
    data_dir = tmp_path_factory.mktemp("stack")
    result = subprocess.run(
        [str(TILLIT), "--data-dir", str(data_dir), "pki", "init"],
        capture_output=True,
        text=True,
        env=hermetic_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "broker.crt" in json.loads(result.stdout)["written"]
    return data_dir


@pytest.fixture(scope="session")
async def providers(
    stack_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Providers]:
    """``tillit providers serve``: the three demo agencies on free loopback ports."""
    addresses = {agency: f"127.0.0.1:{free_port()}" for agency in AGENCIES}
    # Config and log live apart from the stack, whose directory must be free of
    # processes once the broker has stopped.
    own_dir = tmp_path_factory.mktemp("providers")
    config = write_config(
        own_dir / "providers.toml",
        {
            "broker": {"data_dir": stack_dir},
            "providers": {"addresses": addresses, "population_size": POPULATION_SIZE},
        },
    )
    service = Service.start("providers", config, "providers", "serve", log_dir=own_dir)
    try:
        for address in addresses.values():
            await wait_serving(
                service,
                address,
                tls_files(stack_dir / "pki", "broker"),
                [SERVICE_NAME],
                START_TIMEOUT,
            )
        yield Providers(addresses, service, stack_dir / "pki")
    finally:
        code = await service.stop()
        assert code == 0, service.describe()


@pytest.fixture(scope="session")
async def deployment(stack_dir: Path, providers: Providers) -> AsyncIterator[Deployment]:
    """``tillit serve`` with a local OPA, sharing the stack's data directory."""
    running = await start_broker(stack_dir, providers)
    try:
        assert len(running.opa_children) == 1, "the broker should run exactly one OPA"
        yield running
    finally:
        await stop_broker(running)


@pytest.fixture(scope="session")
async def eservice(deployment: Deployment) -> AsyncIterator[BrokerClient]:
    """The municipality's preschool-fee e-service (role requester)."""
    async with deployment.client("exempelby-preschool-fee") as client:
        yield client


@pytest.fixture(scope="session")
async def portal(deployment: Deployment) -> AsyncIterator[BrokerClient]:
    """The citizen portal (role portal)."""
    async with deployment.client("citizen-portal") as client:
        yield client


@pytest.fixture(scope="session")
async def dpo(deployment: Deployment) -> AsyncIterator[BrokerClient]:
    """The data protection officer (role dpo)."""
    async with deployment.client("dpo") as client:
        yield client


# -- subjects -----------------------------------------------------------------------------


class Subjects:
    """Hands out distinct synthetic people, so tests sharing a broker never collide."""

    def __init__(self, population: SyntheticPopulation) -> None:
        self.population = population
        self.used: list[str] = []
        today = dt.date.today()
        self._adults = iter(
            population.find_all(
                lambda c: (
                    not c.protected_identity
                    and c.age_on(today) >= 18
                    and population.record("tax-agency", DATASET, c.pnr) is not None
                )
            )
        )
        self._protected = iter(population.find_all(lambda c: c.protected_identity))

    def _take(self, source: Iterator[str]) -> str:
        pnr = next(source)
        self.used.append(pnr)
        return pnr

    def adult(self) -> str:
        """An adult, not protected, with a taxed income on record."""
        return self._take(self._adults)

    def protected(self) -> str:
        """Someone with a protected identity."""
        return self._take(self._protected)

    def income(self, pnr: str) -> dict[str, Any]:
        """What the tax agency holds about ``pnr`` (the expected fetched values)."""
        record = self.population.record("tax-agency", DATASET, pnr)
        assert record is not None
        return record


@pytest.fixture(scope="session")
def subjects() -> Subjects:
    return Subjects(SyntheticPopulation(POPULATION_SIZE, SEED))


@pytest.fixture(scope="session")
def legal_basis() -> str:
    """The statute the preschool-fee e-service cites."""
    return statute_of(POLICIES, PURPOSE)


async def grant(portal: BrokerClient, subject: str, token: str) -> dict[str, Any]:
    """The subject's explicit request that the preschool-fee e-service reuse their income."""
    return await portal.grant(
        subject,
        kind="explicit_request",
        requester=REQUESTER,
        service=SERVICE,
        dataset=DATASET,
        fields=list(FIELDS),
        purpose=PURPOSE,
        token=token,
    )


async def all_entries(dpo: BrokerClient) -> dict[int, dict[str, Any]]:
    """Every audit entry, by index, as the DPO lists them."""
    entries: dict[int, dict[str, Any]] = {}
    token = ""
    while True:
        page = await dpo.audit_entries(page_size=1000, page_token=token)
        for entry in page["entries"]:
            entries[int(entry["index"])] = entry
        token = page["next_page_token"]
        if not token:
            return entries
