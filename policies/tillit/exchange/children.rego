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

default _expected_giver := "subject"

_expected_giver := "guardian" if _child

_problem contains [i, _giver_problem] if {
	_consent_failed
	some i, record in _records
	record.given_by != _expected_giver
}

default _giver_problem := "CONSENT_NOT_GIVEN_BY_SUBJECT"

_giver_problem := "GUARDIAN_CONSENT_REQUIRED" if _child
