package tillit.exchange_test

test_minimisation_permitted_fields_allowed if {
	decision := _decide(_preschool, {"fields": ["taxed_income_sek", "income_year"]})
	decision.allow
	decision.permitted_fields == ["income_year", "taxed_income_sek"]
	decision.excess_fields == []
}

test_minimisation_subset_of_permitted_fields_allowed if {
	decision := _decide(_preschool, {"fields": ["income_year"]})
	decision.allow
	decision.permitted_fields == ["income_year"]
}

test_minimisation_excess_field_denied if {
	decision := _decide(_preschool, {"fields": ["income_year", "taxed_income_sek", "capital_income_sek"]})
	_codes(decision) == ["FIELDS_NOT_PERMITTED"]
	decision.excess_fields == ["capital_income_sek"]
	decision.permitted_fields == ["income_year", "taxed_income_sek"]
	contains(_message(decision, "FIELDS_NOT_PERMITTED"), "capital_income_sek")
}

test_minimisation_field_permitted_for_other_purpose_denied if {
	# capital income is needed for the housing allowance, not for the preschool fee
	_decide(_housing, {}).allow
	not _decide(_preschool, {"fields": ["capital_income_sek"]}).allow
}

test_minimisation_unknown_field_denied if {
	decision := _decide(_preschool, {"fields": ["income_year", "shoe_size", "blood_group"]})
	_codes(decision) == ["FIELDS_NOT_PERMITTED"]
	decision.excess_fields == ["blood_group", "shoe_size"]
	contains(_message(decision, "FIELDS_NOT_PERMITTED"), "blood_group and shoe_size")
}

test_minimisation_registry_field_missing_from_dataset_not_released if {
	decision := _decide_with_purposes(
		object.union(_preschool, {"fields": ["income_year", "wealth_sek"]}),
		{"preschool-fee-reduction": {"datasets": {"taxed-income": ["income_year", "taxed_income_sek", "wealth_sek"]}}},
	)
	decision.excess_fields == ["wealth_sek"]
	decision.permitted_fields == ["income_year"]
}
