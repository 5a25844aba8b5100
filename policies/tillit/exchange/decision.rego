# METADATA
# title: Tillit exchange decision
# description: >-
#   Decides whether one once-only exchange may happen under the GDPR:
#   purpose limitation and requester authorisation (Art. 5(1)(b)), lawful basis (Art. 6),
#   data minimisation (Art. 5(1)(c)), consent validity (Art. 7), special categories (Art. 9),
#   children, protected identities and transfers outside the EU/EEA (Art. 44-45).
#   Each rule lives in its own file of this package and adds its deny reasons to `_deny`;
#   this file assembles the decision. Registry documents (agencies, purposes, datasets,
#   transfers) are data under data.tillit.registry, never code.
# related_resources:
#   - description: GDPR (Regulation (EU) 2016/679)
#     ref: https://eur-lex.europa.eu/eli/reg/2016/679/oj
package tillit.exchange

# METADATA
# title: Decision
# description: >-
#   The complete decision for one exchange request. Always defined. `reasons` lists every
#   deny reason sorted by code; `allow` is true only when there is none.
# entrypoint: true
decision := object.union(
	{
		"allow": allow,
		"reasons": reasons,
		"permitted_fields": permitted_fields,
		"excess_fields": excess_fields,
		"lawful_basis": _lawful_basis_out,
		"consent_id": _consent_id,
		"obligations": _obligations,
	},
	_revision,
)

# METADATA
# title: Allow
# description: True only when no deny reason applies.
# scope: document
default allow := false

# The second condition is redundant with the consent reasons; it is kept as a second lock.
allow if {
	count(_deny) == 0
	not _consent_failed
}

# METADATA
# title: Reasons
# description: Every deny reason, as {code, message, article}, sorted by code.
reasons := [r |
	some code in sort({reason.code | some reason in _deny})
	some r in _deny
	r.code == code
]

# The policy revision the broker pushed (data.tillit.meta.revision), echoed for the audit log.
default _revision := {}

_revision := {"revision": data.tillit.meta.revision}

default _obligations := []

_obligations := [{"type": "retention", "days": _purpose.retention_days}] if is_number(_purpose.retention_days)

# One GDPR reference per reason code, so that a DPO can read the mapping in one place.
_articles := {
	"CONSENT_EXPIRED": "GDPR Art. 7(1)",
	"CONSENT_KIND_MISMATCH": "GDPR Art. 7(1)",
	"CONSENT_MISSING": "GDPR Art. 7(1)",
	"CONSENT_NOT_GIVEN_BY_SUBJECT": "GDPR Art. 4(11)",
	"CONSENT_NOT_YET_VALID": "GDPR Art. 7(1)",
	"CONSENT_SCOPE_MISMATCH": "GDPR Art. 4(11)",
	"CONSENT_WITHDRAWN": "GDPR Art. 7(3)",
	"DATASET_NOT_ALLOWED_FOR_PURPOSE": "GDPR Art. 5(1)(b)",
	"FIELDS_NOT_PERMITTED": "GDPR Art. 5(1)(c)",
	"GUARDIAN_CONSENT_REQUIRED": "GDPR Art. 8(1)",
	"INPUT_INVALID": "GDPR Art. 5(2)",
	"LEGAL_BASIS_MISMATCH": "GDPR Art. 6(1), 6(3)",
	"PROTECTED_IDENTITY": "GDPR Art. 5(1)(f)",
	"PROVIDER_MISMATCH": "GDPR Art. 5(1)(b)",
	"REQUESTER_NOT_AUTHORISED": "GDPR Art. 5(1)(b)",
	"SPECIAL_CATEGORY_BASIS_MISSING": "GDPR Art. 9(1)",
	"TRANSFER_NOT_ADEQUATE": "GDPR Art. 44, 45",
	"UNKNOWN_DATASET": "GDPR Art. 5(1)(b)",
	"UNKNOWN_PURPOSE": "GDPR Art. 5(1)(b)",
}

# A reason must never vanish for want of a table entry: that would turn a denial into an allow.
_reason(code, message) := {"code": code, "message": message, "article": object.get(_articles, code, "GDPR Art. 5")}

# Negating a call on an undefined value is not true in Rego (`not f(x)` fails when x is
# undefined), so every lookup below goes through a defined value: `_request` is always an object.
default _request := {}

_request := input if _input_is_object

_input_is_object if is_object(input)

# Request values with a neutral fallback, so that messages stay defined for malformed input
# (which is denied separately with INPUT_INVALID).
_purpose_id := object.get(_request, "purpose", "")

_dataset_id := object.get(_request, "dataset", "")

_provider_id := object.get(_request, "provider", "")

_agency_id := object.get(_request, ["requester", "agency"], "")

_service_id := object.get(_request, ["requester", "service"], "")

_purpose := data.tillit.registry.purposes[_purpose_id]

_dataset := data.tillit.registry.datasets[_dataset_id]

_agency := data.tillit.registry.agencies[_agency_id]

_now := time.parse_rfc3339_ns(input.time)

# Tested through a rule for the same reason as `_request`.
_time_known if is_number(_now)

# "a, b and c" for messages.
_list(items) := concat(", ", items) if count(items) < 2

_list(items) := sprintf("%s and %s", [concat(", ", array.slice(items, 0, last)), items[last]]) if {
	count(items) > 1
	last := count(items) - 1
}
