package tillit.exchange_test

import data.tillit.exchange

test_purpose_unknown_denied if {
	decision := _decide(_preschool, {"purpose": "marketing"})
	_codes(decision) == ["UNKNOWN_PURPOSE"]
	decision.permitted_fields == []
	decision.excess_fields == ["income_year", "taxed_income_sek"]
	decision.lawful_basis == null
	decision.obligations == []
	decision.consent_id == null
}

test_purpose_registered_requester_allowed if {
	_decide(_preschool, {}).allow
	_decide(_parental_check, {}).allow
}

test_purpose_other_service_of_agency_not_authorised if {
	decision := _decide(_preschool, {"requester": {"service": "housing-allowance"}})
	"REQUESTER_NOT_AUTHORISED" in _codes(decision)
	contains(_message(decision, "REQUESTER_NOT_AUTHORISED"), "not registered for the purpose 'preschool-fee-reduction'")
}

test_purpose_unregistered_service_not_authorised if {
	decision := _decide(_preschool, {"requester": {"service": "parking-permit"}})
	"REQUESTER_NOT_AUTHORISED" in _codes(decision)
	contains(_message(decision, "REQUESTER_NOT_AUTHORISED"), "not a registered e-service")
}

test_purpose_unknown_agency_not_authorised if {
	decision := _decide(_preschool, {"requester": {"agency": "annanby-kommun"}})
	"REQUESTER_NOT_AUTHORISED" in _codes(decision)
	not decision.allow
}

test_purpose_provider_agency_as_requester_not_authorised if {
	decision := _decide(_preschool, {"requester": {"agency": "tax-agency", "service": "preschool-fee"}})
	"REQUESTER_NOT_AUTHORISED" in _codes(decision)
}

test_purpose_dataset_outside_purpose_denied if {
	decision := _decide(_preschool, {
		"provider": "social-insurance",
		"dataset": "sickness-benefit",
		"fields": ["on_sick_leave"],
	})
	"DATASET_NOT_ALLOWED_FOR_PURPOSE" in _codes(decision)
	not "FIELDS_NOT_PERMITTED" in _codes(decision)
	decision.permitted_fields == []
	decision.excess_fields == ["on_sick_leave"]
}

test_purpose_second_dataset_of_purpose_allowed if {
	decision := _decide(_preschool, {
		"provider": "population-register",
		"dataset": "household",
		"fields": ["household_size", "children"],
		"consents": [_record({
			"provider": "population-register",
			"dataset": "household",
			"fields": ["household_size", "adults", "children"],
		})],
	})
	decision.allow
	decision.permitted_fields == ["children", "household_size"]
}

test_purpose_unknown_dataset_denied if {
	decision := _decide(_preschool, {"dataset": "criminal-records"})
	"UNKNOWN_DATASET" in _codes(decision)
	not "DATASET_NOT_ALLOWED_FOR_PURPOSE" in _codes(decision)
	not "PROVIDER_MISMATCH" in _codes(decision)
}

test_purpose_wrong_provider_denied if {
	decision := _decide(_preschool, {"provider": "population-register"})
	"PROVIDER_MISMATCH" in _codes(decision)
	contains(_message(decision, "PROVIDER_MISMATCH"), "held by 'tax-agency'")
}

test_purpose_purpose_without_datasets_denied if {
	purpose := object.remove(data.tillit.registry.purposes["preschool-fee-reduction"], ["datasets"])
	decision := _decide_with_purpose(_preschool, "preschool-fee-reduction", purpose)
	"DATASET_NOT_ALLOWED_FOR_PURPOSE" in _codes(decision)
}

test_purpose_dataset_without_provider_denied if {
	datasets := json.remove(data.tillit.registry.datasets, ["taxed-income/provider"])
	decision := exchange.decision with input as _preschool with data.tillit.registry.datasets as datasets
	_codes(decision) == ["PROVIDER_MISMATCH"]
	contains(_message(decision, "PROVIDER_MISMATCH"), "held by 'no registered provider'")
}
