# Input validation (part of package tillit.exchange).
#
# The policy fails closed on malformed input: every problem is listed under INPUT_INVALID.
# The subject is described only by facts (age, protected identity); any other subject key,
# such as an identity number, is refused, so that identifying data never reaches the policy.
# A consent record is never used unless it is well-formed (consent.rego); malformed records
# are reported here when a record was needed and none was usable.
#
# A well-formed request is recognised in one pass (_input_well_formed); the itemised checks
# that name each problem run only when that pass fails. If they find nothing to name, the
# request is still refused, with a generic message.

package tillit.exchange

_subject_keys := {"age", "protected_identity"}

_input_well_formed if {
	_time_known
	_non_empty_strings([
		_request.case_reference, _request.dataset, _request.legal_basis, _request.provider,
		_request.purpose, _request.requester.agency, _request.requester.service,
	])
	_field_list(_request.fields)
	_age(_request.subject.age)
	is_boolean(_request.subject.protected_identity)
	count(object.keys(_request.subject) - _subject_keys) == 0
	_optional_country(object.get(_request.requester, "country", null))
	is_array(object.get(_request, "consents", []))
}

_input_invalid if not _input_well_formed

_input_invalid if count(_malformed) > 0

_deny contains _reason("INPUT_INVALID", msg) if {
	_input_invalid
	msg := sprintf("The request is malformed: %v.", [_input_problems])
}

default _input_problems := "it does not have the shape Tillit expects"

_input_problems := concat("; ", sort(_input_errors)) if count(_input_errors) > 0

_required_strings := {
	"case_reference": ["case_reference"],
	"dataset": ["dataset"],
	"legal_basis": ["legal_basis"],
	"provider": ["provider"],
	"purpose": ["purpose"],
	"requester.agency": ["requester", "agency"],
	"requester.service": ["requester", "service"],
}

_input_errors contains sprintf("%v must be a non-empty string", [name]) if {
	some name, path in _required_strings
	not _non_empty_string(object.get(_request, path, null))
}

_input_errors contains "the input must be a JSON object" if not _input_is_object

_input_errors contains "fields must be a non-empty list of field names" if {
	not _field_list(object.get(_request, "fields", null))
}

_input_errors contains "time must be an RFC 3339 timestamp" if not _time_known

_input_errors contains "subject.age must be a number from 0 up" if {
	not _age(object.get(_request, ["subject", "age"], null))
}

_input_errors contains "subject.protected_identity must be true or false" if {
	not is_boolean(object.get(_request, ["subject", "protected_identity"], null))
}

_input_errors contains sprintf(
	"subject.%v is not accepted: the subject is described only by age and protected identity",
	[key],
) if {
	some key, _ in object.get(_request, "subject", {})
	not key in _subject_keys
}

_input_errors contains "requester.country must be a two-letter country code" if {
	not _optional_country(object.get(_request, ["requester", "country"], null))
}

_input_errors contains "consents must be a list" if not is_array(object.get(_request, "consents", []))

_input_errors contains sprintf("consents[%v] is not an object", [i]) if {
	some i in _malformed
	not is_object(_consents[i])
}

_input_errors contains _record_message(i, _record_errors(record)) if {
	some i in _malformed
	record := _consents[i]
	is_object(record)
}

_record_message(i, errors) := sprintf("consents[%v] has a missing or malformed %v", [i, _list(sort(errors))]) if {
	count(errors) > 0
} else := sprintf("consents[%v] is malformed", [i])

_well_formed_record(record) if {
	_non_empty_strings([
		record.id, record.kind, record.requester, record.service,
		record.provider, record.dataset, record.purpose,
	])
	_timestamp(record.given_at)
	_timestamp(record.valid_from)
	_optional_timestamp(object.get(record, "valid_until", null))
	_optional_timestamp(object.get(record, "withdrawn_at", null))
	_string_array(record.fields)
	record.given_by in {"subject", "guardian"}
	is_boolean(object.get(record, "explicit", false))
}

# The itemised problems of a record that _well_formed_record rejects.
_record_errors(record) := (({key |
	some key in ["id", "kind", "requester", "service", "provider", "dataset", "purpose"]
	not _non_empty_string(object.get(record, key, null))
} | {key |
	some key in ["given_at", "valid_from"]
	not _timestamp(object.get(record, key, null))
}) | {key |
	some key in ["valid_until", "withdrawn_at"]
	not _optional_timestamp(object.get(record, key, null))
}) | {key |
	some key, valid in {
		"fields": _is_string_array(object.get(record, "fields", null)),
		"given_by": object.get(record, "given_by", null) in {"subject", "guardian"},
		"explicit": is_boolean(object.get(record, "explicit", false)),
	}
	not valid
}

# is_string comes first because a builtin error (such as parsing null) is slow to raise.
_timestamp(value) if {
	is_string(value)
	is_number(time.parse_rfc3339_ns(value))
}

_optional_timestamp(null) := true

_optional_timestamp(value) if _timestamp(value)

_non_empty_strings(values) if count([value | some value in values; is_string(value); value != ""]) == count(values)

_string_array(value) if {
	is_array(value)
	count([item | some item in value; is_string(item)]) == count(value)
}

default _is_string_array(_) := false

_is_string_array(value) if _string_array(value)

_field_list(value) if {
	_string_array(value)
	count(value) > 0
}

_age(value) if {
	is_number(value)
	value >= 0
}

_optional_country(null) := true

_optional_country(value) if {
	is_string(value)
	regex.match(`^[A-Za-z]{2}$`, value)
}
