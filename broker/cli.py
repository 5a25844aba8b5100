"""The ``tillit`` command.

    tillit pki init                       make a development CA and certificates
    tillit serve                          run the broker (starts a local OPA)
    tillit providers serve                run the three demo data-holding agencies
    tillit fetch ...                      call the exchange as an e-service would
    tillit consent grant|withdraw|list|events
    tillit audit list|verify|checkpoint|prove|witness|vkey|export|report|shred
    tillit demo [--keep-running]          the whole story, end to end
    tillit portal                         the citizen's web page (HTTPS)
    tillit idp                            development sign-in (OpenID Connect), not for production

Every command reads one TOML config (``--config`` or ``$TILLIT_CONFIG``) with
``TILLIT_<SECTION>_<KEY>`` overrides. Results print as JSON; failures print a
JSON error and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from broker import auditor
from broker.app import Broker
from broker.audit_report import Heuristics
from broker.client import BrokerClient, CallError
from broker.config import Settings, load_settings
from broker.errors import ConfigError
from broker.jws import JwsError
from broker.keys import dev_idp_key
from broker.pki import init_pki, tls_files
from consent.receipts import verify_receipt_file
from consent.tokens import mint

log = logging.getLogger("tillit")


def _print(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False))


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.data_dir is not None:
        from dataclasses import replace

        settings = replace(settings, broker=replace(settings.broker, data_dir=args.data_dir))
    return settings


async def _until_signalled(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _pid_file(settings: Settings) -> Path:
    return settings.data_dir / "broker.pid"


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    broker = Broker(settings)
    reloads: set[asyncio.Task[str]] = set()

    def reload() -> None:
        task = asyncio.create_task(broker.reload_policy())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        port = await broker.start()
        _pid_file(settings).write_text(f"{os.getpid()}\n")
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
        print(
            f"tillit broker serving on {settings.broker.listen.rsplit(':', 1)[0]}:{port}",
            flush=True,
        )
        await _until_signalled(asyncio.Event())
    finally:
        await broker.stop()
        _pid_file(settings).unlink(missing_ok=True)
    return 0


async def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    """Ask the running broker to load the policies folder as it is now (SIGHUP)."""
    try:
        pid = int(_pid_file(settings).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        _print({"reloaded": False, "problem": f"no running broker for {settings.data_dir}"})
        return 1
    _print({"reloaded": True, "pid": pid, "note": "the change is written to the audit log"})
    return 0


async def cmd_providers_serve(settings: Settings, args: argparse.Namespace) -> int:
    from broker.providers import run_providers

    stop = asyncio.Event()

    def ready(ports: dict[str, int]) -> None:
        for agency, port in sorted(ports.items()):
            print(f"provider {agency} serving on 127.0.0.1:{port}", flush=True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_providers(
        settings.pki_dir,
        settings.providers.addresses,
        population_size=settings.providers.population_size,
        ready=ready,
        stop=stop,
    )
    return 0


def _client(settings: Settings, args: argparse.Namespace, default_party: str) -> BrokerClient:
    party = args.as_party or default_party
    target = args.broker or settings.broker.listen
    return BrokerClient(target, tls_files(settings.pki_dir, party))


async def _run_call(call: Callable[[], Awaitable[Any]]) -> int:
    try:
        _print(await call())
    except CallError as exc:
        _print(exc.as_dict())
        return 1
    return 0


async def cmd_fetch(settings: Settings, args: argparse.Namespace) -> int:
    async with _client(settings, args, "exempelby-preschool-fee") as client:
        return await _run_call(
            lambda: client.fetch(
                args.subject,
                args.dataset,
                args.fields.split(","),
                args.purpose,
                args.legal_basis,
                args.case,
                args.idempotency_key or str(uuid.uuid4()),
            )
        )


def _citizen_token(settings: Settings, args: argparse.Namespace) -> str:
    """The citizen's ID token: ``--token``/``$TILLIT_ID_TOKEN``, or one minted by the
    development identity provider (embedded set-up only: its key is in the data dir)."""
    token: str = args.token or os.environ.get("TILLIT_ID_TOKEN", "")
    if token:
        return token
    subject = args.acting_as or args.subject
    return mint(
        dev_idp_key(settings.keys_dir),
        subject,
        issuer=settings.identity.issuer,
        audience=settings.identity.audience,
    )


async def cmd_consent(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "verify-receipt":
        keys = args.keys or settings.keys_dir / "receipt-jwks.json"
        try:
            content = verify_receipt_file(args.file, keys)
        except (JwsError, OSError) as exc:
            _print({"valid": False, "problem": str(exc)})
            return 1
        _print({"valid": True, "receipt": content})
        return 0
    token = _citizen_token(settings, args)
    async with _client(settings, args, "citizen-portal") as client:
        if args.action == "grant":
            return await _run_call(
                lambda: client.grant(
                    args.subject,
                    kind=args.kind,
                    requester=args.requester,
                    service=args.service,
                    dataset=args.dataset,
                    fields=args.fields.split(","),
                    purpose=args.purpose,
                    language=args.language,
                    token=token,
                )
            )
        if args.action == "withdraw":
            return await _run_call(
                lambda: client.withdraw(args.subject, args.consent_id, token=token)
            )
        if args.action == "events":
            return await _run_call(lambda: client.access_events(args.subject, token=token))
        if args.action == "receipt":
            return await _run_call(
                lambda: client.get_receipt(args.subject, args.consent_id, args.event, token=token)
            )
        if args.action == "subjects":
            return await _run_call(lambda: client.list_subjects(token=token))
        return await _run_call(lambda: client.list_consents(args.subject, token=token))


async def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "verify":
        document, code = await auditor.verify(
            settings, args.vkey, args.witness_state, args.checkpoint
        )
        _print(document)
        return code
    if args.action == "vkey":
        print(auditor.local_verifier(settings).verifier_key())
        return 0
    if args.action == "shred":
        _print(await asyncio.to_thread(auditor.shred, settings, dry_run=args.dry_run))
        return 0
    async with _client(settings, args, "dpo") as client:
        dpo = auditor.AuditClient(client.audit)
        try:
            if args.action == "checkpoint":
                _print(await client.checkpoint())
                return 0
            if args.action == "prove":
                result = await auditor.prove(
                    dpo, auditor.verifier_from(args.vkey, settings), args.index
                )
                _print(result)
                return 0 if result["ok"] else 2
            if args.action == "witness":
                document, code = await auditor.witness(dpo, args.state, args.vkey)
                _print(document)
                return code
            since, until = auditor.parse_time(args.since), auditor.parse_time(args.until)
            if args.action == "export":
                out = args.output.open("w", newline="", encoding="utf-8") if args.output else None
                try:
                    count = await auditor.export(
                        dpo,
                        out or sys.stdout,
                        args.format,
                        since=since,
                        until=until,
                        retention_days=settings.audit.retention_days,
                        requester=args.requester,
                        purpose=args.purpose,
                        dataset=args.dataset,
                        decision=args.decision,
                    )
                finally:
                    if out is not None:
                        out.close()
                print(json.dumps({"exported": count}), file=sys.stderr)
                return 0
            if args.action == "report":
                document = await auditor.report(
                    dpo, since=since, until=until, heuristics=Heuristics()
                )
                _print(document)
                return 3 if args.fail_on_anomaly and document["anomalies"] else 0
            filters_: dict[str, Any] = {"page_size": args.page_size, "page_token": args.page_token}
            for name in ("requester", "purpose", "subject_pseudonym"):
                if getattr(args, name):
                    filters_[name] = getattr(args, name)
            if args.decision:
                filters_["decision"] = "DECISION_" + args.decision.upper()
            if since is not None:
                filters_["start_time"] = auditor.timestamp(since)
            if until is not None:
                filters_["end_time"] = auditor.timestamp(until)
            _print(await client.audit_entries(**filters_))
            return 0
        except CallError as exc:
            _print(exc.as_dict())
            return 1


async def cmd_pki(settings: Settings, args: argparse.Namespace) -> int:
    written = init_pki(settings.pki_dir, force=args.force)
    _print({"pki_dir": str(settings.pki_dir), "written": [p.name for p in written]})
    return 0


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from broker.demo import run_demo

    return await run_demo(settings, keep_running=args.keep_running)


async def cmd_portal(settings: Settings, args: argparse.Namespace) -> int:
    from consent.web import start_portal

    site = await start_portal(
        settings,
        listen=args.listen or None,
        broker_target=args.broker or None,
        idp_url=args.idp or None,
    )
    try:
        print(f"tillit portal serving on {site.url}", flush=True)
        await _until_signalled(asyncio.Event())
    finally:
        await site.stop()
    return 0


async def cmd_idp(settings: Settings, args: argparse.Namespace) -> int:
    from consent.web import start_idp

    site = await start_idp(settings, listen=args.listen or None)
    try:
        print(
            f"tillit idp (development sign-in, not for production) serving on {site.url}",
            flush=True,
        )
        await _until_signalled(asyncio.Event())
    finally:
        await site.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tillit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument("--data-dir", type=Path, default=None, help="keys, certificates, db")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    pki = sub.add_parser("pki", help="development certificates")
    pki_sub = pki.add_subparsers(dest="action", required=True)
    pki_init = pki_sub.add_parser("init", help="create the CA and party certificates")
    pki_init.add_argument("--force", action="store_true", help="replace existing ones")
    pki.set_defaults(func=cmd_pki)

    serve = sub.add_parser("serve", help="run the broker")
    serve.set_defaults(func=cmd_serve)

    policy = sub.add_parser("policy", help="the policies the broker decides with")
    policy_sub = policy.add_subparsers(dest="action", required=True)
    policy_sub.add_parser("reload", help="load the policies folder now (it is also watched)")
    policy.set_defaults(func=cmd_policy)

    providers = sub.add_parser("providers", help="demo data-holding agencies")
    providers_sub = providers.add_subparsers(dest="action", required=True)
    providers_sub.add_parser("serve", help="serve the three demo agencies")
    providers.set_defaults(func=cmd_providers_serve)

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--broker", help="broker address (default: [broker] listen)")
        p.add_argument("--as", dest="as_party", help="certificate to call with (pki name)")

    fetch = sub.add_parser("fetch", help="fetch data as an e-service")
    client_options(fetch)
    fetch.add_argument("--subject", required=True, help="personal identity number")
    fetch.add_argument("--dataset", required=True)
    fetch.add_argument("--fields", required=True, help="comma-separated")
    fetch.add_argument("--purpose", required=True)
    fetch.add_argument("--legal-basis", required=True)
    fetch.add_argument("--case", required=True, help="case reference")
    fetch.add_argument("--idempotency-key", default="")
    fetch.set_defaults(func=cmd_fetch)

    consent = sub.add_parser("consent", help="a citizen's consents (as the citizen portal)")
    consent_sub = consent.add_subparsers(dest="action", required=True)
    grant = consent_sub.add_parser("grant")
    grant.add_argument("--subject", required=True)
    grant.add_argument(
        "--kind",
        default="explicit_request",
        choices=["consent", "explicit_request", "waiver_of_confidentiality"],
    )
    grant.add_argument("--requester", required=True)
    grant.add_argument("--service", required=True)
    grant.add_argument("--dataset", required=True)
    grant.add_argument("--fields", required=True)
    grant.add_argument("--purpose", required=True)
    grant.add_argument("--language", default="sv", choices=["sv", "en"])
    withdraw = consent_sub.add_parser("withdraw")
    withdraw.add_argument("--subject", required=True)
    withdraw.add_argument("--consent-id", required=True)
    for name in ("list", "events"):
        p = consent_sub.add_parser(name)
        p.add_argument("--subject", required=True)
    receipt = consent_sub.add_parser("receipt", help="print a signed receipt (JWS)")
    receipt.add_argument("--subject", required=True)
    receipt.add_argument("--consent-id", required=True)
    receipt.add_argument("--event", default="given", choices=["given", "withdrawn"])
    subjects = consent_sub.add_parser("subjects", help="who the citizen may act for")
    subjects.add_argument("--subject", required=True, help="the signed-in citizen")
    for p in consent_sub.choices.values():
        client_options(p)
        p.add_argument("--token", default="", help="the citizen's ID token")
        p.add_argument(
            "--acting-as", default="", help="the signed-in citizen, when acting as a guardian"
        )
    check = consent_sub.add_parser("verify-receipt", help="check a receipt offline")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--keys",
        type=Path,
        default=None,
        help="JWK Set of the broker's receipt keys (default: the data dir's)",
    )
    consent.set_defaults(func=cmd_consent)

    audit = sub.add_parser("audit", help="the audit log (as the DPO)")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    audit_list = audit_sub.add_parser("list", help="search entries (paginated)")
    audit_list.add_argument("--requester", default="")
    audit_list.add_argument("--purpose", default="")
    audit_list.add_argument("--subject-pseudonym", default="")
    audit_list.add_argument("--decision", default="", choices=["", "allow", "deny"])
    audit_list.add_argument("--page-size", type=int, default=100)
    audit_list.add_argument("--page-token", default="")
    audit_verify = audit_sub.add_parser(
        "verify", help="recompute the whole store against every signed checkpoint"
    )
    audit_verify.add_argument(
        "--witness-state",
        type=Path,
        action="append",
        default=[],
        help="also check against the checkpoint a witness kept (repeatable)",
    )
    audit_verify.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="also check against a signed checkpoint note in a file (repeatable)",
    )
    audit_sub.add_parser("checkpoint", help="print the latest signed checkpoint")
    audit_prove = audit_sub.add_parser(
        "prove", help="fetch and check an inclusion proof against the signed checkpoint"
    )
    audit_prove.add_argument("index", type=int)
    audit_witness = audit_sub.add_parser(
        "witness", help="check the log only grew since this witness last looked"
    )
    audit_witness.add_argument("--state", type=Path, required=True, help="the witness's file")
    audit_sub.add_parser("vkey", help="print the log's verifier key (C2SP vkey)")
    for name, help_text in (
        ("export", "records of processing (GDPR Art. 30) in a time range"),
        ("report", "counts and anomalies in a time range"),
    ):
        p = audit_sub.add_parser(name, help=help_text)
        p.add_argument("--since", default="", help="date or ISO time, inclusive (UTC)")
        p.add_argument("--until", default="", help="date or ISO time, exclusive (UTC)")
    audit_export = audit_sub.choices["export"]
    audit_export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    audit_export.add_argument("--output", type=Path, default=None, help="file (default: stdout)")
    for name in ("requester", "purpose", "dataset"):
        audit_export.add_argument(f"--{name}", default="")
    audit_export.add_argument("--decision", default="", choices=["", "allow", "deny"])
    audit_sub.choices["report"].add_argument(
        "--fail-on-anomaly", action="store_true", help="exit 3 if any anomaly is found"
    )
    audit_list.add_argument("--since", default="", help="date or ISO time, inclusive (UTC)")
    audit_list.add_argument("--until", default="", help="date or ISO time, exclusive (UTC)")
    audit_shred = audit_sub.add_parser(
        "shred", help="destroy audit pseudonym keys past [audit] retention_days"
    )
    audit_shred.add_argument("--dry-run", action="store_true")
    for p in audit_sub.choices.values():
        client_options(p)
    for name in ("verify", "prove", "witness"):
        audit_sub.choices[name].add_argument(
            "--vkey",
            default="",
            help="the log's verifier key, or a file holding it (default: the data dir's key)",
        )
    audit.set_defaults(func=cmd_audit)

    demo = sub.add_parser("demo", help="run the whole scenario on loopback")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the broker and agencies up until interrupted",
    )
    demo.set_defaults(func=cmd_demo)

    portal = sub.add_parser("portal", help="the citizen's web page, on HTTPS")
    portal.add_argument("--listen", default="", help="host:port (default: [portal] listen)")
    portal.add_argument("--broker", default="", help="broker address (default: [broker] listen)")
    portal.add_argument("--idp", default="", help="identity provider URL (default: [portal])")
    portal.set_defaults(func=cmd_portal)

    idp = sub.add_parser("idp", help="development sign-in (OpenID Connect), not for production")
    idp.add_argument("--listen", default="", help="host:port (default: [idp] listen)")
    idp.set_defaults(func=cmd_idp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = _settings(args)
        func: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]] = args.func
        return asyncio.run(func(settings, args))
    except ConfigError as exc:
        print(f"tillit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
