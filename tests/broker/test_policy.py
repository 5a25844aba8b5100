"""OPA's answer is trusted only when well formed; the revision tracks exactly what OPA loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from broker.config import REPO_ROOT
from broker.errors import PolicyUnavailable, Reason
from broker.policy import parse_decision, policy_files, policy_revision

ALLOW: dict[str, Any] = {
    "allow": True,
    "reasons": [],
    "permitted_fields": ["income_year", "taxed_income_sek"],
    "excess_fields": [],
    "lawful_basis": {
        "article": "6(1)(e)",
        "kind": "public_task",
        "statute": "Skollagen (2010:800) 8 kap. 16 §",
    },
    "consent_id": "6c0a7c1e-consent",
    "obligations": [{"type": "retention", "days": 365}],
    "revision": "sha256:abc",
}

DENY: dict[str, Any] = {
    "allow": False,
    "reasons": [
        {
            "code": "FIELDS_NOT_PERMITTED",
            "message": "ask only for what the purpose permits",
            "article": "GDPR Art. 5(1)(c)",
        },
        {"code": "CONSENT_MISSING", "message": "no consent"},
    ],
    "permitted_fields": ["income_year"],
    "excess_fields": ["capital_income_sek"],
    "lawful_basis": None,
    "consent_id": "",
    "obligations": [],
    "revision": "sha256:abc",
}


def test_a_well_formed_allow() -> None:
    decision = parse_decision(ALLOW)
    assert decision.allow is True
    assert decision.permitted_fields == ("income_year", "taxed_income_sek")
    assert decision.excess_fields == ()
    assert decision.reasons == ()
    assert decision.lawful_basis == "GDPR Art. 6(1)(e); Skollagen (2010:800) 8 kap. 16 §"
    assert decision.consent_id == "6c0a7c1e-consent"
    assert decision.obligations == ("retention:days=365",)
    assert decision.revision == "sha256:abc"


def test_a_well_formed_deny_keeps_every_reason_in_order() -> None:
    decision = parse_decision(DENY)
    assert decision.allow is False
    assert decision.reasons == (
        Reason(
            "FIELDS_NOT_PERMITTED", "ask only for what the purpose permits", "GDPR Art. 5(1)(c)"
        ),
        Reason("CONSENT_MISSING", "no consent", ""),
    )
    assert decision.excess_fields == ("capital_income_sek",)
    assert decision.lawful_basis == ""
    assert decision.consent_id == ""


@pytest.mark.parametrize(
    ("lawful_basis", "expected"),
    [
        ("Skollagen (2010:800)", "Skollagen (2010:800)"),
        ({"article": "6(1)(c)"}, "GDPR Art. 6(1)(c)"),
        ({"statute": "SFB 110 kap."}, "SFB 110 kap."),
        (None, ""),
    ],
)
def test_lawful_basis_as_text_or_object(lawful_basis: Any, expected: str) -> None:
    assert parse_decision({**ALLOW, "lawful_basis": lawful_basis}).lawful_basis == expected


def test_optional_parts_may_be_left_out() -> None:
    minimal = {"allow": True, "permitted_fields": ["income_year"], "revision": "sha256:abc"}
    decision = parse_decision(minimal)
    assert (decision.reasons, decision.excess_fields, decision.obligations) == ((), (), ())
    assert parse_decision({**minimal, "obligations": ["notify-subject"]}).obligations == (
        "notify-subject",
    )


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in ALLOW.items() if k != key}


MALFORMED: dict[str, Any] = {
    "undefined": None,
    "a list": [ALLOW],
    "a bare boolean": True,
    "a string": "allow",
    "an empty object": {},
    "no allow": _without("allow"),
    "allow as a string": {**ALLOW, "allow": "yes"},
    "allow as a number": {**ALLOW, "allow": 1},
    "allow as null": {**ALLOW, "allow": None},
    "no revision": _without("revision"),
    "an empty revision": {**ALLOW, "revision": ""},
    "a numeric revision": {**ALLOW, "revision": 7},
    "a denial without reasons": {**DENY, "reasons": []},
    "a denial with null reasons": {**DENY, "reasons": None},
    "a reason without a code": {**DENY, "reasons": [{"message": "no"}]},
    "a reason with a numeric code": {**DENY, "reasons": [{"code": 5}]},
    "a reason that is a string": {**DENY, "reasons": ["CONSENT_MISSING"]},
    "reasons as a number": {**DENY, "reasons": 5},
    "permitted_fields as a string": {**ALLOW, "permitted_fields": "income_year"},
    "permitted_fields of numbers": {**ALLOW, "permitted_fields": [1, 2]},
    "permitted_fields as an object": {**ALLOW, "permitted_fields": {"income_year": True}},
    "excess_fields with null": {**DENY, "excess_fields": [None]},
    "a numeric consent_id": {**ALLOW, "consent_id": 5},
    "lawful_basis as a list": {**ALLOW, "lawful_basis": ["6(1)(e)"]},
    "lawful_basis as a number": {**ALLOW, "lawful_basis": 6},
    "an obligation that is a number": {**ALLOW, "obligations": [5]},
    "an obligation without a type": {**ALLOW, "obligations": [{"days": 365}]},
    "allow without permitted_fields": _without("permitted_fields"),
    "allow with null permitted_fields": {**ALLOW, "permitted_fields": None},
    "allow with no permitted field": {**ALLOW, "permitted_fields": []},
}

# Shapes parse_decision still accepts; each is a bug (see the reason) until fixed.
ACCEPTED_BUT_MALFORMED: dict[str, Any] = {
    "obligations as a string": {**ALLOW, "obligations": "retention"},
    "obligations as an object": {**ALLOW, "obligations": {"type": "retention"}},
    "a reason with an empty code": {**DENY, "reasons": [{"code": ""}]},
}


@pytest.mark.parametrize("result", MALFORMED.values(), ids=MALFORMED.keys())
def test_every_malformed_decision_is_refused(result: Any) -> None:
    with pytest.raises(PolicyUnavailable) as caught:
        parse_decision(result)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == "POLICY_UNAVAILABLE"


@pytest.mark.parametrize(
    "result", ACCEPTED_BUT_MALFORMED.values(), ids=ACCEPTED_BUT_MALFORMED.keys()
)
def test_malformed_decisions_not_yet_refused(result: Any) -> None:
    with pytest.raises(PolicyUnavailable):
        parse_decision(result)


def test_an_allow_that_permits_no_field_is_refused_not_read_as_allow_all() -> None:
    with pytest.raises(PolicyUnavailable, match="permitted no field"):
        parse_decision({**ALLOW, "permitted_fields": []})


# -- the revision ----------------------------------------------------------------------


def _tree(root: Path) -> Path:
    files = {
        "tillit/exchange/decision.rego": "package tillit.exchange\n",
        "tillit/exchange/decision_test.rego": "package tillit.exchange_test\n",
        "tillit/registry/purposes/data.json": '{"a": 1}\n',
        "tillit/registry/agencies/data.yaml": "a: 1\n",
        "testdata/bench_input.json": "{}\n",
        "testdata/extra.rego": "package testdata\n",
        ".regal/config.yaml": "rules: {}\n",
        ".hidden.rego": "package hidden\n",
        "README.md": "# policies\n",
        "tillit/registry/notes.json": "{}\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_policy_files_are_the_rego_and_data_opa_loads(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert sorted(str(p.relative_to(root)) for p in policy_files(root)) == [
        "tillit/exchange/decision.rego",
        "tillit/registry/agencies/data.yaml",
        "tillit/registry/purposes/data.json",
    ]


def test_the_repository_policies() -> None:
    policies = REPO_ROOT / "policies"
    names = {str(p.relative_to(policies)) for p in policy_files(policies)}
    assert "tillit/exchange/decision.rego" in names
    assert "tillit/registry/datasets/data.json" in names
    assert not [n for n in names if n.endswith("_test.rego") or n.startswith("testdata/")]


@pytest.mark.parametrize(
    "changed",
    [
        "tillit/exchange/decision.rego",
        "tillit/registry/purposes/data.json",
        "tillit/registry/agencies/data.yaml",
    ],
)
def test_the_revision_changes_with_a_policy_or_data_file(tmp_path: Path, changed: str) -> None:
    root = _tree(tmp_path)
    before = policy_revision(root)
    assert before.startswith("sha256:")
    assert len(before) == len("sha256:") + 64
    assert policy_revision(root) == before  # deterministic
    with (root / changed).open("a") as handle:
        handle.write("\n")
    assert policy_revision(root) != before


@pytest.mark.parametrize(
    "changed",
    [
        "tillit/exchange/decision_test.rego",
        "testdata/bench_input.json",
        "testdata/extra.rego",
        ".regal/config.yaml",
        "README.md",
    ],
)
def test_the_revision_ignores_tests_and_other_files(tmp_path: Path, changed: str) -> None:
    root = _tree(tmp_path)
    before = policy_revision(root)
    with (root / changed).open("a") as handle:
        handle.write("# changed\n")
    assert policy_revision(root) == before


def test_the_revision_covers_paths_not_only_contents(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = policy_revision(root)
    (root / "tillit/exchange/decision.rego").rename(root / "tillit/exchange/renamed.rego")
    assert policy_revision(root) != before


def test_a_new_policy_file_changes_the_revision(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = policy_revision(root)
    (root / "tillit/exchange/extra.rego").write_text("package tillit.exchange\n")
    assert policy_revision(root) != before
