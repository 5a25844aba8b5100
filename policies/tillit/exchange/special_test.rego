package tillit.exchange_test

_explicit_consent(overrides) := _record(object.union(
	{
		"id": "c-explicit",
		"kind": "consent",
		"requester": "social-insurance",
		"service": "parental-benefit",
		"provider": "social-insurance",
		"dataset": "sickness-benefit",
		"purpose": "parental-benefit-illness-transfer",
		"fields": ["on_sick_leave", "sick_leave_percent", "diagnosis_code"],
		"explicit": true,
	},
	overrides,
))

_without_art9 := {"parental-benefit-illness-transfer": {"art9_basis": null}}

test_special_art9_basis_in_registry_allowed if {
	decision := _decide(_illness, {})
	decision.allow
	decision.permitted_fields == ["diagnosis_code", "on_sick_leave", "sick_leave_percent"]
	decision.consent_id == null
}

test_special_without_art9_basis_denied if {
	decision := _decide_with_purposes(_illness, _without_art9)
	_codes(decision) == ["SPECIAL_CATEGORY_BASIS_MISSING"]
	decision.reasons[0].article == "GDPR Art. 9(1)"
	contains(_message(decision, "SPECIAL_CATEGORY_BASIS_MISSING"), "diagnosis_code are special category data (health)")
}

test_special_explicit_consent_allowed if {
	decision := _decide_with_purposes(object.union(_illness, {"consents": [_explicit_consent({})]}), _without_art9)
	decision.allow
	decision.consent_id == "c-explicit"
}

test_special_consent_not_explicit_denied if {
	request := object.union(_illness, {"consents": [_explicit_consent({"explicit": false})]})
	_codes(_decide_with_purposes(request, _without_art9)) == ["SPECIAL_CATEGORY_BASIS_MISSING"]
}

test_special_explicit_request_is_not_explicit_consent if {
	request := object.union(_illness, {"consents": [_explicit_consent({"kind": "explicit_request"})]})
	_codes(_decide_with_purposes(request, _without_art9)) == ["SPECIAL_CATEGORY_BASIS_MISSING"]
}

test_special_withdrawn_explicit_consent_denied if {
	request := object.union(_illness, {"consents": [_explicit_consent({"withdrawn_at": "2026-11-20T00:00:00Z"})]})
	_codes(_decide_with_purposes(request, _without_art9)) == ["SPECIAL_CATEGORY_BASIS_MISSING"]
}

test_special_art9a_in_registry_is_not_a_basis if {
	changes := {"parental-benefit-illness-transfer": {"art9_basis": {"article": "9(2)(a)"}}}
	_codes(_decide_with_purposes(_illness, changes)) == ["SPECIAL_CATEGORY_BASIS_MISSING"]
}

test_special_ordinary_fields_need_no_art9_basis if {
	request := object.union(_illness, {"fields": ["on_sick_leave", "sick_leave_percent"]})
	_decide_with_purposes(request, _without_art9).allow
}

test_special_consent_purpose_uses_explicit_record if {
	purpose := object.union(data.tillit.registry.purposes["parental-benefit-illness-transfer"], {
		"lawful_basis": {"article": "6(1)(a)", "kind": "consent", "statute": null},
		"required_consent": "consent",
		"art9_basis": null,
	})
	request := object.union(_illness, {
		"legal_basis": "GDPR Art. 6(1)(a)",
		"consents": [
			_explicit_consent({"id": "c-plain", "explicit": false, "given_at": "2026-11-20T00:00:00Z"}),
			_explicit_consent({"id": "c-explicit"}),
		],
	})
	decision := _decide_with_purpose(request, "parental-benefit-illness-transfer", purpose)
	decision.allow
	decision.consent_id == "c-explicit"
}
