# Consent deny reasons (part of package tillit.exchange).
#
# Plain-language reasons for the consent rules in consent.rego and children.rego: one reason
# per code, naming the records concerned.

package tillit.exchange

_kind_names := {
	"consent": "the subject's consent",
	"explicit_request": "an explicit request from the subject",
	"waiver_of_confidentiality": "a waiver of confidentiality from the subject",
}

_consent_templates := {
	"CONSENT_EXPIRED": "%v expired before the time of the request; the subject must give a new one.",
	"CONSENT_KIND_MISMATCH": "%v is of the wrong kind.",
	"CONSENT_NOT_GIVEN_BY_SUBJECT": "%v was not given by the subject, who is an adult and must give it personally.",
	"CONSENT_NOT_YET_VALID": "%v was not yet given or valid at the time of the request.",
	"CONSENT_SCOPE_MISMATCH": "%v does not cover this request.",
	"CONSENT_WITHDRAWN": "%v was withdrawn before the time of the request; a withdrawal takes effect at once.",
	"GUARDIAN_CONSENT_REQUIRED": "%v was not given by a guardian, but the subject is a child, so a guardian must give it.",
}

_scope_names := {
	"dataset": "dataset",
	"fields": "fields",
	"provider": "data provider",
	"purpose": "purpose",
	"requester": "requesting agency",
	"service": "e-service",
}

_issue_ids[code] := sort({_records[issue[1]].id | some issue in _consent_issue; issue[0] == code}) if {
	some [code, _] in _consent_issue
}

_consent_details := {
	"CONSENT_KIND_MISMATCH": sprintf("The purpose requires %v.", [_kind_name]),
	"CONSENT_SCOPE_MISMATCH": sprintf("It differs in: %v.", [_list(sort(_closest_gaps))]),
}

_closest_gaps contains object.get(_scope_names, key, key) if {
	some [i, key] in _scope_gap
	i in _closest
}

default _kind_name := "a record from the subject"

_kind_name := object.get(_kind_names, _required_kind, _required_kind)

_records_phrase(ids) := sprintf("The record %v", [ids[0]]) if count(ids) == 1

_records_phrase(ids) := sprintf("Each of the records %v", [_list(ids)]) if count(ids) > 1

_deny contains _reason("CONSENT_MISSING", msg) if {
	_consent_failed
	count(_records) == 0
	msg := sprintf("The purpose '%v' requires %v, and none is on record for this request.", [_purpose_id, _kind_name])
}

# Should no record-specific reason apply (the time of the request is unknown, say), the
# denial still says why.
_deny contains _reason("CONSENT_MISSING", msg) if {
	_consent_failed
	count(_records) > 0
	count(_issue_ids) == 0
	msg := sprintf(
		"The purpose '%v' requires %v, and no record on file can be used for this request.",
		[_purpose_id, _kind_name],
	)
}

_deny contains _reason(code, msg) if {
	some code, ids in _issue_ids
	template := object.get(_consent_templates, code, "%v does not meet the consent rules.")
	sentence := sprintf(template, [_records_phrase(ids)])
	msg := trim_space(concat(" ", [sentence, object.get(_consent_details, code, "")]))
}
