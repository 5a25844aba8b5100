# Protected identity (part of package tillit.exchange).
#
# A subject with a protected identity (skyddade personuppgifter: sekretessmarkering,
# skyddad folkbokföring) must never have an address-like field released, whatever the
# purpose, because disclosure could put the person at risk (GDPR Art. 5(1)(f), Art. 32).
# Such fields are withheld from `permitted_fields` and the request is denied, saying so,
# so that the requester handles the case manually with the data holder.
# Fail closed: unless the broker says protected_identity is false, the subject is treated
# as protected.

package tillit.exchange

_protected_identity if object.get(_request, ["subject", "protected_identity"], true) != false

_withheld contains field if {
	_protected_identity
	some field in _requested
	_dataset.fields[field].address_like == true
}

_deny contains _reason("PROTECTED_IDENTITY", msg) if {
	count(_withheld) > 0
	msg := sprintf(
		"The subject has a protected identity, so address-like fields (%v) are never released through Tillit.",
		[_list(sort(_withheld))],
	)
}
