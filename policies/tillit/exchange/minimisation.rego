# Data minimisation (part of package tillit.exchange).
#
# GDPR Art. 5(1)(c): only fields that the purpose permits for this dataset, and that the
# dataset actually has, are released. Any other requested field is named in `excess_fields`
# and denies the request, so that a requester cannot silently over-ask.

package tillit.exchange

# METADATA
# title: Permitted fields
# description: >-
#   Requested fields that the purpose permits for this dataset, minus fields withheld because
#   the subject has a protected identity; sorted.
permitted_fields := sort(_releasable - _withheld)

# METADATA
# title: Excess fields
# description: Requested fields that the purpose does not permit for this dataset; sorted.
excess_fields := sort(_requested - _allowed_for_purpose)

_requested contains field if {
	some field in input.fields
	is_string(field)
}

_allowed_for_purpose contains field if {
	some field in object.get(_purpose.datasets, _dataset_id, [])
	_dataset.fields[field]
}

_releasable := _requested & _allowed_for_purpose

# Reported only when the dataset itself is allowed for the purpose; otherwise
# DATASET_NOT_ALLOWED_FOR_PURPOSE or UNKNOWN_DATASET already says why nothing may be released.
_deny contains _reason("FIELDS_NOT_PERMITTED", msg) if {
	_dataset
	_dataset_id in object.keys(_purpose.datasets)
	count(excess_fields) > 0
	msg := sprintf(
		"The purpose '%v' does not need the fields %v from the dataset '%v'; ask only for what the purpose permits.",
		[_purpose_id, _list(excess_fields), _dataset_id],
	)
}
