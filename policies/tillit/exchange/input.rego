# Input validation (part of package tillit.exchange).
#
# The policy fails closed on malformed input: every problem is listed under INPUT_INVALID.
# The subject is described only by facts (age, protected identity); any other subject key,
# such as an identity number, is refused, so that identifying data never reaches the policy.

package tillit.exchange

_required_strings := {
	"case_reference": ["case_reference"],
	"dataset": ["dataset"],
	"legal_basis": ["legal_basis"],
	"provider": ["provider"],
	"purpose": ["purpose"],
	"requester.agency": ["requester", "agency"],
	"requester.service": ["requester", "service"],
}

_subject_keys := {"age", "protected_identity"}

_record_checks := {
	"dataset": "string",
	"explicit": "optional_boolean",
	"fields": "string_array",
	"given_at": "timestamp",
	"given_by": "given_by",
	"id": "string",
	"kind": "string",
	"provider": "string",
	"purpose": "string",
	"requester": "string",
	"service": "string",
	"valid_from": "timestamp",
	"valid_until": "optional_timestamp",
	"withdrawn_at": "optional_timestamp",
}

_input_errors contains sprintf("%v must be a non-empty string", [name]) if {
	some name, path in _required_strings
	not _non_empty_string(object.get(input, path, null))
}

_input_errors contains "fields must be a non-empty list of field names" if {
	not _valid_value("non_empty_string_array", object.get(input, "fields", null))
}

_input_errors contains "time must be an RFC 3339 timestamp" if not _time_known

_input_errors contains "subject.age must be a number from 0 up" if {
	not _valid_value("age", object.get(input, ["subject", "age"], null))
}

_input_errors contains "subject.protected_identity must be true or false" if {
	not is_boolean(object.get(input, ["subject", "protected_identity"], null))
}

_input_errors contains sprintf("subject.%v is not accepted: the subject is described only by age and protected identity", [key]) if {
	some key, _ in object.get(input, "subject", {})
	not key in _subject_keys
}

_input_errors contains "requester.country must be a two-letter country code" if {
	not _valid_value("optional_country", object.get(input, ["requester", "country"], null))
}

_input_errors contains "consents must be a list" if not is_array(object.get(input, "consents", []))

_input_errors contains sprintf("consents[%v] is not an object", [i]) if {
	some i, record in _consents
	not is_object(record)
}

_input_errors contains sprintf("consents[%v] has a missing or malformed %v", [i, _list(sort(errors))]) if {
	some i, record in _consents
	is_object(record)
	errors := _record_errors(record)
	count(errors) > 0
}

_deny contains _reason("INPUT_INVALID", msg) if {
	count(_input_errors) > 0
	msg := sprintf("The request is malformed: %v.", [concat("; ", sort(_input_errors))])
}

_record_errors(record) := {key |
	some key, check in _record_checks
	not _valid_value(check, object.get(record, key, null))
}

_valid_value("string", value) if _non_empty_string(value)

_valid_value("timestamp", value) if is_number(time.parse_rfc3339_ns(value))

_valid_value("optional_timestamp", null) := true

_valid_value("optional_timestamp", value) if is_number(time.parse_rfc3339_ns(value))

_valid_value("optional_boolean", null) := true

_valid_value("optional_boolean", value) if is_boolean(value)

_valid_value("given_by", value) if value in {"subject", "guardian"}

_valid_value("string_array", value) if _string_array(value)

_valid_value("non_empty_string_array", value) if {
	_string_array(value)
	count(value) > 0
}

_valid_value("age", value) if {
	is_number(value)
	value >= 0
}

_valid_value("optional_country", null) := true

_valid_value("optional_country", value) if regex.match(`^[A-Za-z]{2}$`, value)

_string_array(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}
