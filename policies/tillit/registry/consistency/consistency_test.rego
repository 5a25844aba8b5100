package tillit.registry.consistency_test

import data.tillit.registry.consistency

_purpose := data.tillit.registry.purposes["preschool-fee-reduction"]

_violations_with_purpose(changes) := violations if {
	purposes := {"preschool-fee-reduction": object.union(_purpose, changes)}
	violations := consistency.violations with data.tillit.registry.purposes as purposes
}

_has(violations, text) if {
	some violation in violations
	contains(violation, text)
}

test_violations_shipped_registry_empty if {
	count(consistency.violations) == 0
}

test_violations_unregistered_requester_reported if {
	violations := _violations_with_purpose({"requesters": [{"agency": "exempelby-kommun", "service": "parking-permit"}]})
	_has(violations, "requester exempelby-kommun/parking-permit is not a registered e-service")
}

test_violations_provider_as_requester_reported if {
	violations := _violations_with_purpose({"requesters": [{"agency": "tax-agency", "service": "preschool-fee"}]})
	_has(violations, "requester agency tax-agency lacks the requester role")
}

test_violations_unknown_dataset_and_field_reported if {
	violations := _violations_with_purpose({"datasets": {"criminal-records": ["offence"], "taxed-income": ["wealth_sek"]}})
	_has(violations, "dataset 'criminal-records' is not in the dataset registry")
	_has(violations, "dataset 'taxed-income' has no field 'wealth_sek'")
}

test_violations_missing_keys_reported if {
	purposes := {"bare": {"lawful_basis": {"article": "6(1)(e)", "kind": "public_task", "statute": "X"}}}
	violations := consistency.violations with data.tillit.registry.purposes as purposes
	every key in ["title", "description", "requesters", "datasets", "retention_days"] {
		_has(violations, sprintf("purpose 'bare': %v is missing", [key]))
	}
}

test_violations_lawful_basis_kind_reported if {
	violations := _violations_with_purpose({"lawful_basis": {"kind": "legitimate_interests", "article": "6(1)(f)"}})
	_has(violations, "lawful basis kind 'legitimate_interests' must be one of consent, legal_obligation, public_task")
}

test_violations_article_not_matching_kind_reported if {
	violations := _violations_with_purpose({"lawful_basis": {"article": "6(1)(c)"}})
	_has(violations, "a public_task basis is GDPR Art. 6(1)(e), not '6(1)(c)'")
}

test_violations_statute_missing_reported if {
	violations := _violations_with_purpose({"lawful_basis": {"statute": ""}})
	_has(violations, "a public_task basis must name its statute (Art. 6(3))")
}

test_violations_unknown_consent_kind_reported if {
	violations := _violations_with_purpose({"required_consent": "explicit-request"})
	_has(violations, "required_consent must be null or one of")
}

test_violations_consent_basis_without_consent_record_reported if {
	violations := _violations_with_purpose({"lawful_basis": {"article": "6(1)(a)", "kind": "consent", "statute": null}})
	_has(violations, "a consent basis (Art. 6(1)(a)) must require a record of kind consent")
}

test_violations_retention_and_age_reported if {
	violations := _violations_with_purpose({"retention_days": 0.5, "guardian_consent_below_age": "18"})
	_has(violations, "retention_days must be a whole number of days above 0")
	_has(violations, "guardian_consent_below_age must be a number of years above 0")
}

test_violations_bad_art9_basis_reported if {
	violations := _violations_with_purpose({"art9_basis": {"article": "9(2)(a)", "statute": "X"}})
	_has(violations, "art9_basis must be an Art. 9(2)(b)-(j) basis with a statute")
}

test_violations_special_field_without_basis_reported if {
	violations := _violations_with_purpose({"datasets": {"sickness-benefit": ["diagnosis_code"]}})
	_has(violations, "special category field 'diagnosis_code' needs an art9_basis or a consent purpose")
}

test_violations_dataset_provider_and_agency_country_reported if {
	datasets := object.union(data.tillit.registry.datasets, {"household": {"provider": "exempelby-kommun"}})
	agencies := object.union(data.tillit.registry.agencies, {"tax-agency": {"country": "Sweden"}})
	violations := consistency.violations with data.tillit.registry.datasets as datasets
		with data.tillit.registry.agencies as agencies
	_has(violations, "dataset 'household': provider 'exempelby-kommun' is not a registered provider agency")
	_has(violations, "agency 'tax-agency': country must be a two-letter ISO 3166 code")
}
