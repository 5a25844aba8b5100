package tillit.exchange_test

import data.tillit.exchange

test_protected_identity_address_denied if {
	decision := _decide(_parental_check, {"subject": {"protected_identity": true}})
	_codes(decision) == ["PROTECTED_IDENTITY"]
	decision.permitted_fields == ["registered_since"]
	decision.excess_fields == []
	_message(decision, "PROTECTED_IDENTITY") == concat(" ", [
		"The subject has a protected identity, so address-like fields",
		"(city, municipality_code, postal_code and street_address) are never released through Tillit.",
	])
}

test_protected_identity_non_address_fields_allowed if {
	decision := _decide(_parental_check, {"subject": {"protected_identity": true}, "fields": ["registered_since"]})
	decision.allow
	decision.permitted_fields == ["registered_since"]
}

test_protected_identity_income_allowed if {
	_decide(_preschool, {"subject": {"protected_identity": true}}).allow
}

test_protected_identity_unknown_treated_as_protected if {
	request := object.union(_parental_check, {"subject": {"age": 31}})
	decision := exchange.decision with input as object.remove(request, ["subject"])
	"PROTECTED_IDENTITY" in _codes(decision)
	"INPUT_INVALID" in _codes(decision)
	decision.permitted_fields == ["registered_since"]
}

test_protected_identity_unprotected_address_allowed if {
	decision := _decide(_parental_check, {})
	decision.allow
	count(decision.permitted_fields) == 5
}

test_protected_identity_not_a_boolean_treated_as_protected if {
	decision := _decide(_parental_check, {"subject": {"protected_identity": null}})
	"PROTECTED_IDENTITY" in _codes(decision)
	decision.permitted_fields == ["registered_since"]
}
