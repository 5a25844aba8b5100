package tillit.exchange_test

test_lawful_basis_statute_cited_allowed if {
	decision := _decide(_parental_check, {})
	decision.allow
	decision.lawful_basis == {
		"article": "6(1)(c)",
		"kind": "legal_obligation",
		"statute": "Socialförsäkringsbalken (2010:110) 110 kap. 31 §",
	}
}

test_lawful_basis_other_statute_denied if {
	decision := _decide(_parental_check, {"legal_basis": "Socialförsäkringsbalken (2010:110)"})
	_codes(decision) == ["LEGAL_BASIS_MISMATCH"]
	contains(_message(decision, "LEGAL_BASIS_MISMATCH"), "rests on 'Socialförsäkringsbalken (2010:110) 110 kap. 31 §'")
}

test_lawful_basis_reported_from_registry_not_request if {
	decision := _decide(_preschool, {"legal_basis": "GDPR Art. 6(1)(a)"})
	"LEGAL_BASIS_MISMATCH" in _codes(decision)
	decision.lawful_basis.kind == "public_task"
}

test_lawful_basis_consent_purpose_cites_article_allowed if {
	decision := _decide(_prefill, {})
	decision.allow
	decision.lawful_basis == {"article": "6(1)(a)", "kind": "consent", "statute": null}
}

test_lawful_basis_consent_purpose_citing_statute_denied if {
	decision := _decide(_prefill, {"legal_basis": "Skollagen (2010:800) 8 kap. 16 §"})
	_codes(decision) == ["LEGAL_BASIS_MISMATCH"]
}

test_lawful_basis_statute_missing_in_registry_denied if {
	decision := _decide_with_purposes(_parental_check, {"parental-benefit-check": {"lawful_basis": {"statute": null}}})
	_codes(decision) == ["LEGAL_BASIS_MISMATCH"]
	contains(_message(decision, "LEGAL_BASIS_MISMATCH"), "names no statute")
}

test_lawful_basis_legitimate_interest_denied if {
	decision := _decide_with_purposes(
		_parental_check,
		{"parental-benefit-check": {"lawful_basis": {"article": "6(1)(f)", "kind": "legitimate_interests"}}},
	)
	_codes(decision) == ["LEGAL_BASIS_MISMATCH"]
	contains(_message(decision, "LEGAL_BASIS_MISMATCH"), "no usable lawful basis")
}
