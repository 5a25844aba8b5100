"""Assemble and run the broker: store, keys, OPA, providers, audit log, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from broker import db
from broker._gen.tillit.audit.v1 import audit_pb2_grpc
from broker._gen.tillit.consent.v1 import consent_pb2_grpc
from broker._gen.tillit.exchange.v1 import exchange_pb2_grpc
from broker.audit import ALLOW, AuditLog, AuditRecord
from broker.bundle import build_bundle
from broker.catalog import Catalog
from broker.checkpoint import NoteSigner, NoteVerifier
from broker.config import Settings
from broker.errors import ConfigError
from broker.exchange import ExchangeService
from broker.identity import channel_credentials, server_credentials
from broker.jws import JwsError, load_jwks
from broker.keys import (
    Pseudonymiser,
    dev_idp_key,
    load_or_create_secret,
    load_or_create_signing_key,
)
from broker.models import AuditEntryRow
from broker.opa_process import OpaProcess, find_opa
from broker.pki import tls_files
from broker.policy import PolicyEngine, policy_revision
from broker.provider_client import ProviderClient
from broker.rpc import create_server, mark_serving
from broker.servicers import (
    AUDIT,
    AUTHZ,
    CONSENT,
    EXCHANGE,
    AuditServicer,
    ConsentServicer,
    ExchangeServicer,
)
from broker.shredding import EpochKeyring
from consent.receipts import ReceiptSigner, write_jwks
from consent.service import ConsentService
from consent.store import ConsentStore
from consent.tokens import IdTokenVerifier

log = logging.getLogger(__name__)

OPA_START_TIMEOUT = 30.0
POLICY_CHANGE = "policy_change"


def log_signer(settings: Settings) -> NoteSigner:
    key = load_or_create_signing_key(settings.keys_dir / "log-signing.key")
    return NoteSigner.from_private_key(settings.audit.origin, key)


def log_verifier(settings: Settings) -> NoteVerifier:
    key = load_or_create_signing_key(settings.keys_dir / "log-signing.key")
    return NoteVerifier(settings.audit.origin, key.public_key())


def id_token_verifier(settings: Settings) -> IdTokenVerifier:
    """Trust the configured identity provider's keys (the development one by default)."""
    if not settings.identity.jwks and not settings.idp_jwks.exists():
        dev_idp_key(settings.keys_dir)
    try:
        keys = load_jwks(settings.idp_jwks)
    except JwsError as exc:
        raise ConfigError(f"cannot load the identity provider's keys: {exc}") from exc
    i = settings.identity
    return IdTokenVerifier(i.issuer, i.audience, keys, max_lifetime=i.max_lifetime, leeway=i.leeway)


def receipt_signer(settings: Settings) -> ReceiptSigner:
    """The receipt key; its public JWK Set is written beside it for offline checks."""
    signer = ReceiptSigner(
        load_or_create_signing_key(settings.keys_dir / "receipt-signing.key"),
        issuer="tillit.test/consent",
    )
    write_jwks(settings.keys_dir / "receipt-jwks.json", signer)
    return signer


async def check_policies(opa: str, policies: Path) -> str:
    """``opa check --strict`` the policies; the compiler's complaint, or "" when they pass."""
    proc = await asyncio.create_subprocess_exec(
        opa,
        "check",
        "--strict",
        "--ignore",
        "*_test.rego",
        "--ignore",
        "testdata",
        str(policies),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return "" if proc.returncode == 0 else out.decode(errors="replace")[:4000]


async def wait_for_policy_engine(
    engine: PolicyEngine, process: OpaProcess | None, timeout: float
) -> None:
    """Wait until OPA answers its health check (or give up with ``ConfigError``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    while not await engine.healthy():
        if process is not None and not process.running():
            raise ConfigError("OPA exited during start-up; see its error output above")
        if loop.time() > deadline:
            raise ConfigError(f"OPA did not become healthy at {engine.url}")
        await asyncio.sleep(delay)  # polling a health endpoint, not synchronising tests
        delay = min(delay * 2, 0.5)


@dataclass
class Broker:
    """A running broker. ``start`` returns once the gRPC port is serving."""

    settings: Settings
    port: int = 0
    opa: OpaProcess | None = None
    policy: PolicyEngine | None = None
    audit: AuditLog | None = None
    revision: str = ""
    pseudonymiser: Pseudonymiser | None = None
    _engine: AsyncEngine | None = None
    _server: grpc.aio.Server | None = None
    _providers: ProviderClient | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _rejected: str = ""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> int:
        s = self.settings
        await asyncio.to_thread(db.migrate, s.database_url)
        self._engine = db.make_engine(s.database_url)
        sessions = db.sessionmaker(self._engine)
        pseudonymiser = self.pseudonymiser = Pseudonymiser(
            await asyncio.to_thread(load_or_create_secret, s.keys_dir / "pseudonym.key"),
            epochs=await asyncio.to_thread(
                EpochKeyring.open,
                s.keys_dir / "pseudonym",
                retention_days=s.audit.retention_days,
            ),
        )
        catalog = Catalog.load(s.opa.policies / "tillit" / "registry" / "datasets" / "data.json")
        broker_tls = tls_files(s.pki_dir, "broker")
        if not broker_tls.cert.exists():
            raise ConfigError(f"no broker certificate in {s.pki_dir}; run `tillit pki init`")

        url = s.opa.url
        if s.opa.mode == "local":
            self.revision = await asyncio.to_thread(build_bundle, s.opa.policies, self._bundle)
            self.opa = OpaProcess(
                find_opa(s.opa.binary),
                self._bundle,
                tls_files(s.pki_dir, "opa"),
                log_file=s.data_dir / "opa.log",
            )
            await self.opa.start()
            url = self.opa.url
        self.policy = PolicyEngine(
            url, broker_tls, decision_path=s.opa.decision_path, timeout_ms=s.opa.timeout_ms
        )
        await self.policy.open()
        await wait_for_policy_engine(self.policy, self.opa, OPA_START_TIMEOUT)
        if self.opa is not None:
            await self._wait_for_revision(self.revision)
            self._tasks.append(asyncio.create_task(self._supervise_opa(), name="opa-supervisor"))
        else:
            # An external OPA is loaded by its operator; we tell it the revision.
            self.revision = policy_revision(s.opa.policies)
            await self.policy.push_revision(self.revision)

        self._providers = ProviderClient(
            s.providers.addresses,
            channel_credentials(broker_tls),
            timeout_ms=s.providers.timeout_ms,
        )
        self.audit = AuditLog(
            sessions,
            log_signer(s),
            origin=s.audit.origin,
            batch_max=s.audit.batch_max,
            batch_wait_ms=s.audit.batch_wait_ms,
        )
        await self.audit.start()
        await self._record_policy(previous=await self._last_recorded_revision())
        if s.opa.watch_interval > 0:
            self._tasks.append(asyncio.create_task(self._watch_policy(), name="policy-watch"))
        self._tasks.append(
            asyncio.create_task(
                self.audit.run_checkpoints(s.audit.checkpoint_interval, self._stopping),
                name="checkpoints",
            )
        )
        exchange = ExchangeService(
            catalog=catalog,
            consents=ConsentStore(sessions),
            policy=self.policy,
            providers=self._providers,
            audit=self.audit,
            pseudonymiser=pseudonymiser,
            sessions=sessions,
        )
        consent = ConsentService(
            ConsentStore(sessions),
            self.audit,
            catalog,
            pseudonymiser,
            tokens=id_token_verifier(s),
            facts=self._providers.facts,
            receipts=receipt_signer(s),
            purposes=json.loads(
                (s.opa.policies / "tillit" / "registry" / "purposes" / "data.json").read_text()
            ),
        )
        audit = self.audit
        verifier = log_verifier(s)

        def register(server: grpc.aio.Server) -> list[str]:
            exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(
                ExchangeServicer(exchange, catalog), server
            )
            consent_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentServicer(consent), server)
            audit_pb2_grpc.add_AuditServiceServicer_to_server(
                AuditServicer(audit, verifier), server
            )
            return [EXCHANGE, CONSENT, AUDIT]

        self._server, self.port, health = create_server(
            s.broker.listen, server_credentials(broker_tls), register, AUTHZ
        )
        await self._server.start()
        await mark_serving(health, [EXCHANGE, CONSENT, AUDIT])
        log.info("broker serving on port %d (policy %s)", self.port, self.revision[:19])
        return self.port

    @property
    def _bundle(self) -> Path:
        return self.settings.data_dir / "opa" / "bundle.tar.gz"

    async def _wait_for_revision(self, revision: str, timeout: float = OPA_START_TIMEOUT) -> None:
        assert self.policy is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.02
        while await self.policy.active_revision() != revision:
            if loop.time() > deadline:
                raise ConfigError(f"OPA did not activate policy revision {revision[:19]}")
            await asyncio.sleep(delay)  # polling OPA's state, bounded by the deadline
            delay = min(delay * 2, 0.25)

    async def _last_recorded_revision(self) -> str:
        assert self.audit is not None
        async with self.audit.sessions() as session:
            revision: str | None = await session.scalar(
                sa.select(AuditEntryRow.policy_revision)
                .where(AuditEntryRow.kind == POLICY_CHANGE)
                .order_by(AuditEntryRow.idx.desc())
                .limit(1)
            )
        return revision or ""

    async def _record_policy(self, previous: str, revision: str | None = None) -> None:
        """Write the policy now in force to the audit log, if it is not the last one there."""
        assert self.audit is not None
        revision = revision or self.revision
        if previous == revision:
            return
        await self.audit.append(
            AuditRecord(
                kind=POLICY_CHANGE,
                requester="tillit",
                service="broker",
                provider="opa",
                dataset="",
                subject_pseudonym="",
                purpose="policy-administration",
                legal_basis="",
                case_reference="",
                requested_fields=(),
                released_fields=(),
                decision=ALLOW,
                policy_revision=revision,
                details={"previous_revision": previous},
            )
        )
        log.warning("policy revision %s now in force", revision[:19])

    async def reload_policy(self) -> str:
        """Swap in the policies folder as it is now; audit the change. Returns the revision.

        OPA keeps deciding with the old revision until the new bundle is active,
        and a bundle that does not load leaves the old one in force.
        """
        s = self.settings
        async with self._reload_lock:
            if s.opa.mode != "local":
                revision = await asyncio.to_thread(policy_revision, s.opa.policies)
                if revision != self.revision:
                    assert self.policy is not None
                    await self.policy.push_revision(revision)
                    await self._record_policy(self.revision, revision)
                    self.revision = revision
                return self.revision
            revision = await asyncio.to_thread(policy_revision, s.opa.policies)
            if revision in (self.revision, self._rejected):
                return self.revision
            assert self.opa is not None
            problem = await check_policies(self.opa.binary, s.opa.policies)
            if problem:
                self._rejected = revision
                log.error(
                    "changed policies do not compile; revision %s stays in force:\n%s",
                    self.revision[:19],
                    problem,
                )
                return self.revision
            await asyncio.to_thread(build_bundle, s.opa.policies, self._bundle)
            try:
                await self._wait_for_revision(revision, timeout=15)
            except ConfigError:
                log.error(
                    "the changed policies did not load; revision %s stays in force",
                    self.revision[:19],
                )
                return self.revision
            # Audit first, then publish: whoever sees the new revision finds its entry.
            await self._record_policy(self.revision, revision)
            self.revision = revision
            return revision

    async def _watch_policy(self) -> None:
        """Reload when the policies folder changes (local) or keep an external OPA's revision."""
        s = self.settings
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), s.opa.watch_interval)
            if self._stopping.is_set():
                return
            try:
                if s.opa.mode == "local":
                    await self.reload_policy()
                elif (
                    self.policy is not None
                    and await self.policy.healthy()
                    and await self.policy.active_revision() != self.revision
                ):
                    await self.policy.push_revision(self.revision)
            except Exception:
                log.exception("policy watch failed")

    async def _supervise_opa(self) -> None:
        """Restart OPA if it dies; decisions fail closed until it is back."""
        assert self.opa is not None
        assert self.policy is not None
        while not self._stopping.is_set():
            code = await self.opa.wait()
            if self._stopping.is_set():
                return
            log.error("OPA exited with code %s; restarting", code)
            await self.opa.start()
            try:
                await wait_for_policy_engine(self.policy, self.opa, OPA_START_TIMEOUT)
            except Exception:
                log.exception("OPA did not come back")

    async def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            await self._server.stop(self.settings.broker.shutdown_grace)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.audit is not None:
            with contextlib.suppress(Exception):
                await self.audit.checkpoint()
            await self.audit.stop()
        if self._providers is not None:
            await self._providers.close()
        if self.policy is not None:
            await self.policy.close()
        if self.opa is not None:
            await self.opa.stop()
        if self._engine is not None:
            await self._engine.dispose()
