package tillit.exchange_test

test_consent_reasons_one_reason_per_code if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-1", "withdrawn_at": "2026-11-20T00:00:00Z"}),
		_record({"id": "c-2", "withdrawn_at": "2026-11-21T00:00:00Z"}),
	]})
	count(decision.reasons) == 1
}

test_consent_reasons_articles_cited if {
	withdrawn := _decide(_preschool, {"consents": [_record({"withdrawn_at": "2026-11-20T00:00:00Z"})]})
	withdrawn.reasons[0].article == "GDPR Art. 7(3)"
	scope := _decide(_preschool, {"consents": [_record({"dataset": "household"})]})
	scope.reasons[0].article == "GDPR Art. 4(11)"
}

test_consent_reasons_missing_names_purpose_and_kind if {
	decision := _decide(_housing, {"consents": []})
	_message(decision, "CONSENT_MISSING") == concat(" ", [
		"The purpose 'housing-allowance' requires a waiver of confidentiality from the subject,",
		"and none is on record for this request.",
	])
}

test_consent_reasons_scope_lists_every_difference if {
	decision := _decide(_preschool, {"consents": [_record({
		"requester": "annanby-kommun",
		"provider": "population-register",
		"purpose": "housing-allowance",
		"dataset": "household",
	})]})
	endswith(
		_message(decision, "CONSENT_SCOPE_MISMATCH"),
		"It differs in: data provider, dataset, purpose and requesting agency.",
	)
}
