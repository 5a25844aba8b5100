package tillit.exchange_test

import data.tillit.exchange

# Shared fixtures for the tests of package tillit.exchange. Subjects are synthetic: the policy
# input never carries identity numbers, only age and protected identity.

_time := "2026-11-24T12:00:00Z"

_record(overrides) := object.union(
	{
		"id": "c-1",
		"kind": "explicit_request",
		"requester": "exempelby-kommun",
		"service": "preschool-fee",
		"provider": "tax-agency",
		"dataset": "taxed-income",
		"purpose": "preschool-fee-reduction",
		"fields": ["income_year", "taxed_income_sek"],
		"given_at": "2026-11-01T09:00:00Z",
		"valid_from": "2026-11-01T09:00:00Z",
		"valid_until": "2027-11-01T09:00:00Z",
		"withdrawn_at": null,
		"given_by": "subject",
		"explicit": false,
	},
	overrides,
)

_preschool := {
	"requester": {"agency": "exempelby-kommun", "service": "preschool-fee", "country": "SE"},
	"provider": "tax-agency",
	"dataset": "taxed-income",
	"fields": ["income_year", "taxed_income_sek"],
	"purpose": "preschool-fee-reduction",
	"legal_basis": "Skollagen (2010:800) 8 kap. 16 §",
	"case_reference": "EXB-2026-0001",
	"time": _time,
	"subject": {"age": 34, "protected_identity": false},
	"consents": [_record({})],
}

_housing := object.union(_preschool, {
	"requester": {"service": "housing-allowance"},
	"fields": ["income_year", "taxed_income_sek", "capital_income_sek"],
	"purpose": "housing-allowance",
	"legal_basis": "Socialtjänstlagen (2025:400)",
	"consents": [_record({
		"kind": "waiver_of_confidentiality",
		"service": "housing-allowance",
		"purpose": "housing-allowance",
		"fields": ["income_year", "taxed_income_sek", "capital_income_sek", "assessment_date"],
	})],
})

_parental_check := {
	"requester": {"agency": "social-insurance", "service": "parental-benefit", "country": "SE"},
	"provider": "population-register",
	"dataset": "address",
	"fields": ["street_address", "postal_code", "city", "municipality_code", "registered_since"],
	"purpose": "parental-benefit-check",
	"legal_basis": "Socialförsäkringsbalken (2010:110) 110 kap. 31 §",
	"case_reference": "FK-2026-4711",
	"time": _time,
	"subject": {"age": 31, "protected_identity": false},
	"consents": [],
}

_illness := object.union(_parental_check, {
	"provider": "social-insurance",
	"dataset": "sickness-benefit",
	"fields": ["on_sick_leave", "sick_leave_percent", "diagnosis_code"],
	"purpose": "parental-benefit-illness-transfer",
	"legal_basis": "Socialförsäkringsbalken (2010:110) 110 kap. 13 §",
})

_prefill_record := _record({
	"id": "c-prefill",
	"kind": "consent",
	"provider": "population-register",
	"dataset": "address",
	"purpose": "contact-details-prefill",
	"fields": ["street_address", "postal_code", "city"],
})

_prefill := object.union(_preschool, {
	"provider": "population-register",
	"dataset": "address",
	"fields": ["street_address", "postal_code", "city"],
	"purpose": "contact-details-prefill",
	"legal_basis": "GDPR Art. 6(1)(a)",
	"consents": [_prefill_record],
})

_decide(request, overrides) := decision if {
	decision := exchange.decision with input as object.union(request, overrides)
}

# Decides with the purpose registry changed by `changes` (merged into the shipped one).
_decide_with_purposes(request, changes) := decision if {
	purposes := object.union(data.tillit.registry.purposes, changes)
	decision := exchange.decision with input as request with data.tillit.registry.purposes as purposes
}

# Decides with one purpose of the registry replaced as a whole.
_decide_with_purpose(request, id, purpose) := decision if {
	purposes := object.union(object.remove(data.tillit.registry.purposes, [id]), {id: purpose})
	decision := exchange.decision with input as request with data.tillit.registry.purposes as purposes
}

_codes(decision) := [r.code | some r in decision.reasons]

_message(decision, code) := concat(" ", [r.message | some r in decision.reasons; r.code == code])

test_decision_preschool_fee_request_allowed if {
	decision := _decide(_preschool, {})
	decision.allow == true
	decision.reasons == []
	decision.permitted_fields == ["income_year", "taxed_income_sek"]
	decision.excess_fields == []
	decision.consent_id == "c-1"
	decision.lawful_basis == {"article": "6(1)(e)", "kind": "public_task", "statute": "Skollagen (2010:800) 8 kap. 16 §"}
	decision.obligations == [{"type": "retention", "days": 365}]
}

test_decision_allow_rule_agrees_with_decision if {
	exchange.allow with input as _preschool
	not exchange.allow with input as object.union(_preschool, {"purpose": "marketing"})
}

test_decision_revision_echoed_when_pushed if {
	decision := exchange.decision with input as _preschool with data.tillit.meta.revision as "2026-11-24.1"
	decision.revision == "2026-11-24.1"
}

test_decision_revision_absent_when_not_pushed if {
	decision := _decide(_preschool, {})
	not "revision" in object.keys(decision)
}

test_decision_without_input_denied if {
	exchange.decision.allow == false
	"INPUT_INVALID" in _codes(exchange.decision)
}

test_decision_empty_input_denied if {
	decision := exchange.decision with input as {}
	decision.allow == false
	decision.permitted_fields == []
	decision.lawful_basis == null
	decision.consent_id == null
	decision.obligations == []
	"INPUT_INVALID" in _codes(decision)
}

test_decision_non_object_input_denied if {
	decision := exchange.decision with input as ["not", "an", "object"]
	decision.allow == false
	contains(_message(decision, "INPUT_INVALID"), "the input must be a JSON object")
}

test_decision_every_reason_listed_in_code_order if {
	decision := _decide(_preschool, {
		"requester": {"service": "housing-allowance", "country": "US"},
		"fields": ["income_year", "taxed_income_sek", "capital_income_sek"],
		"legal_basis": "Kommunallagen (2017:725)",
		"subject": {"protected_identity": true},
		"consents": [_record({"withdrawn_at": "2026-11-20T08:00:00Z"})],
	})
	_codes(decision) == [
		"CONSENT_SCOPE_MISMATCH",
		"CONSENT_WITHDRAWN",
		"FIELDS_NOT_PERMITTED",
		"LEGAL_BASIS_MISMATCH",
		"REQUESTER_NOT_AUTHORISED",
		"TRANSFER_NOT_ADEQUATE",
	]
}

test_decision_reasons_carry_message_and_article if {
	decision := _decide(_preschool, {"purpose": "marketing", "dataset": "criminal-records"})
	count(decision.reasons) > 1
	every reason in decision.reasons {
		object.keys(reason) == {"code", "message", "article"}
		startswith(reason.article, "GDPR Art. ")
		endswith(reason.message, ".")
	}
}

test_decision_bench_input_allowed if {
	decision := exchange.decision with input as data.testdata
	decision.allow == true
	decision.consent_id != null
}
