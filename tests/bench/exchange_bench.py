"""``make bench``: exchanges per second through the whole path, against a bare gRPC echo.

Everything runs as separate processes on loopback, each with its own data
directory and TOML config under ``.bench/run-*`` (on the real disk, so SQLite's
fsync costs what it costs):

1. ``tillit pki init`` makes the certificates every process uses;
2. baseline: the bare ``grpc.aio`` echo server (``tests.bench.echo``) is driven
   by the load generator (``tests.bench.loadgen``), then stopped;
3. ``tillit providers serve`` (the demo agencies) and ``tillit serve`` (the
   broker, which starts OPA) start; readiness is their gRPC health check;
4. the citizen portal grants an explicit request (purpose
   ``preschool-fee-reduction``) for each of N synthetic adults;
5. the same load generator, same concurrency and channels, calls ``FetchData``
   with unique idempotency keys over a mix of those subjects;
6. everything is stopped; the audit log is counted and verified.

It prints a table and, last, one JSON line (also appended to
``.bench/history.jsonl``) so runs can be compared. Exit status 1 if any call
failed or the audit log did not verify. Settings (flags or ``BENCH_*``
variables): see ``--help``. ``BENCH_QUICK=1`` is a smoke run of a few seconds;
``BENCH_PROFILE=1`` profiles the broker in the measured window (py-spy if
found, else cProfile; figures marked as not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import pstats
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broker.client import BrokerClient, CallError
from broker.config import REPO_ROOT, Settings, load_settings
from broker.demo import DATASET, FIELDS, PURPOSE, REQUESTER, SERVICE, statute_of
from broker.identity import channel_credentials
from broker.keys import dev_idp_key
from broker.opa_process import free_port
from broker.pki import TlsFiles, tls_files
from broker.providers import AGENCIES, SEED, TAX_AGENCY, SyntheticPopulation
from broker.servicers import EXCHANGE
from consent.tokens import mint
from tests.bench.echo import SERVICE as ECHO_SERVICE
from tests.bench.loadgen import LoadResult, LoadSpec
from tests.bench.stacks import summarise

BENCH_DIR = REPO_ROOT / ".bench"
REQUESTER_PARTY = "exempelby-preschool-fee"
READY_TIMEOUT = 90.0
STOP_GRACE = 15.0
# Variables that would override the ports and directories this harness sets.
_OWN_SETTINGS = ("TILLIT_CONFIG", "TILLIT_BROKER_", "TILLIT_PROVIDERS_")


class BenchError(Exception):
    """The benchmark could not run as set up (a process died, never got ready, ...)."""


@dataclass(frozen=True)
class BenchConfig:
    concurrency: int
    channels: int
    clients: int
    warmup: float
    duration: float
    subjects: int
    population: int
    quick: bool
    profile: str  # "", "py-spy" or "cprofile"
    keep: bool
    # Where run directories, profiles and history.jsonl go.
    output: Path


def find_pyspy(env: Mapping[str, str]) -> str:
    """The py-spy binary ($BENCH_PYSPY, else on PATH), or ""."""
    return env.get("BENCH_PYSPY") or shutil.which("py-spy") or ""


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").lower() in ("1", "true", "yes", "on")


def parse_config(argv: Sequence[str] | None, env: Mapping[str, str]) -> BenchConfig:
    """Flags, else ``BENCH_*`` variables, else defaults (quick mode has its own)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.exchange_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", default=_env_flag(env, "BENCH_QUICK"))
    profile = env.get("BENCH_PROFILE", "").lower()
    parser.add_argument(
        "--profile",
        nargs="?",
        const="auto",
        default="auto" if profile in ("1", "true", "yes", "on") else profile,
        choices=["", "auto", "py-spy", "cprofile"],
        help="profile the broker during the measured window: py-spy if found "
        "($BENCH_PYSPY or PATH), else cProfile [BENCH_PROFILE=1|py-spy|cprofile]",
    )
    parser.add_argument(
        "--keep", action="store_true", default=_env_flag(env, "BENCH_KEEP"), help="keep run dir"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(env.get("BENCH_DIR") or BENCH_DIR),
        help="run dirs, profiles, history.jsonl [BENCH_DIR, default .bench]",
    )
    numbers: list[tuple[str, type, str]] = [
        ("concurrency", int, "calls in flight (all client processes together)"),
        ("channels", int, "mTLS channels per client process"),
        ("clients", int, "load-generator processes"),
        ("warmup", float, "seconds before measuring"),
        ("duration", float, "seconds measured"),
        ("subjects", int, "synthetic adults with a consent"),
        ("population", int, "size of the demo agencies' synthetic population"),
    ]
    for name, kind, text in numbers:
        raw = env.get(f"BENCH_{name.upper()}")
        parser.add_argument(
            f"--{name}", type=kind, default=kind(raw) if raw else None, help=f"{text} [BENCH_*]"
        )
    args = parser.parse_args(argv)
    defaults: dict[str, float] = (
        {
            "concurrency": 16,
            "channels": 2,
            "clients": 1,
            "warmup": 0.5,
            "duration": 2.0,
            "subjects": 40,
            "population": 2000,
        }
        if args.quick
        else {
            "concurrency": 16,
            "channels": 4,
            "clients": 1,
            "warmup": 3.0,
            "duration": 15.0,
            "subjects": 1000,
            "population": 10_000,
        }
    )
    values = {name: getattr(args, name) for name, _, _ in numbers}
    for name, value in values.items():
        if value is None:
            values[name] = defaults[name]
    config = BenchConfig(
        concurrency=int(values["concurrency"]),
        channels=int(values["channels"]),
        clients=int(values["clients"]),
        warmup=float(values["warmup"]),
        duration=float(values["duration"]),
        subjects=int(values["subjects"]),
        population=int(values["population"]),
        quick=args.quick,
        profile=("py-spy" if find_pyspy(env) else "cprofile")
        if args.profile == "auto"
        else args.profile,
        keep=args.keep,
        output=args.output.resolve(),
    )
    if min(config.concurrency, config.channels, config.clients, config.subjects) < 1:
        parser.error("concurrency, channels, clients and subjects must be at least 1")
    if config.profile == "py-spy" and not find_pyspy(env):
        parser.error("py-spy not found: put it on PATH or set BENCH_PYSPY")
    if config.duration <= 0 or config.warmup < 0:
        parser.error("duration must be positive and warmup not negative")
    if config.concurrency < config.clients:
        parser.error("concurrency must be at least the number of client processes")
    return config


# -- processes ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_cpu_seconds() -> dict[int, tuple[str, float]]:
    """(name, CPU seconds) of every process, to name what else used the machine."""
    found: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        found[int(entry.name)] = (
            head.split("(", 1)[1],
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return found


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by name ("main" for the event loop thread)."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            head, rest = stat.rsplit(")", 1)
            name = "main" if int(task.name) == pid else head.split("(", 1)[1]
            fields = rest.split()
            used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            found[name] = found.get(name, 0.0) + used
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (OPA runs in its own session, so signals miss it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class _Started:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    companions: list[int] = dataclasses.field(default_factory=list)


class Processes:
    """Every process the benchmark starts; ``stop_all`` ends them, by pid, on any exit."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._started: list[_Started] = []
        self._files: list[IO[bytes]] = []
        self.pids: dict[str, int] = {}

    def start(self, name: str, argv: Sequence[str], *, stdout: Path | None = None) -> _Started:
        log = self.run_dir / f"{name}.log"
        err = log.open("wb")
        out = stdout.open("wb") if stdout is not None else err
        self._files.extend([err, out] if out is not err else [err])
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=REPO_ROOT,
            env=_child_env(),
            # Own session: a Ctrl-C reaches only this harness, which stops them in order.
            start_new_session=True,
        )
        started = _Started(name, popen, log)
        self._started.append(started)
        self.pids[name] = popen.pid
        return started

    def adopt_children(self, started: _Started) -> dict[str, int]:
        """Remember the children of ``started`` (the broker's OPA) to be sure they end."""
        found = {}
        for pid in children_of(started.popen.pid):
            started.companions.append(pid)
            comm = Path(f"/proc/{pid}/comm").read_text().strip() if _alive(pid) else "child"
            found[f"{started.name}/{comm}"] = pid
        self.pids.update(found)
        return found

    async def stop(self, started: _Started, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the same for companions."""
        popen = started.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            await _wait_exit(popen, grace)
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                await _wait_exit(popen, 5.0)
        for pid in started.companions:
            # Normally the broker has already stopped its OPA; this is the safety net.
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                await wait_pid(pid, 5.0)
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if started in self._started:
            self._started.remove(started)
        return popen.returncode

    async def stop_all(self) -> None:
        for started in reversed(list(self._started)):
            await self.stop(started)
        for handle in self._files:
            handle.close()
        self._files.clear()

    def check_running(self, started: _Started) -> None:
        if started.popen.poll() is not None:
            raise BenchError(
                f"{started.name} exited with status {started.popen.returncode}:\n"
                f"{tail(started.log)}"
            )


async def wait_pid(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for ``pid`` (a child or not) to exit."""
    try:
        fd = os.pidfd_open(pid)  # readable once the process has exited
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(fd, exited.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _wait_exit(popen: subprocess.Popen[bytes], timeout: float) -> None:
    if popen.poll() is None:
        await wait_pid(popen.pid, timeout)
        popen.poll()  # reap it


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (no output)"


async def wait_healthy(
    processes: Processes, started: _Started, target: str, tls: TlsFiles, service: str
) -> None:
    """Poll the gRPC health check of ``service`` until SERVING, the process dies or time out."""
    options = [
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 500),
    ]
    deadline = time.monotonic() + READY_TIMEOUT
    delay = 0.05
    async with grpc.aio.secure_channel(target, channel_credentials(tls), options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            processes.check_running(started)
            try:
                response = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1.0
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{started.name} not healthy after {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(delay)  # polling a health endpoint, with a deadline
            delay = min(delay * 2, 0.5)


# -- the run ----------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    data_dir: Path,
    listen: str,
    providers: Mapping[str, str],
    population: int,
    policies: Path,
) -> Path:
    addresses = ", ".join(f"{_toml_string(k)} = {_toml_string(v)}" for k, v in providers.items())
    path.write_text(
        "[broker]\n"
        f"listen = {_toml_string(listen)}\n"
        f"data_dir = {_toml_string(str(data_dir))}\n\n"
        "[opa]\n"
        f"policies = {_toml_string(str(policies))}\n\n"
        "[providers]\n"
        f"addresses = {{ {addresses} }}\n"
        f"population_size = {population}\n"
    )
    return path


def tillit(config: Path, *args: str, cprofile: Path | None = None) -> list[str]:
    """argv for ``tillit --config CONFIG ARGS`` (the console script's module)."""
    command = ["-m", "broker.cli", "--config", str(config), *args]
    if cprofile is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(cprofile), *command]
    return [sys.executable, *command]


def bench_subjects(population: int, count: int) -> list[str]:
    """The first ``count`` adults without protected identity that the tax agency knows."""
    people = SyntheticPopulation(population, SEED)
    today = dt.date.today()
    chosen: list[str] = []
    for pnr in people.numbers():
        citizen = people.citizen(pnr)
        if citizen is None or citizen.protected_identity or citizen.age_on(today) < 18:
            continue
        if people.record(TAX_AGENCY, DATASET, pnr) is None:
            continue
        chosen.append(pnr)
        if len(chosen) == count:
            break
    if not chosen:
        raise BenchError("no adult in the synthetic population has taxed income")
    return chosen


async def grant_consents(target: str, settings: Settings, subjects: Sequence[str]) -> None:
    """The portal grants each subject's explicit request, as in ``tillit demo``.

    Each citizen signs in through the development identity provider, whose key
    the broker keeps in its data directory (the embedded set-up).
    """
    idp_key = dev_idp_key(settings.keys_dir)
    limit = asyncio.Semaphore(16)
    async with BrokerClient(target, tls_files(settings.pki_dir, "citizen-portal")) as portal:

        async def grant(subject: str) -> None:
            token = mint(
                idp_key,
                subject,
                issuer=settings.identity.issuer,
                audience=settings.identity.audience,
            )
            async with limit:
                await portal.grant(
                    subject,
                    kind="explicit_request",
                    requester=REQUESTER,
                    service=SERVICE,
                    dataset=DATASET,
                    fields=FIELDS,
                    purpose=PURPOSE,
                    language="en",
                    token=token,
                )

        await asyncio.gather(*(grant(s) for s in subjects))


async def check_one_exchange(target: str, pki_dir: Path, subject: str, legal_basis: str) -> None:
    """Fail fast, with the broker's own error, if an exchange is not allowed."""
    async with BrokerClient(target, tls_files(pki_dir, REQUESTER_PARTY)) as eservice:
        result = await eservice.fetch(
            subject, DATASET, FIELDS, PURPOSE, legal_basis, "BENCH-CHECK", f"check-{uuid.uuid4()}"
        )
    if set(result.get("values", {})) != set(FIELDS):
        raise BenchError(f"the check exchange released {sorted(result.get('values', {}))}")


@dataclass(frozen=True)
class Phase:
    """One measured load: who was driven, and what the load generators measured."""

    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    completed: int
    errors: dict[str, int]
    error_sample: str
    cpu_pct: dict[str, float]
    machine_busy_pct: float
    # The server's threads (the broker's or the echo's), by name.
    thread_cpu_pct: dict[str, float]
    # The busiest processes that were not the benchmark's, by name.
    other_top: dict[str, float]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drive(
    processes: Processes,
    config: BenchConfig,
    name: str,
    spec: LoadSpec,
    watched: Mapping[str, int],
    threads_of: int | None = None,
    pyspy: tuple[int, Path] | None = None,
) -> Phase:
    """Run ``config.clients`` load generators with ``spec`` and merge what they measured."""
    start_at = time.time() + 3.0  # time for the clients to start and connect
    clients = []
    for index in range(config.clients):
        share = config.concurrency // config.clients + (
            1 if index < config.concurrency % config.clients else 0
        )
        own = dataclasses.replace(
            spec,
            concurrency=share,
            start_at=start_at,
            seed=index,
            key_prefix=f"{spec.key_prefix}-{index}",
        )
        spec_file = processes.run_dir / f"load-{name}-{index}.spec.json"
        spec_file.write_text(json.dumps(dataclasses.asdict(own)))
        out = processes.run_dir / f"load-{name}-{index}.json"
        started = processes.start(
            f"load-{name}-{index}",
            [sys.executable, "-m", "tests.bench.loadgen", str(spec_file)],
            stdout=out,
        )
        clients.append((started, out))
    # CPU of every process during the measured window (per cent of one core).
    await asyncio.sleep(max(0.0, start_at + config.warmup - time.time()))
    pids = {**watched, **{s.name: s.popen.pid for s, _ in clients}}
    spy = None
    if pyspy is not None:
        # Samples of the thread holding the GIL: where the broker's Python time goes.
        pid, out = pyspy
        spy = processes.start(
            "py-spy",
            [
                find_pyspy(os.environ),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(config.duration))),
                "--rate",
                "200",
                "--gil",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
        )
    everyone_before = all_cpu_seconds()
    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    threads_before = thread_cpu_seconds(threads_of) if threads_of else {}
    busy0, total0 = machine_busy_seconds()
    await asyncio.sleep(config.duration)
    after = {k: cpu_seconds(pid) for k, pid in pids.items()}
    threads_after = thread_cpu_seconds(threads_of) if threads_of else {}
    busy1, total1 = machine_busy_seconds()
    everyone_after = all_cpu_seconds()
    if spy is not None:
        await _wait_exit(spy.popen, 30)
        await processes.stop(spy)
    cpu = {k: round(100 * (after[k] - before[k]) / config.duration, 1) for k in pids}
    threads = {
        k: round(100 * (v - threads_before.get(k, 0.0)) / config.duration, 1)
        for k, v in sorted(threads_after.items(), key=lambda kv: -kv[1])
        if v - threads_before.get(k, 0.0) > 0
    }
    machine = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9) * (os.cpu_count() or 1)
    # Whatever else ran on the machine meanwhile (other users' tests skew the figures).
    cpu["other"] = round(max(0.0, machine - sum(cpu.values())), 1)
    ours = {*pids.values(), os.getpid()}
    others: dict[str, float] = {}
    for pid, (comm, after_s) in everyone_after.items():
        if pid in ours:
            continue
        used = after_s - everyone_before.get(pid, (comm, 0.0))[1]
        if used > 0:
            others[comm] = others.get(comm, 0.0) + used
    other_top = {
        k: round(100 * v / config.duration, 1)
        for k, v in sorted(others.items(), key=lambda kv: -kv[1])[:4]
    }
    if cpu["other"] > 25:
        print(
            f"warning: other processes used {cpu['other']:g} % of a core while {name} "
            f"was measured ({other_top}); figures are skewed",
            file=sys.stderr,
        )

    deadline = time.monotonic() + spec.call_timeout + 60
    results: list[LoadResult] = []
    for started, out in clients:
        await _wait_exit(started.popen, max(0.0, deadline - time.monotonic()))
        if started.popen.poll() is None:
            raise BenchError(f"{started.name} did not finish")
        if started.popen.returncode != 0:
            raise BenchError(
                f"{started.name} exited with status {started.popen.returncode}:\n"
                f"{tail(started.log)}"
            )
        await processes.stop(started)
        results.append(LoadResult(**json.loads(out.read_text())))
    late = max(r.late_s for r in results)
    if late > 0.5:
        print(f"warning: a load generator started {late:.1f} s late", file=sys.stderr)

    latencies = sorted(x for r in results for x in r.latencies_ms)
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r.errors.items():
            errors[code] = errors.get(code, 0) + count
    completed = sum(r.completed for r in results)
    return Phase(
        name=name,
        requests_per_s=completed / config.duration,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        completed=completed,
        errors=errors,
        error_sample=next((r.error_sample for r in results if r.error_sample), ""),
        cpu_pct=cpu,
        machine_busy_pct=round(machine, 1),
        thread_cpu_pct=threads,
        other_top=other_top,
    )


def audit_counts(database: Path) -> dict[str, int]:
    """Entries and commits in the audit log (one commit's entries share one time)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        entries, commits = db.execute(
            "SELECT count(*), count(DISTINCT time) FROM audit_entries"
        ).fetchone()
    return {"entries": int(entries), "commits": int(commits)}


async def verify_audit(config_file: Path) -> dict[str, Any]:
    """``tillit audit verify`` against the stopped broker's store."""
    proc = await asyncio.create_subprocess_exec(
        *tillit(config_file, "audit", "verify"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=_child_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchError("tillit audit verify took more than 300 s") from None
    if proc.returncode not in (0, 2):
        raise BenchError(f"tillit audit verify failed: {err.decode(errors='replace')[-2000:]}")
    verdict: dict[str, Any] = json.loads(out)
    return verdict


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "grpc": grpc.__version__,
    }


def git_revision() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD")
    return head + (
        "+dirty" if head and git("status", "--porcelain", "--untracked-files=no") else ""
    )


def save_profile(mode: str, profile: Path, output: Path) -> Path:
    """Keep the broker's profile next to the run history; return the report's path."""
    if mode == "py-spy":
        if not profile.exists():
            raise BenchError(f"py-spy wrote no profile; see {profile.parent / 'py-spy.log'}")
        shutil.copyfile(profile, output / "broker-stacks.txt")
        report = output / "broker-profile.txt"
        report.write_text(summarise(profile.read_text()))
        return report
    shutil.copyfile(profile, output / "broker.prof")
    report = output / "broker-profile.txt"
    with report.open("w") as handle:
        stats = pstats.Stats(str(profile), stream=handle)
        stats.strip_dirs()
        handle.write("== by own time (tottime)\n")
        stats.sort_stats("tottime").print_stats(40)
        handle.write("\n== by cumulative time\n")
        stats.sort_stats("cumulative").print_stats(60)
    return report


async def run_bench(config: BenchConfig, run_dir: Path) -> dict[str, Any]:
    """The whole benchmark; returns the result document."""
    processes = Processes(run_dir)
    try:
        return await _run(config, run_dir, processes)
    finally:
        await processes.stop_all()


async def _run(config: BenchConfig, run_dir: Path, processes: Processes) -> dict[str, Any]:
    broker_dir, providers_dir = run_dir / "broker", run_dir / "providers"
    broker_dir.mkdir()
    providers_dir.mkdir()
    # A snapshot of the policies: OPA watches its directory, and edits made
    # meanwhile in the working tree must not change (or break) a run.
    policies = run_dir / "policies"
    shutil.copytree(REPO_ROOT / "policies", policies, ignore=shutil.ignore_patterns(".*"))
    provider_ports = {agency: f"127.0.0.1:{free_port()}" for agency in AGENCIES}
    broker_target = f"127.0.0.1:{free_port()}"
    broker_config = write_config(
        run_dir / "broker.toml",
        broker_dir,
        broker_target,
        provider_ports,
        config.population,
        policies,
    )
    providers_config = write_config(
        run_dir / "providers.toml",
        providers_dir,
        "127.0.0.1:0",
        provider_ports,
        config.population,
        policies,
    )
    pki = processes.start("pki", tillit(broker_config, "pki", "init"))
    await _wait_exit(pki.popen, 60)
    if pki.popen.returncode != 0:
        processes.check_running(pki)
        raise BenchError("tillit pki init did not finish")
    await processes.stop(pki)
    pki_dir = broker_dir / "pki"
    shutil.copytree(pki_dir, providers_dir / "pki")

    legal_basis = statute_of(policies, PURPOSE)
    subjects = await asyncio.to_thread(bench_subjects, config.population, config.subjects)
    run_id = f"bench-{uuid.uuid4().hex[:12]}"
    spec = LoadSpec(
        mode="echo",
        target="",
        pki_dir=str(pki_dir),
        party=REQUESTER_PARTY,
        subjects=subjects,
        dataset=DATASET,
        fields=list(FIELDS),
        purpose=PURPOSE,
        legal_basis=legal_basis,
        concurrency=config.concurrency,
        channels=config.channels,
        warmup=config.warmup,
        duration=config.duration,
        start_at=0.0,
        key_prefix=run_id,
    )
    requester_tls = tls_files(pki_dir, REQUESTER_PARTY)

    # Baseline: the bare echo server, alone on the machine.
    echo_target = f"127.0.0.1:{free_port()}"
    echo = processes.start(
        "echo",
        [
            sys.executable,
            "-m",
            "tests.bench.echo",
            "--pki-dir",
            str(pki_dir),
            "--listen",
            echo_target,
        ],
    )
    await wait_healthy(processes, echo, echo_target, requester_tls, ECHO_SERVICE)
    echo_phase = await drive(
        processes,
        config,
        "echo",
        dataclasses.replace(spec, mode="echo", target=echo_target),
        {"echo": echo.popen.pid},
        threads_of=echo.popen.pid,
    )
    await processes.stop(echo)

    # The whole path: agencies, broker (and its OPA).
    providers = processes.start("providers", tillit(providers_config, "providers", "serve"))
    broker_tls = tls_files(pki_dir, "broker")
    for address in provider_ports.values():
        await wait_healthy(processes, providers, address, broker_tls, "")
    profile = run_dir / f"broker-{config.profile}.out" if config.profile else None
    broker = processes.start(
        "broker",
        tillit(broker_config, "serve", cprofile=profile if config.profile == "cprofile" else None),
    )
    await wait_healthy(processes, broker, broker_target, requester_tls, EXCHANGE)
    companions = processes.adopt_children(broker)

    granted = time.monotonic()
    await grant_consents(broker_target, load_settings(broker_config, {}), subjects)
    grant_s = time.monotonic() - granted
    await check_one_exchange(broker_target, pki_dir, subjects[0], legal_basis)
    watched = {"broker": broker.popen.pid, "providers": providers.popen.pid, **companions}
    tillit_phase = await drive(
        processes,
        config,
        "tillit",
        dataclasses.replace(spec, mode="tillit", target=broker_target),
        {k.replace("broker/", ""): v for k, v in watched.items()},
        threads_of=broker.popen.pid,
        pyspy=(broker.popen.pid, profile) if profile and config.profile == "py-spy" else None,
    )
    status = await processes.stop(broker)
    if status not in (0, None):
        raise BenchError(f"the broker exited with status {status}:\n{tail(broker.log)}")
    await processes.stop(providers)

    counts = audit_counts(broker_dir / "tillit.db")
    verdict = await verify_audit(broker_config)
    profile_report = None
    if profile is not None:
        profile_report = save_profile(config.profile, profile, config.output)

    ratio = tillit_phase.requests_per_s / echo_phase.requests_per_s if echo_phase.completed else 0
    return {
        "bench": "tillit-exchange",
        "format": 1,
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_revision(),
        "machine": machine_info(),
        "config": {
            k: v for k, v in dataclasses.asdict(config).items() if k not in ("keep", "output")
        },
        "tillit": _phase_doc(tillit_phase),
        "echo": _phase_doc(echo_phase),
        "ratio": round(ratio, 4),
        "audit": {
            **counts,
            "entries_per_commit": round(counts["entries"] / max(counts["commits"], 1), 1),
            "verified": bool(verdict.get("ok")),
            "problem": verdict.get("problem", ""),
        },
        "setup": {"consents_granted": len(subjects), "grant_s": round(grant_s, 2)},
        "profile": str(profile_report) if profile_report else "",
        "pids": dict(processes.pids),
    }


def _phase_doc(phase: Phase) -> dict[str, Any]:
    return {
        "requests_per_s": round(phase.requests_per_s, 1),
        "p50_ms": round(phase.p50_ms, 2),
        "p99_ms": round(phase.p99_ms, 2),
        "completed": phase.completed,
        "errors": phase.error_count,
        "errors_by_code": phase.errors,
        "error_sample": phase.error_sample,
        "cpu_pct": phase.cpu_pct,
        "machine_busy_pct": phase.machine_busy_pct,
        "server_threads_cpu_pct": phase.thread_cpu_pct,
        "other_processes_cpu_pct": phase.other_top,
    }


def render_table(doc: Mapping[str, Any]) -> str:
    """The human-readable report."""
    cfg, machine = doc["config"], doc["machine"]
    rows = [("bare gRPC echo", doc["echo"]), ("Tillit FetchData", doc["tillit"])]
    lines = [
        f"Tillit exchange benchmark  {doc['time']}  git {doc['git'] or '?'}",
        f"machine: {machine['nproc']} CPUs, {machine['cpu']}; Python {machine['python']}, "
        f"grpcio {machine['grpc']}",
        f"load: {cfg['concurrency']} calls in flight over {cfg['channels']} mTLS channel(s) "
        f"x {cfg['clients']} client process(es); warm-up {cfg['warmup']:g} s, "
        f"measured {cfg['duration']:g} s; {cfg['subjects']} subjects"
        + ("  [QUICK]" if cfg["quick"] else "")
        + (f"  [PROFILED ({cfg['profile']}): not comparable]" if cfg["profile"] else ""),
        "",
        f"{'':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>9}{'calls':>9}",
    ]
    for label, phase in rows:
        lines.append(
            f"{label:<18}{phase['requests_per_s']:>10.1f}{phase['p50_ms']:>10.2f}"
            f"{phase['p99_ms']:>10.2f}{phase['errors']:>9}{phase['completed']:>9}"
        )
    lines.append(f"{'ratio Tillit/echo':<18}{doc['ratio']:>10.3f}")
    audit = doc["audit"]
    lines.append(
        f"audit log: {audit['entries']} entries in {audit['commits']} commits "
        f"({audit['entries_per_commit']:g} per commit); "
        + ("verified ok" if audit["verified"] else f"NOT VERIFIED: {audit['problem']}")
    )
    for label, phase in rows:
        cpu = ", ".join(f"{k} {v:g}" for k, v in phase["cpu_pct"].items())
        lines.append(
            f"CPU % of one core during {label}: {cpu} (machine {phase['machine_busy_pct']:g})"
        )
    for label, phase in rows:
        threads = ", ".join(f"{k} {v:g}" for k, v in phase["server_threads_cpu_pct"].items())
        lines.append(f"  server threads during {label}: {threads}")
    for label, phase in rows:
        if phase["errors"]:
            lines.append(f"{label} errors: {phase['errors_by_code']} e.g. {phase['error_sample']}")
    if doc["profile"]:
        lines.append(f"broker profile: {doc['profile']}")
    return "\n".join(lines)


def succeeded(doc: Mapping[str, Any]) -> bool:
    return bool(
        doc["tillit"]["errors"] == 0
        and doc["echo"]["errors"] == 0
        and doc["tillit"]["completed"] > 0
        and doc["echo"]["completed"] > 0
        and doc["audit"]["verified"]
    )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv, os.environ)
    config.output.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=config.output))
    # Ctrl-C and SIGTERM (e.g. a test runner's timeout) stop everything it started;
    # SIGINT is set explicitly because a shell starts background jobs ignoring it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    print(f"benchmark run directory: {run_dir}", file=sys.stderr, flush=True)
    keep = True  # the logs of a run that failed, in any way, are worth keeping
    try:
        doc = asyncio.run(run_bench(config, run_dir))
        keep = config.keep or not succeeded(doc)
    except KeyboardInterrupt:
        keep = config.keep
        print("interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except (BenchError, CallError) as exc:
        print(f"benchmark failed: {exc}\n(logs kept in {run_dir})", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    if keep:
        print(f"(run directory kept: {run_dir})", file=sys.stderr)
    print(render_table(doc), flush=True)
    line = json.dumps(doc, sort_keys=True)
    with (config.output / "history.jsonl").open("a") as history:
        history.write(line + "\n")
    print(line, flush=True)
    return 0 if succeeded(doc) else 1


if __name__ == "__main__":
    raise SystemExit(main())
