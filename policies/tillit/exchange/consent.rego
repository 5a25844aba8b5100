# Consent, explicit request and waiver of confidentiality (part of package tillit.exchange).
#
# GDPR Art. 7 and Art. 4(11). A purpose may require a record from the subject: a GDPR consent
# (Art. 6(1)(a)), an explicit request to reuse data already given (once-only), or a waiver of
# confidentiality. The record must be of that kind and must cover the requesting agency and
# e-service, the provider, the dataset, the purpose and every field to be released; it must have
# been given and be valid at the time of the request, not have expired, and not have been
# withdrawn (withdrawn_at <= time means withdrawn: a withdrawal takes effect at once). It must
# be given by the subject, or by a guardian when the subject is a child (children.rego).
# When several records exist, one valid record is enough. Only when none is valid are the
# reasons worked out, from the records closest to valid: of the right kind and scope first,
# then of the right kind, then any; malformed records are then reported under INPUT_INVALID.
# Every condition on a usable record is a positive test, so a malformed record is never used.

package tillit.exchange

_required_kind := _purpose.required_consent if is_string(_purpose.required_consent)

default _consents := []

_consents := input.consents if is_array(input.consents)

# Records are looked at only when the purpose needs one, or an explicit consent could
# provide the Art. 9(2)(a) exception.
_consent_needed if _required_kind

_consent_needed if _special_needs_consent

_scope_keys := {"requester", "service", "provider", "dataset", "purpose"}

_scope_expected := {
	"requester": _agency_id,
	"service": _service_id,
	"provider": _provider_id,
	"dataset": _dataset_id,
	"purpose": _purpose_id,
}

# Usable records of any kind, keyed by their position in input.consents: in scope, in time,
# not ended, not withdrawn and given by the right person. The same conditions, one by one,
# give the reasons below. Ended and withdrawn records, the usual history, fail early.
_sound[i] := record if {
	_consent_needed
	_time_known
	some i, record in _consents
	object.filter(record, _scope_keys) == _scope_expected
	_open(object.get(record, "withdrawn_at", null))
	_open(object.get(record, "valid_until", null))
	is_array(record.fields)
	_covers(record.fields, _releasable)
	time.parse_rfc3339_ns(record.given_at) <= _now
	time.parse_rfc3339_ns(record.valid_from) <= _now
	record.given_by == _expected_giver
	_non_empty_string(record.id)
	is_string(record.kind)
}

# Not ended (or withdrawn) at the time of the request; null means no end.
_open(null) := true

_open(stamp) if {
	is_string(stamp)
	time.parse_rfc3339_ns(stamp) > _now
}

# A validity end or withdrawal that has come by the time of the request.
_ended(stamp) if {
	is_string(stamp)
	time.parse_rfc3339_ns(stamp) <= _now
}

_covers(fields, wanted) if count(wanted - {field | some field in fields}) == 0

_valid_required contains i if {
	some i, record in _sound
	record.kind == _required_kind
}

# Explicit consent in the sense of Art. 9(2)(a).
_valid_explicit contains i if {
	some i, record in _sound
	record.kind == "consent"
	record.explicit == true
}

default _consent_id := null

_consent_id := _newest(_valid_required & _valid_explicit) if {
	count(_valid_required & _valid_explicit) > 0
} else := _newest(_valid_required) if {
	count(_valid_required) > 0
} else := _newest(_valid_explicit) if {
	_special_needs_consent
	count(_valid_explicit) > 0
}

# The most recently given record wins; the id breaks ties, so the choice is deterministic.
_newest(indexes) := max({[time.parse_rfc3339_ns(_sound[i].given_at), _sound[i].id] | some i in indexes})[1]

# Everything below runs only when a record was needed and none is usable: it works out why.
_consent_failed if {
	_required_kind
	count(_valid_required) == 0
}

_consent_unresolved if _consent_failed

_consent_unresolved if {
	_special_needs_consent
	count(_valid_explicit) == 0
}

# Well-formed records, for the reasons; the others are reported under INPUT_INVALID.
_records[i] := record if {
	_consent_unresolved
	some i, record in _consents
	_well_formed_record(record)
}

_malformed contains i if {
	_consent_unresolved
	some i, _ in _consents
	not i in object.keys(_records)
}

_scope_gap contains [i, key] if {
	_consent_failed
	some i, record in _records
	some key, expected in _scope_expected
	record[key] != expected
}

_scope_gap contains [i, "fields"] if {
	_consent_failed
	some i, record in _records
	not _covers(record.fields, _releasable)
}

_problem contains [i, "CONSENT_SCOPE_MISMATCH"] if some [i, _] in _scope_gap

_problem contains [i, "CONSENT_NOT_YET_VALID"] if {
	_consent_failed
	some i, record in _records
	some key in ["given_at", "valid_from"]
	time.parse_rfc3339_ns(record[key]) > _now
}

_problem contains [i, "CONSENT_EXPIRED"] if {
	_consent_failed
	some i, record in _records
	_ended(object.get(record, "valid_until", null))
}

_problem contains [i, "CONSENT_WITHDRAWN"] if {
	_consent_failed
	some i, record in _records
	_ended(object.get(record, "withdrawn_at", null))
}

# How far a record is from covering this request: 0 right kind and scope, 1 right kind,
# 2 or 3 wrong kind.
_distance[i] := distance if {
	_consent_failed
	some i, record in _records
	distance := (2 * to_number(record.kind != _required_kind)) + to_number([i, "CONSENT_SCOPE_MISMATCH"] in _problem)
}

_closest contains i if {
	nearest := min([distance | some distance in _distance])
	some i, distance in _distance
	distance == nearest
}

_consent_issue contains [code, i] if {
	some [i, code] in _problem
	i in _closest
}

_consent_issue contains ["CONSENT_KIND_MISMATCH", i] if {
	some i in _closest
	_records[i].kind != _required_kind
}
