# Transfers outside the EU/EEA (part of package tillit.exchange).
#
# GDPR Art. 44-45: personal data may go to a country outside the EU/EEA only on the basis of
# an adequacy decision that covers the recipient. Requesters are public authorities, so an
# adequacy decision limited to certified or commercial organisations does not count.
# The destination is every country known for the requester: the one the broker reports and
# the one in the agency registry. If none is known, the transfer is refused (fail closed).

package tillit.exchange

_destinations contains upper(country) if {
	country := _request.requester.country
	is_string(country)
}

_destinations contains upper(_agency.country) if is_string(_agency.country)

_inadequate contains country if {
	some country in _destinations
	not data.tillit.registry.transfers.eea_countries[country]
	not _adequate(country)
}

_adequate(country) if data.tillit.registry.transfers.adequate_countries[country].covers_public_authorities == true

_deny contains _reason("TRANSFER_NOT_ADEQUATE", msg) if {
	count(_destinations) == 0
	msg := "The requester's country is unknown, so a transfer outside the EU/EEA cannot be ruled out."
}

_deny contains _reason("TRANSFER_NOT_ADEQUATE", msg) if {
	count(_inadequate) > 0
	msg := sprintf(
		"The requester is in %v, outside the EU/EEA and without an adequacy decision that covers public authorities.",
		[_list(sort(_inadequate))],
	)
}
