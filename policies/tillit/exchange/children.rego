# Children (part of package tillit.exchange).
#
# A child cannot give a valid consent, explicit request or waiver on their own: when the subject
# is below the age the purpose sets (default 18, the Swedish age of majority), the record must
# be given by a guardian (given_by "guardian"). Conversely, for an adult the record must be
# given by the subject personally. Purposes that need no record (legal obligation, public task
# without a consent requirement) are not affected.

package tillit.exchange

default _guardian_age := 18

_guardian_age := _purpose.guardian_consent_below_age if is_number(_purpose.guardian_consent_below_age)

_child if {
	is_number(input.subject.age)
	input.subject.age < _guardian_age
}

_problem contains [i, "GUARDIAN_CONSENT_REQUIRED"] if {
	_child
	some i, record in _records
	record.given_by != "guardian"
}

_problem contains [i, "CONSENT_NOT_GIVEN_BY_SUBJECT"] if {
	not _child
	some i, record in _records
	record.given_by != "subject"
}
