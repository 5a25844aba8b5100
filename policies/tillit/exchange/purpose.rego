# Purpose limitation and requester authorisation (part of package tillit.exchange).
#
# GDPR Art. 5(1)(b): data may be collected only for a specified purpose. The purpose must be
# in the registry, the requesting e-service must be registered for it, the dataset must be one
# the purpose allows, and the provider asked must be the one that holds the dataset.

package tillit.exchange

_deny contains _reason("UNKNOWN_PURPOSE", msg) if {
	not _purpose
	msg := sprintf("The purpose '%v' is not in the purpose registry, so no data may be shared for it.", [_purpose_id])
}

_deny contains _reason("UNKNOWN_DATASET", msg) if {
	not _dataset
	msg := sprintf("The dataset '%v' is not in the dataset registry.", [_dataset_id])
}

_deny contains _reason("REQUESTER_NOT_AUTHORISED", _requester_problem)

_deny contains _reason("DATASET_NOT_ALLOWED_FOR_PURPOSE", msg) if {
	_purpose
	_dataset
	not _dataset_allowed
	msg := sprintf("The purpose '%v' does not allow data from the dataset '%v'.", [_purpose_id, _dataset_id])
}

_deny contains _reason("PROVIDER_MISMATCH", msg) if {
	holder := object.get(_dataset, "provider", "no registered provider")
	holder != _provider_id
	msg := sprintf(
		"The dataset '%v' is held by '%v', not by the provider asked ('%v').",
		[_dataset_id, holder, _provider_id],
	)
}

_requester_problem := sprintf(
	"'%v' is not a registered e-service of the agency '%v'.",
	[_service_id, _agency_id],
) if {
	not _requester_registered
} else := sprintf(
	"The e-service '%v' of '%v' is not registered for the purpose '%v'.",
	[_service_id, _agency_id, _purpose_id],
) if {
	_purpose
	not _requester_listed
}

_dataset_allowed if {
	_dataset_id in object.keys(_purpose.datasets)
}

_requester_registered if {
	_service_id in object.keys(_agency.services)
}

_requester_listed if {
	some requester in _purpose.requesters
	requester.agency == _agency_id
	requester.service == _service_id
}
