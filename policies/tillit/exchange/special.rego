# Special categories of personal data (part of package tillit.exchange).
#
# GDPR Art. 9. A field marked special_category in the dataset registry (health, for example)
# is released only if the purpose holds an Art. 9(2) basis in the registry (other than 9(2)(a))
# or the subject has given a valid explicit consent (Art. 9(2)(a)): a record of kind "consent"
# with explicit true that covers this request.

package tillit.exchange

_special_fields contains field if {
	some field in _releasable
	_dataset.fields[field].special_category
}

_has_art9_basis if {
	is_object(_purpose.art9_basis)
	startswith(_purpose.art9_basis.article, "9(2)(")
	_purpose.art9_basis.article != "9(2)(a)"
}

_special_needs_consent if {
	count(_special_fields) > 0
	not _has_art9_basis
}

_deny contains _reason("SPECIAL_CATEGORY_BASIS_MISSING", msg) if {
	_special_needs_consent
	count(_valid_explicit) == 0
	categories := {_dataset.fields[field].special_category | some field in _special_fields}
	msg := sprintf(
		concat(" ", [
			"The fields %v are special category data (%v).",
			"The purpose '%v' has no Art. 9(2) basis, and there is no valid explicit consent from the subject.",
		]),
		[_list(sort(_special_fields)), _list(sort(categories)), _purpose_id],
	)
}
