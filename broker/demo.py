"""``tillit demo``: the once-only story, end to end, through the real clients.

It starts the three demo agencies and the broker (which starts OPA) on loopback
ports, then plays the scenario of the product brief: a citizen asks for their
income to be reused, a municipality's e-service fetches it, over-asks and is
refused, the citizen withdraws and the next fetch is refused at once, the citizen
sees every exchange of their data, and the DPO verifies the log. Everything it
started is stopped before it returns.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.app import Broker
from broker.client import BrokerClient, CallError
from broker.config import Settings
from broker.jws import keys_from_jwks
from broker.keys import dev_idp_key
from broker.pki import init_pki, tls_files
from consent.receipts import verify_receipt
from consent.tokens import mint

if TYPE_CHECKING:
    from consent.web.launch import Site

PURPOSE = "preschool-fee-reduction"
REQUESTER, SERVICE = "exempelby-kommun", "preschool-fee"
DATASET = "taxed-income"
FIELDS = ["income_year", "taxed_income_sek"]


def _say(step: str, text: str) -> None:
    print(f"\n== {step}\n   {text}", flush=True)


def _show(document: Any) -> None:
    for line in json.dumps(document, indent=2, ensure_ascii=False).splitlines():
        print(f"   {line}")


def statute_of(policies: Path, purpose: str) -> str:
    """The legal basis a requester cites for ``purpose``, from the purpose registry."""
    registry = json.loads((policies / "tillit/registry/purposes/data.json").read_text())
    basis = registry[purpose]["lawful_basis"]
    return str(basis.get("statute") or f"GDPR Art. {basis['article']}")


async def _expect_refusal(call: Any, reason: str) -> dict[str, Any]:
    try:
        await call
    except CallError as exc:
        if exc.reason != reason:
            raise RuntimeError(f"expected {reason}, got {exc.reason}") from exc
        return exc.as_dict()
    raise RuntimeError(f"expected a refusal with {reason}")


async def play(target: str, pki_dir: Path, policies: Path, subject: str, token: str) -> None:
    """The scenario; raises if any step does not behave as the product promises."""
    legal_basis = statute_of(policies, PURPOSE)
    portal = BrokerClient(target, tls_files(pki_dir, "citizen-portal"))
    eservice = BrokerClient(target, tls_files(pki_dir, "exempelby-preschool-fee"))
    dpo = BrokerClient(target, tls_files(pki_dir, "dpo"))
    try:
        _say(
            "1. The citizen asks the municipality to reuse their taxed income",
            f"(synthetic citizen {subject}, through the citizen portal)",
        )
        consent = await portal.grant(
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
        _show({k: consent[k] for k in ("id", "kind", "purpose", "fields", "valid_until", "state")})
        keys = keys_from_jwks(await portal.receipt_keys(token=token))
        receipt = verify_receipt(consent["receipt"], keys)
        print(
            f"   signed receipt {receipt['jti']} verified offline (EdDSA, key {next(iter(keys))})"
        )

        _say(
            "2. The preschool-fee e-service fetches the income",
            f"purpose {PURPOSE}, legal basis {legal_basis}",
        )
        result = await eservice.fetch(
            subject, DATASET, FIELDS, PURPOSE, legal_basis, "EXB-2026-0042", f"demo-{uuid.uuid4()}"
        )
        _show(result)

        _say(
            "3. It asks for capital income too, which the purpose does not cover",
            "the broker refuses and says why",
        )
        _show(
            await _expect_refusal(
                eservice.fetch(
                    subject,
                    DATASET,
                    [*FIELDS, "capital_income_sek"],
                    PURPOSE,
                    legal_basis,
                    "EXB-2026-0042",
                    f"demo-{uuid.uuid4()}",
                ),
                "FIELDS_NOT_PERMITTED",
            )
        )

        _say("4. The citizen withdraws; the very next fetch is refused", "")
        withdrawn = await portal.withdraw(subject, consent["id"], token=token)
        _show({k: withdrawn[k] for k in ("id", "state", "withdrawn_at")})
        _show(
            await _expect_refusal(
                eservice.fetch(
                    subject,
                    DATASET,
                    FIELDS,
                    PURPOSE,
                    legal_basis,
                    "EXB-2026-0042",
                    f"demo-{uuid.uuid4()}",
                ),
                "CONSENT_WITHDRAWN",
            )
        )

        _say("5. The citizen sees every exchange of their data", "who, why, what, outcome")
        events = await portal.access_events(subject, token=token)
        for event in events.get("events", []):
            reasons = ",".join(r["code"] for r in event.get("reasons", []))
            print(
                f"   #{event.get('audit_index', '0')} {event['time']} "
                f"{event['requester']}/{event['service']} {event['purpose']} "
                f"{','.join(event.get('fields', []))} -> {event['outcome']} {reasons}"
            )

        _say(
            "6. The data protection officer verifies the audit log",
            "every leaf and the root, against the signed checkpoint",
        )
        verdict = await dpo.verify()
        _show(verdict)
        if not verdict.get("ok"):
            raise RuntimeError("the audit log did not verify")
        checkpoint = await dpo.checkpoint()
        print("   signed checkpoint:")
        for line in checkpoint["checkpoint"].splitlines():
            print(f"     {line}")
    finally:
        for client in (portal, eservice, dpo):
            await client.close()


# -- the citizen's web page: the portal and the development sign-in ---------------------


@dataclass
class CitizenWeb:
    """The development sign-in and the citizen portal, running in this process."""

    idp: Site
    portal: Site

    async def stop(self) -> None:
        await self.portal.stop()
        await self.idp.stop()


async def start_citizen_web(settings: Settings, target: str, *, fixed_ports: bool) -> CitizenWeb:
    """Both on loopback: on the configured ports to stay up, on free ones for a single run."""
    from consent.web import start_idp, start_portal

    idp = await start_idp(settings, listen=settings.idp.listen if fixed_ports else "127.0.0.1:0")
    try:
        portal = await start_portal(
            settings,
            listen=settings.portal.listen if fixed_ports else "127.0.0.1:0",
            broker_target=target,
            idp_url=idp.url,
        )
    except BaseException:
        await idp.stop()
        raise
    return CitizenWeb(idp, portal)


_HIDDEN = re.compile(r'<input type="hidden" name="(rid|csrf)" value="([^"]*)"')
_WITHDRAWN = re.compile(r'id="heading-withdrawn">[^<(]*\((\d+)\)')


async def visit_portal(web: CitizenWeb, pki_dir: Path, subject: str) -> None:
    """Sign in at the development sign-in over HTTPS and read two pages, as a browser would."""
    import ssl

    import httpx

    _say("7. The citizen opens the web portal", f"{web.portal.url}, signing in at {web.idp.url}")
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    async with httpx.AsyncClient(verify=context, follow_redirects=True, timeout=10) as browser:
        try:
            sign_in = await browser.get(f"{web.portal.url}/login")
            fields = dict(_HIDDEN.findall(sign_in.text))
            if sign_in.status_code != 200 or set(fields) != {"rid", "csrf"}:
                raise RuntimeError("the development sign-in page did not show")
            consents = await browser.post(
                f"{web.idp.url}/authorize", data={**fields, "subject": subject}
            )
            timeline = await browser.get(f"{web.portal.url}/timeline")
        except httpx.HTTPError as exc:
            raise RuntimeError(f"the portal did not answer: {exc}") from exc
    withdrawn = _WITHDRAWN.search(consents.text)
    exchanges = timeline.text.count("<time ")
    if consents.url.path != "/consents" or consents.status_code != 200 or withdrawn is None:
        raise RuntimeError("signing in to the portal did not lead to My consents")
    if timeline.status_code != 200 or exchanges < 3:
        raise RuntimeError("the portal's timeline does not show the exchanges")
    print(
        f"   signed in (development sign-in); My consents shows {withdrawn.group(1)} withdrawn,"
        f" the timeline {exchanges} exchanges"
    )


async def run_demo(settings: Settings, *, keep_running: bool = False) -> int:
    """Start everything on loopback, play the scenario, stop everything."""
    from broker.providers import SyntheticPopulation, run_providers

    init_pki(settings.pki_dir)
    population = SyntheticPopulation(size=settings.providers.population_size)
    subject = population.an_adult_with_children()
    stop_providers = asyncio.Event()
    ports: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
    providers = asyncio.create_task(
        run_providers(
            settings.pki_dir,
            dict.fromkeys(settings.providers.addresses, "127.0.0.1:0"),
            population_size=settings.providers.population_size,
            ready=ports.set_result,
            stop=stop_providers,
        )
    )
    broker: Broker | None = None
    web: CitizenWeb | None = None
    try:
        bound = await asyncio.wait_for(asyncio.shield(ports), 60)
        addresses = {agency: f"127.0.0.1:{port}" for agency, port in bound.items()}
        settings = replace(
            settings,
            broker=replace(settings.broker, listen="127.0.0.1:0"),
            providers=replace(settings.providers, addresses=addresses),
        )
        broker = Broker(settings)
        port = await broker.start()
        target = f"127.0.0.1:{port}"
        print(
            f"Tillit demo: broker on {target}, OPA on {broker.policy.url if broker.policy else '-'}"
            f", agencies on {', '.join(f'{a} {p}' for a, p in sorted(addresses.items()))}"
        )
        token = mint(
            dev_idp_key(settings.keys_dir),
            subject,
            issuer=settings.identity.issuer,
            audience=settings.identity.audience,
        )
        await play(target, settings.pki_dir, settings.opa.policies, subject, token)
        web = await start_citizen_web(settings, target, fixed_ports=keep_running)
        await visit_portal(web, settings.pki_dir, subject)
        print("\nDemo finished: every step behaved as promised.")
        if keep_running:
            print(f"Citizen portal on {web.portal.url} (development sign-in {web.idp.url})")
            print(f"Still running (broker {target}); press Ctrl-C to stop.", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return 0
    except (CallError, RuntimeError) as exc:
        print(f"\nDemo FAILED: {exc}")
        return 1
    finally:
        if web is not None:
            await web.stop()
        if broker is not None:
            await broker.stop()
        stop_providers.set()
        await providers
