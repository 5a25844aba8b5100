"""Every text exists in Swedish and English, and every name and notice the portal needs."""

from __future__ import annotations

import re
import string

import pytest

from broker.config import REPO_ROOT
from consent.notices import LANGUAGES, Labels, Notices, load_registry, offers
from consent.web import i18n
from consent.web.pages import TEMPLATES_DIR

POLICIES = REPO_ROOT / "policies"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("table", [i18n.MESSAGES, i18n.ERRORS, i18n.POLICY_REASONS])
def test_every_text_has_both_languages_with_the_same_placeholders(
    table: dict[str, tuple[str, str]],
) -> None:
    for key, (sv, en) in table.items():
        assert sv.strip(), key
        assert en.strip(), key
        assert placeholders(sv) == placeholders(en), key


def test_every_key_the_templates_use_exists() -> None:
    used: set[str] = set()
    for template in TEMPLATES_DIR.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_]+)["']\s*[,)]""", template.read_text()))
    # Keys built from data: every value they can take.
    for kind in ("explicit_request", "waiver_of_confidentiality", "consent"):
        used |= {f"kind_{kind}", f"kind_lower_{kind}", f"grant_{kind}"}
    for state in ("active", "withdrawn", "expired"):
        used |= {f"state_{state}", f"caption_{state}", f"none_{state}"}
    used |= {f"validity_{m}" for m in ("3", "12", "36")}
    assert used - set(i18n.MESSAGES) == set()


def test_policy_reasons_cover_every_code_the_policies_give() -> None:
    codes: set[str] = set()
    for rego in (POLICIES / "tillit" / "exchange").glob("*.rego"):
        if not rego.name.endswith("_test.rego"):
            codes |= set(re.findall(r'"([A-Z][A-Z_]{4,})"', rego.read_text()))
    assert codes - set(i18n.POLICY_REASONS) == set()


def test_broker_errors_become_plain_sentences() -> None:
    assert i18n.error_sentence("en", "CONSENT_ALREADY_WITHDRAWN") == (
        "The consent is already withdrawn."
    )
    assert i18n.error_sentence("sv", "SOMETHING_NEW", "UNAVAILABLE").startswith(
        "Tjänsten är inte tillgänglig"
    )
    assert i18n.error_sentence("en", "", "WHO_KNOWS") == i18n.text("en", "error_internal")


def test_every_offer_has_a_notice_and_every_name_a_label() -> None:
    purposes, datasets = load_registry(POLICIES)
    notices, labels = Notices.load(), Labels.load()
    given = offers(purposes, datasets)
    assert {o.purpose for o in given} == {
        p for p, entry in purposes.items() if entry.get("required_consent")
    }
    for offer in given:
        notice = notices.latest(offer.purpose)
        assert notice is not None, offer.purpose
        for lang in LANGUAGES:
            assert notice.texts[lang].sections, (offer.purpose, lang)
        assert notice.digest("sv") != notice.digest("en")
    names = {
        "purposes": set(purposes),
        "datasets": set(datasets),
        "fields": {f for d in datasets.values() for f in d["fields"]},
        "agencies": {o.agency for o in given} | {o.provider for o in given},
        "services": {f"{o.agency}/{o.service}" for o in given},
    }
    for kind, keys in names.items():
        assert keys - labels.keys(kind) == set(), kind
        for key in keys:
            assert labels.name(kind, key, "sv") != key, (kind, key)
