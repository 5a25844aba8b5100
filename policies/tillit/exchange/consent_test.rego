package tillit.exchange_test

import data.tillit.exchange

test_consent_valid_explicit_request_allowed if {
	decision := _decide(_preschool, {})
	decision.allow
	decision.consent_id == "c-1"
}

test_consent_missing_denied if {
	decision := _decide(_preschool, {"consents": []})
	_codes(decision) == ["CONSENT_MISSING"]
	decision.consent_id == null
	contains(_message(decision, "CONSENT_MISSING"), "an explicit request from the subject")
}

test_consent_absent_consents_key_denied if {
	decision := exchange.decision with input as object.remove(_preschool, ["consents"])
	_codes(decision) == ["CONSENT_MISSING"]
}

test_consent_withdrawn_denied if {
	decision := _decide(_preschool, {"consents": [_record({"withdrawn_at": "2026-11-20T08:00:00Z"})]})
	_codes(decision) == ["CONSENT_WITHDRAWN"]
	decision.consent_id == null
	contains(_message(decision, "CONSENT_WITHDRAWN"), "The record c-1 was withdrawn")
}

test_consent_withdrawn_at_request_time_denied if {
	decision := _decide(_preschool, {"consents": [_record({"withdrawn_at": _time})]})
	_codes(decision) == ["CONSENT_WITHDRAWN"]
}

test_consent_withdrawn_after_request_time_allowed if {
	decision := _decide(_preschool, {"consents": [_record({"withdrawn_at": "2026-11-24T12:00:01Z"})]})
	decision.allow
}

test_consent_expired_denied if {
	decision := _decide(_preschool, {"consents": [_record({"valid_until": "2026-11-23T00:00:00Z"})]})
	_codes(decision) == ["CONSENT_EXPIRED"]
}

test_consent_expiring_at_request_time_denied if {
	decision := _decide(_preschool, {"consents": [_record({"valid_until": _time})]})
	_codes(decision) == ["CONSENT_EXPIRED"]
}

test_consent_without_end_date_allowed if {
	_decide(_preschool, {"consents": [_record({"valid_until": null})]}).allow
	_decide(_preschool, {"consents": [object.remove(_record({}), ["valid_until", "withdrawn_at"])]}).allow
}

test_consent_not_yet_valid_denied if {
	decision := _decide(_preschool, {"consents": [_record({"valid_from": "2026-12-01T00:00:00Z"})]})
	_codes(decision) == ["CONSENT_NOT_YET_VALID"]
}

test_consent_given_after_request_denied if {
	decision := _decide(_preschool, {"consents": [_record({"given_at": "2026-11-24T12:00:01Z"})]})
	_codes(decision) == ["CONSENT_NOT_YET_VALID"]
}

test_consent_valid_from_request_time_allowed if {
	_decide(_preschool, {"consents": [_record({"given_at": _time, "valid_from": _time})]}).allow
}

test_consent_withdrawn_and_expired_both_reported if {
	decision := _decide(_preschool, {"consents": [_record({
		"valid_until": "2026-11-23T00:00:00Z",
		"withdrawn_at": "2026-11-22T00:00:00Z",
	})]})
	_codes(decision) == ["CONSENT_EXPIRED", "CONSENT_WITHDRAWN"]
}

test_consent_scope_mismatch_each_dimension_denied if {
	every change in [
		{"requester": "annanby-kommun"},
		{"service": "housing-allowance"},
		{"provider": "population-register"},
		{"dataset": "household"},
		{"purpose": "housing-allowance"},
		{"fields": ["income_year"]},
	] {
		decision := _decide(_preschool, {"consents": [_record(change)]})
		_codes(decision) == ["CONSENT_SCOPE_MISMATCH"]
	}
}

test_consent_scope_mismatch_names_the_difference if {
	decision := _decide(_preschool, {"consents": [_record({"service": "housing-allowance", "fields": ["income_year"]})]})
	_message(decision, "CONSENT_SCOPE_MISMATCH") == concat(" ", [
		"The record c-1 does not cover this request.",
		"It differs in: e-service and fields.",
	])
}

test_consent_covering_more_fields_allowed if {
	_decide(_preschool, {"fields": ["income_year"]}).allow
}

test_consent_kind_mismatch_denied if {
	decision := _decide(_preschool, {"consents": [_record({"kind": "consent"})]})
	_codes(decision) == ["CONSENT_KIND_MISMATCH"]
	contains(_message(decision, "CONSENT_KIND_MISMATCH"), "The purpose requires an explicit request from the subject.")
}

test_consent_waiver_of_confidentiality_allowed if {
	decision := _decide(_housing, {})
	decision.allow
	decision.consent_id == "c-1"
	decision.obligations == [{"type": "retention", "days": 730}]
}

test_consent_explicit_request_instead_of_waiver_denied if {
	record := object.union(_housing.consents[0], {"kind": "explicit_request"})
	decision := _decide(_housing, {"consents": [record]})
	_codes(decision) == ["CONSENT_KIND_MISMATCH"]
	contains(_message(decision, "CONSENT_KIND_MISMATCH"), "a waiver of confidentiality")
}

test_consent_valid_record_wins_over_invalid_ones if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-old", "withdrawn_at": "2026-11-02T00:00:00Z"}),
		_record({"id": "c-kind", "kind": "consent"}),
		_record({"id": "c-good", "given_at": "2026-11-03T00:00:00Z"}),
	]})
	decision.allow
	decision.consent_id == "c-good"
}

test_consent_newest_valid_record_chosen if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-b", "given_at": "2026-11-10T00:00:00Z"}),
		_record({"id": "c-a", "given_at": "2026-11-12T00:00:00Z"}),
		_record({"id": "c-c", "given_at": "2026-11-11T00:00:00Z"}),
	]})
	decision.consent_id == "c-a"
}

test_consent_reasons_come_from_closest_record if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-kind", "kind": "consent", "service": "housing-allowance"}),
		_record({"id": "c-scope", "fields": ["income_year"]}),
		_record({"id": "c-late", "withdrawn_at": "2026-11-20T00:00:00Z"}),
	]})
	_codes(decision) == ["CONSENT_WITHDRAWN"]
	_message(decision, "CONSENT_WITHDRAWN") == concat(" ", [
		"The record c-late was withdrawn before the time of the request;",
		"a withdrawal takes effect at once.",
	])
}

test_consent_right_kind_closer_than_right_scope if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-kind", "kind": "consent"}),
		_record({"id": "c-scope", "purpose": "housing-allowance"}),
	]})
	_codes(decision) == ["CONSENT_SCOPE_MISMATCH"]
}

test_consent_equally_close_records_all_named if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-2", "withdrawn_at": "2026-11-20T00:00:00Z"}),
		_record({"id": "c-1", "withdrawn_at": "2026-11-21T00:00:00Z"}),
		_record({"id": "c-3", "valid_until": "2026-11-22T00:00:00Z"}),
	]})
	_codes(decision) == ["CONSENT_EXPIRED", "CONSENT_WITHDRAWN"]
	startswith(_message(decision, "CONSENT_WITHDRAWN"), "Each of the records c-1 and c-2 was withdrawn")
}

test_consent_not_needed_for_legal_obligation if {
	decision := _decide(_parental_check, {})
	decision.allow
	decision.consent_id == null
}

test_consent_records_ignored_when_not_needed if {
	decision := _decide(_parental_check, {"consents": [_record({"withdrawn_at": "2026-11-20T00:00:00Z"})]})
	decision.allow
	decision.consent_id == null
}

test_consent_malformed_record_never_used if {
	decision := _decide(_preschool, {"consents": [_record({"withdrawn_at": "last tuesday"})]})
	_codes(decision) == ["CONSENT_MISSING", "INPUT_INVALID"]
	decision.consent_id == null
}

test_consent_malformed_history_record_ignored_when_valid_one_exists if {
	decision := _decide(_preschool, {"consents": [
		_record({"id": "c-old", "withdrawn_at": "sometime last year"}),
		_record({"id": "c-new"}),
	]})
	decision.allow
	decision.consent_id == "c-new"
}

test_consent_unknown_request_time_uses_no_record if {
	decision := _decide(_preschool, {"time": "now"})
	_codes(decision) == ["CONSENT_MISSING", "INPUT_INVALID"]
	contains(_message(decision, "CONSENT_MISSING"), "no record on file can be used")
	decision.consent_id == null
}
