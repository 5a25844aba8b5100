# Consent, explicit request and waiver of confidentiality (part of package tillit.exchange).
#
# GDPR Art. 7 and Art. 4(11). A purpose may require a record from the subject: a GDPR consent
# (Art. 6(1)(a)), an explicit request to reuse data already given (once-only), or a waiver of
# confidentiality. The record must be of that kind and must cover the requesting agency and
# e-service, the provider, the dataset, the purpose and every field to be released; it must have
# been given and be valid at the time of the request, not have expired, and not have been
# withdrawn (withdrawn_at <= time means withdrawn: a withdrawal takes effect at once).
# When several records exist, one valid record is enough. When none is valid, the reasons come
# from the records closest to valid: of the right kind and scope first, then of the right kind,
# then any. Malformed records are never used (see input.rego).

package tillit.exchange

_required_kind := _purpose.required_consent if is_string(_purpose.required_consent)

default _consents := []

_consents := input.consents if is_array(input.consents)

# Well-formed records, keyed by their position in input.consents.
_records[i] := record if {
	some i, record in _consents
	is_object(record)
	count(_record_errors(record)) == 0
}

_scope_expected := {
	"requester": _agency_id,
	"service": _service_id,
	"provider": _provider_id,
	"dataset": _dataset_id,
	"purpose": _purpose_id,
}

_scope_gap contains [i, key] if {
	some i, record in _records
	some key, expected in _scope_expected
	record[key] != expected
}

_scope_gap contains [i, "fields"] if {
	some i, record in _records
	some field in _releasable
	not field in record.fields
}

_problem contains [i, "CONSENT_SCOPE_MISMATCH"] if some [i, _] in _scope_gap

_problem contains [i, "CONSENT_NOT_YET_VALID"] if {
	some i, record in _records
	some key in ["given_at", "valid_from"]
	time.parse_rfc3339_ns(record[key]) > _now
}

_problem contains [i, "CONSENT_EXPIRED"] if {
	some i, record in _records
	is_string(record.valid_until)
	time.parse_rfc3339_ns(record.valid_until) <= _now
}

_problem contains [i, "CONSENT_WITHDRAWN"] if {
	some i, record in _records
	is_string(record.withdrawn_at)
	time.parse_rfc3339_ns(record.withdrawn_at) <= _now
}

_flawed contains i if some [i, _] in _problem

# Records that are in scope, in time and given by the right person; of any kind.
_sound contains i if {
	_time_known
	some i, _ in _records
	not i in _flawed
}

_valid_required contains i if {
	some i in _sound
	_records[i].kind == _required_kind
}

# Explicit consent in the sense of Art. 9(2)(a).
_valid_explicit contains i if {
	some i in _sound
	_records[i].kind == "consent"
	_records[i].explicit == true
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
_newest(indexes) := max({[time.parse_rfc3339_ns(_records[i].given_at), _records[i].id] | some i in indexes})[1]

# How far a record is from covering this request: 0 right kind and scope, 1 right kind,
# 2 or 3 wrong kind.
_distance[i] := distance if {
	_required_kind
	count(_valid_required) == 0
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
