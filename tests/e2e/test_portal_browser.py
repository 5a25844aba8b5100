"""The citizen portal in a real headless Chromium, against real processes.

``tillit idp`` and ``tillit portal`` run as processes next to the session's
``tillit serve`` and ``tillit providers serve``, on loopback ports over HTTPS;
Playwright drives Debian's Chromium (``make browser``). Every page is checked
with axe-core (WCAG 2.1 A and AA) and must have no violations; screenshots land
in ``/tmp/tillit-portal`` for a person to look at.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.resources
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from broker import jws
from broker.client import BrokerClient, CallError
from broker.opa_process import free_port
from consent.receipts import verify_receipt
from tests.e2e.conftest import (
    DATASET,
    FIELDS,
    POPULATION_SIZE,
    PURPOSE,
    START_TIMEOUT,
    Deployment,
    Service,
    Subjects,
    write_config,
)

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_SOURCE = (importlib.resources.files("axe_playwright_python") / "axe.min.js").read_text()
SCREENSHOTS = Path("/tmp/tillit-portal")
PRESCHOOL_NOTICE = re.compile(r"^Läs och bestäm\s*: Taxerad inkomst, Ansökan om förskoleavgift$")


@dataclass(frozen=True)
class Web:
    portal: str
    idp: str


async def wait_https(service: Service, url: str, ca: Path) -> None:
    """Poll ``url`` until it answers 200, failing if the process dies or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    context = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(verify=context, timeout=2.0) as client:
        while True:
            if service.proc.poll() is not None:
                pytest.fail(f"{service.describe()}\nexited before serving")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if loop.time() > deadline:
                pytest.fail(f"{service.describe()}\nnot serving {url} after {START_TIMEOUT} s")
            await asyncio.sleep(0.05)  # polling a condition with a deadline


@pytest.fixture(scope="session")
async def web(deployment: Deployment, stack_dir: Path) -> AsyncIterator[Web]:
    """``tillit idp`` and ``tillit portal`` as processes, on free loopback ports."""
    idp_port = free_port()
    portal_port = free_port()
    while portal_port == idp_port:
        portal_port = free_port()
    idp_url, portal_url = f"https://127.0.0.1:{idp_port}", f"https://127.0.0.1:{portal_port}"
    config = write_config(
        stack_dir / "web.toml",
        {
            "broker": {"listen": deployment.target, "data_dir": stack_dir},
            "providers": {"population_size": POPULATION_SIZE},
            "idp": {"listen": f"127.0.0.1:{idp_port}"},
            "portal": {"listen": f"127.0.0.1:{portal_port}", "idp_url": idp_url},
        },
    )
    idp = Service.start("idp", config, "idp", log_dir=stack_dir)
    portal = Service.start("portal", config, "portal", log_dir=stack_dir)
    try:
        await wait_https(
            idp, f"{idp_url}/.well-known/openid-configuration", deployment.pki_dir / "ca.crt"
        )
        await wait_https(portal, f"{portal_url}/", deployment.pki_dir / "ca.crt")
        yield Web(portal_url, idp_url)
    finally:
        for service in (portal, idp):
            code = await service.stop()
            assert code == 0, service.describe()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail("no /usr/bin/chromium: run `make browser`")
    await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(ignore_https_errors=True, accept_downloads=True)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def check_accessible(page: Page, name: str) -> None:
    """axe-core finds no WCAG 2.1 A/AA violation on the page; keep a screenshot of it."""
    await page.evaluate(AXE_SOURCE)
    result: dict[str, Any] = await page.evaluate(
        "options => axe.run(document, options)",
        {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
    )
    problems = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
    ]
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert problems == [], f"axe on {name} ({page.url}):\n" + "\n".join(problems)


async def sign_in(page: Page, web: Web, subject: str) -> None:
    """Through the development sign-in, typing the synthetic personal identity number."""
    await page.goto(f"{web.portal}/")
    await page.get_by_role("link", name=re.compile(r"^(Logga in|Sign in)$")).click()
    await expect(page).to_have_url(re.compile(re.escape(f"{web.idp}/authorize")))
    await page.get_by_label(re.compile(r"^(Personnummer|Personal identity number)$")).fill(
        f"{subject[:8]}-{subject[8:]}"
    )
    await page.get_by_role("button", name=re.compile(r"^(Logga in|Sign in)$")).click()
    await expect(page).to_have_url(f"{web.portal}/consents")


async def give_preschool_request(page: Page) -> str:
    """Read the preschool-fee notice and give the explicit request; returns the consent id."""
    await page.get_by_role("link", name="Ge samtycke", exact=True).click()
    await page.get_by_role("link", name=PRESCHOOL_NOTICE).click()
    await page.get_by_label("Jag har läst informationen ovan.").check()
    await page.get_by_role("button", name="Begär att uppgifterna hämtas").click()
    await expect(page.get_by_role("status")).to_contain_text("Klart")
    match = re.search(r"/consents/([0-9a-f-]+)$", page.url)
    assert match, page.url
    return match.group(1)


async def test_signed_out_page_is_swedish_locked_down_and_accessible(page: Page, web: Web) -> None:
    response = await page.goto(f"{web.portal}/")
    assert response is not None
    assert response.status == 200
    headers = response.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
    await expect(page.locator("html")).to_have_attribute("lang", "sv")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dina uppgifter, dina beslut")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Hoppa till innehållet")).to_be_focused()
    await check_accessible(page, "01-signed-out")

    await page.get_by_role("link", name="Logga in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Utvecklingsinloggning")
    await expect(page.get_by_text("Endast för utveckling, inte för produktion")).to_be_visible()
    await check_accessible(page, "02-idp-sign-in")

    await page.get_by_label("Personnummer", exact=True).fill("19000101-0000")
    await page.get_by_role("button", name="Logga in", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text("Det är inte ett giltigt personnummer.")
    await check_accessible(page, "03-idp-invalid-number")


async def test_citizen_gives_proves_sees_use_of_and_withdraws_a_request(
    page: Page,
    web: Web,
    subjects: Subjects,
    eservice: BrokerClient,
    portal: BrokerClient,
    legal_basis: str,
) -> None:
    subject = subjects.adult()
    await sign_in(page, web, subject)
    await expect(page.get_by_text("Inga gällande samtycken.")).to_be_visible()
    await check_accessible(page, "04-consents-empty")

    await page.get_by_role("link", name="Ge samtycke", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Ge samtycke")
    await check_accessible(page, "05-give")
    await page.get_by_role("link", name=PRESCHOOL_NOTICE).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Förskoleavgift efter hushållets inkomst"
    )
    await expect(page.get_by_text("Informationstext version 1")).to_be_visible()
    await check_accessible(page, "06-notice")
    await page.get_by_label("Jag har läst informationen ovan.").check()
    await page.get_by_role("button", name="Begär att uppgifterna hämtas").click()
    await expect(page.get_by_role("status")).to_contain_text("Klart")
    consent_id = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_text("Signaturen är kontrollerad")).to_be_visible()
    await check_accessible(page, "07-receipt")

    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Ladda ned kvittot (JWS)").click()
    download = await download_info.value
    assert download.suggested_filename == f"receipt-{consent_id}.jws"
    receipt = (await asyncio.to_thread(Path(await download.path()).read_text)).strip()
    keys = jws.keys_from_jwks(await portal.receipt_keys())
    content = verify_receipt(receipt, keys)
    assert content["event"] == "given"
    assert content["pii_principal_id"] == subject
    assert content["record"]["consent_id"] == consent_id
    assert content["record"]["purpose"] == PURPOSE
    assert content["record"]["fields"] == list(FIELDS)
    assert content["record"]["notice"] == {"version": "1", "language": "sv"}
    tampered = receipt[:-4] + ("AAAA" if not receipt.endswith("AAAA") else "BBBB")
    with pytest.raises(jws.JwsError):
        verify_receipt(tampered, keys)

    # A real exchange by the e-service, through the broker, shows on the timeline.
    case = f"EXB-{uuid.uuid4().hex[:8]}"
    fetched = await eservice.fetch(
        subject, DATASET, list(FIELDS), PURPOSE, legal_basis, case, str(uuid.uuid4())
    )
    assert set(fetched["values"]) == set(FIELDS)
    await page.get_by_role("link", name="Vem har använt mina uppgifter").click()
    rows = page.get_by_role("table", name="Hämtningar av uppgifter").locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Exempelby kommun")
    await expect(rows.first).to_contain_text("Ansökan om förskoleavgift")
    await expect(rows.first).to_contain_text("Lämnades ut")
    await expect(rows.first).to_contain_text(f"Ärende {case}")
    await expect(rows.first).to_contain_text("Skollagen (2010:800) 8 kap. 16 §")
    await check_accessible(page, "08-timeline")

    # One click withdraws; the very next fetch is refused and shows as refused.
    await page.get_by_role("link", name="Mina samtycken", exact=True).click()
    await page.get_by_role("button", name=re.compile(r"^Återkalla\s*: Förskoleavgift")).click()
    await expect(page.get_by_role("status")).to_contain_text("Återkallat")
    await expect(
        page.get_by_role("link", name="Ladda ned kvittot på återkallelsen (JWS)")
    ).to_be_visible()
    with pytest.raises(CallError) as refused:
        await eservice.fetch(
            subject, DATASET, list(FIELDS), PURPOSE, legal_basis, case, str(uuid.uuid4())
        )
    assert refused.value.reason == "CONSENT_WITHDRAWN"
    await page.get_by_role("link", name="Mina samtycken", exact=True).click()
    await expect(page.get_by_role("heading", name="Återkallade (1)")).to_be_visible()
    await expect(page.get_by_role("heading", name="Gällande (0)")).to_be_visible()
    await check_accessible(page, "09-consents-withdrawn")
    await page.get_by_role("link", name="Vem har använt mina uppgifter").click()
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Nekades")
    await expect(rows.first).to_contain_text("Du hade återkallat ditt samtycke.")

    await page.get_by_role("button", name="Logga ut").click()
    await expect(page.get_by_role("status")).to_have_text("Du är utloggad.")
    response = await page.goto(f"{web.portal}/consents")
    assert response is not None
    assert response.status == 401
    await expect(page.get_by_text("Du behöver logga in för att se den här sidan.")).to_be_visible()
    await check_accessible(page, "10-error-sign-in")
    response = await page.goto(f"{web.portal}/no-such-page")
    assert response is not None
    assert response.status == 404
    await check_accessible(page, "11-error-not-found")


async def test_language_switch_changes_every_text_and_the_lang_attribute(
    page: Page, web: Web, subjects: Subjects
) -> None:
    await page.goto(f"{web.portal}/")
    await page.get_by_role("link", name="English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your data, your decisions")
    await expect(page.get_by_role("link", name="Svenska")).to_have_attribute("lang", "sv")
    await check_accessible(page, "12-signed-out-en")

    await page.get_by_role("link", name="Sign in").click()
    await expect(page.get_by_text("Development sign-in, not for production")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.get_by_label("Personal identity number", exact=True).fill(subjects.adult())
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My consents")
    await page.get_by_role("link", name="Who used my data").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Who has used my data")
    await check_accessible(page, "13-timeline-en")

    await page.get_by_role("link", name="Svenska").click()
    await expect(page).to_have_url(f"{web.portal}/timeline")
    await expect(page.locator("html")).to_have_attribute("lang", "sv")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Vem har använt mina uppgifter")


async def test_posts_without_the_right_csrf_token_are_refused(
    page: Page, web: Web, subjects: Subjects
) -> None:
    await sign_in(page, web, subjects.adult())
    consent_id = await give_preschool_request(page)
    token = await page.locator("form[action$='/withdraw'] input[name=csrf_token]").input_value()
    withdraw = f"{web.portal}/consents/{consent_id}/withdraw"
    request = page.context.request

    missing = await request.post(withdraw, form={}, max_redirects=0)
    assert missing.status == 403
    assert "Formuläret kunde inte tas emot" in await missing.text()
    wrong = await request.post(withdraw, form={"csrf_token": token[:-2] + "xx"}, max_redirects=0)
    assert wrong.status == 403
    foreign = await request.post(
        withdraw,
        form={"csrf_token": token},
        headers={"origin": "https://evil.example"},
        max_redirects=0,
    )
    assert foreign.status == 403
    for path in (
        "/logout",
        "/people",
        "/give/preschool-fee-reduction/exempelby-kommun/preschool-fee/household",
    ):
        refused = await request.post(f"{web.portal}{path}", form={}, max_redirects=0)
        assert refused.status == 403, path

    # Nothing was withdrawn; the real form, with its token, still works.
    await page.goto(f"{web.portal}/consents")
    await expect(page.get_by_role("heading", name="Gällande (1)")).to_be_visible()
    accepted = await request.post(withdraw, form={"csrf_token": token}, max_redirects=0)
    assert accepted.status == 303


async def test_guardian_acts_for_a_child_under_18(page: Page, web: Web, subjects: Subjects) -> None:
    population = subjects.population
    today = dt.date.today()
    guardian, child = next(
        (pnr, facts.ward_ids[0])
        for pnr in reversed(population.numbers())
        if pnr not in subjects.used
        and (facts := population.facts(pnr, today)) is not None
        and facts.ward_ids
        and not facts.protected_identity
        and not any(w in subjects.used for w in facts.ward_ids)
    )
    subjects.used += [guardian, child]
    shown_child = f"{child[:8]}-{child[8:]}"

    await sign_in(page, web, guardian)
    await page.get_by_role("link", name="Vem jag företräder").click()
    await check_accessible(page, "14-people")
    await page.get_by_label(re.compile(rf"^Ditt barn {shown_child}")).check()
    await page.get_by_role("button", name="Byt").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Samtycken för {shown_child}")
    await expect(page.get_by_text(f"Du företräder ditt barn {shown_child}")).to_be_visible()
    await check_accessible(page, "15-acting-for-child")

    consent_id = await give_preschool_request(page)
    await expect(page.get_by_text("Vårdnadshavare,")).to_be_visible()
    await page.get_by_role("link", name="Mina samtycken", exact=True).click()
    active = page.get_by_role("table", name="Gällande samtycken").locator("tbody tr")
    await expect(active).to_have_count(1)
    await expect(active.first).to_contain_text("Vårdnadshavare")

    # Back to acting for themselves: the child's consent is not theirs.
    await page.get_by_role("link", name="Företräd dig själv igen").click()
    await page.get_by_label(re.compile(r"^Du själv")).check()
    await page.get_by_role("button", name="Byt").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Mina samtycken")
    await expect(page.get_by_role("heading", name="Gällande (0)")).to_be_visible()
    response = await page.goto(f"{web.portal}/consents/{consent_id}")
    assert response is not None
    assert response.status == 404

    # Nobody else's child can be chosen, even with a valid form.
    await page.goto(f"{web.portal}/people")
    token = await page.locator("input[name=csrf_token]").first.input_value()
    stranger = subjects.adult()
    refused = await page.context.request.post(
        f"{web.portal}/people",
        form={"csrf_token": token, "subject": stranger},
        max_redirects=0,
    )
    assert refused.status == 400
