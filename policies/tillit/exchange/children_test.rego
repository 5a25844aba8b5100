package tillit.exchange_test

_child_prefill(given_by, age) := _decide(_prefill, {
	"subject": {"age": age},
	"consents": [object.union(_prefill_record, {"given_by": given_by})],
})

test_children_guardian_consent_allowed if {
	decision := _child_prefill("guardian", 15)
	decision.allow
	decision.consent_id == "c-prefill"
}

test_children_own_consent_denied if {
	decision := _child_prefill("subject", 15)
	_codes(decision) == ["GUARDIAN_CONSENT_REQUIRED"]
	decision.reasons[0].article == "GDPR Art. 8(1)"
}

test_children_seventeen_year_old_own_consent_denied if {
	_codes(_child_prefill("subject", 17)) == ["GUARDIAN_CONSENT_REQUIRED"]
}

test_children_eighteen_year_old_own_consent_allowed if {
	_child_prefill("subject", 18).allow
}

test_children_adult_consent_by_guardian_denied if {
	decision := _child_prefill("guardian", 34)
	_codes(decision) == ["CONSENT_NOT_GIVEN_BY_SUBJECT"]
}

test_children_guardian_rule_applies_to_explicit_requests if {
	decision := _decide(_preschool, {"subject": {"age": 16}})
	_codes(decision) == ["GUARDIAN_CONSENT_REQUIRED"]
}

test_children_legal_obligation_needs_no_guardian if {
	_decide(_parental_check, {"subject": {"age": 17}}).allow
}

test_children_age_limit_from_registry if {
	request := object.union(_prefill, {
		"subject": {"age": 16},
		"consents": [object.union(_prefill_record, {"given_by": "subject"})],
	})
	_decide_with_purposes(request, {"contact-details-prefill": {"guardian_consent_below_age": 16}}).allow
	not _decide_with_purposes(request, {"contact-details-prefill": {"guardian_consent_below_age": 17}}).allow
}

test_children_withdrawn_guardian_consent_reports_both if {
	decision := _decide(_prefill, {
		"subject": {"age": 12},
		"consents": [object.union(_prefill_record, {"withdrawn_at": "2026-11-20T00:00:00Z"})],
	})
	_codes(decision) == ["CONSENT_WITHDRAWN", "GUARDIAN_CONSENT_REQUIRED"]
}
