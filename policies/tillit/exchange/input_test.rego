package tillit.exchange_test

import data.tillit.exchange

test_input_identity_number_refused if {
	decision := _decide(_preschool, {"subject": {"personal_identity_number": "synthetic-not-used"}})
	_codes(decision) == ["INPUT_INVALID"]
	contains(_message(decision, "INPUT_INVALID"), "subject.personal_identity_number is not accepted")
}

test_input_missing_strings_denied if {
	decision := exchange.decision with input as object.remove(_preschool, ["case_reference", "legal_basis"])
	"INPUT_INVALID" in _codes(decision)
	contains(_message(decision, "INPUT_INVALID"), "case_reference must be a non-empty string")
	contains(_message(decision, "INPUT_INVALID"), "legal_basis must be a non-empty string")
}

test_input_bad_values_denied if {
	every change in [
		{"fields": []},
		{"fields": "income_year"},
		{"fields": ["income_year", 7]},
		{"time": "24 November 2026"},
		{"subject": {"age": -1}},
		{"subject": {"age": "34"}},
		{"subject": {"protected_identity": "no"}},
		{"requester": {"country": "Sweden"}},
		{"consents": "c-1"},
		{"consents": ["c-1"]},
		{"requester": {"service": ""}},
	] {
		decision := _decide(_preschool, change)
		"INPUT_INVALID" in _codes(decision)
		not decision.allow
	}
}

test_input_malformed_record_fields_named if {
	record := object.union(_record({}), {"given_by": "neighbour", "explicit": "yes", "fields": "all"})
	decision := _decide(_preschool, {"consents": [record]})
	contains(_message(decision, "INPUT_INVALID"), "consents[0] has a missing or malformed explicit, fields and given_by")
}

test_input_record_timestamps_checked if {
	record := object.remove(_record({"valid_until": "soon"}), ["given_at"])
	decision := _decide(_preschool, {"consents": [record]})
	contains(_message(decision, "INPUT_INVALID"), "consents[0] has a missing or malformed given_at and valid_until")
}

test_input_optional_country_and_explicit_accepted if {
	_decide(json.remove(_preschool, ["requester/country"]), {}).allow
	_decide(_preschool, {"consents": [object.remove(_record({}), ["explicit"])]}).allow
}
