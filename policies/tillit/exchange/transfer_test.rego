package tillit.exchange_test

import data.tillit.exchange

# A test-only agency outside the EU/EEA; it is not in the shipped registry.
_agencies_with_foreign := object.union(data.tillit.registry.agencies, {"example-foreign-agency": {
	"name": "Foreign agency (test only)",
	"country": "BR",
	"roles": ["requester"],
	"services": {"preschool-fee": {"title": "Test only"}},
}})

test_transfer_within_eu_allowed if {
	_decide(_preschool, {}).allow
	_decide(_preschool, {"requester": {"country": "NO"}}).allow
}

test_transfer_lower_case_country_allowed if {
	_decide(_preschool, {"requester": {"country": "se"}}).allow
}

test_transfer_adequate_country_allowed if {
	_decide(_preschool, {"requester": {"country": "CH"}}).allow
}

test_transfer_third_country_denied if {
	decision := _decide(_preschool, {"requester": {"country": "BR"}})
	_codes(decision) == ["TRANSFER_NOT_ADEQUATE"]
	contains(_message(decision, "TRANSFER_NOT_ADEQUATE"), "The requester is in BR, outside the EU/EEA")
}

test_transfer_adequacy_not_covering_public_authorities_denied if {
	_codes(_decide(_preschool, {"requester": {"country": "US"}})) == ["TRANSFER_NOT_ADEQUATE"]
	_codes(_decide(_preschool, {"requester": {"country": "CA"}})) == ["TRANSFER_NOT_ADEQUATE"]
}

test_transfer_registry_country_used_when_request_has_none if {
	request := object.union(_preschool, {"requester": {"agency": "example-foreign-agency"}})
	decision := exchange.decision with input as json.remove(request, ["requester/country"])
		with data.tillit.registry.agencies as _agencies_with_foreign
	"TRANSFER_NOT_ADEQUATE" in _codes(decision)
}

test_transfer_registry_country_outranks_request if {
	request := object.union(_preschool, {"requester": {"agency": "example-foreign-agency", "country": "SE"}})
	decision := exchange.decision with input as request with data.tillit.registry.agencies as _agencies_with_foreign
	"TRANSFER_NOT_ADEQUATE" in _codes(decision)
}

test_transfer_unknown_country_denied if {
	request := object.union(_preschool, {"requester": {"agency": "annanby-kommun"}})
	decision := exchange.decision with input as json.remove(request, ["requester/country"])
	"TRANSFER_NOT_ADEQUATE" in _codes(decision)
	contains(_message(decision, "TRANSFER_NOT_ADEQUATE"), "country is unknown")
}

test_transfer_registry_country_alone_allowed if {
	_decide(json.remove(_preschool, ["requester/country"]), {}).allow
}
