# METADATA
# title: Registry consistency
# description: >-
#   Checks that the registry documents (agencies, datasets, purposes, transfers) agree with one
#   another and with the GDPR rules that tillit.exchange relies on. The exchange decision fails
#   closed on inconsistent data anyway; this check lets CI and the data protection officer find
#   a mistake before a citizen meets it. `violations` is empty for the shipped registry.
package tillit.registry.consistency

_agencies := data.tillit.registry.agencies

_datasets := data.tillit.registry.datasets

_purposes := data.tillit.registry.purposes

_basis_articles := {"consent": "6(1)(a)", "legal_obligation": "6(1)(c)", "public_task": "6(1)(e)"}

_consent_kinds := {"consent", "explicit_request", "waiver_of_confidentiality"}

# METADATA
# title: Violations
# description: One plain-language sentence per inconsistency in the registry; empty when consistent.
# scope: document
# entrypoint: true
violations contains sprintf("agency '%v': country must be a two-letter ISO 3166 code", [id]) if {
	some id, agency in _agencies
	not regex.match(`^[A-Z]{2}$`, object.get(agency, "country", ""))
}

violations contains sprintf("dataset '%v': provider '%v' is not a registered provider agency", [id, provider]) if {
	some id, dataset in _datasets
	provider := object.get(dataset, "provider", "")
	not "provider" in object.get(_agencies, [provider, "roles"], [])
}

violations contains sprintf("purpose '%v': %v is missing", [id, key]) if {
	some id, purpose in _purposes
	some key in ["title", "description", "requesters", "datasets", "lawful_basis", "retention_days"]
	not _present(object.get(purpose, key, null))
}

violations contains sprintf("purpose '%v': requester %v/%v is not a registered e-service", [id, agency, service]) if {
	some id, purpose in _purposes
	some requester in object.get(purpose, "requesters", [])
	agency := object.get(requester, "agency", "")
	service := object.get(requester, "service", "")
	not service in object.keys(object.get(_agencies, [agency, "services"], {}))
}

violations contains sprintf("purpose '%v': requester agency %v lacks the requester role", [id, agency]) if {
	some id, purpose in _purposes
	some requester in object.get(purpose, "requesters", [])
	agency := object.get(requester, "agency", "")
	not "requester" in object.get(_agencies, [agency, "roles"], [])
}

violations contains sprintf("purpose '%v': dataset '%v' is not in the dataset registry", [id, dataset]) if {
	some id, purpose in _purposes
	some dataset, _ in object.get(purpose, "datasets", {})
	not dataset in object.keys(_datasets)
}

violations contains sprintf("purpose '%v': dataset '%v' has no field '%v'", [id, dataset, field]) if {
	some id, purpose in _purposes
	some dataset, fields in object.get(purpose, "datasets", {})
	dataset in object.keys(_datasets)
	some field in fields
	not field in object.keys(_datasets[dataset].fields)
}

violations contains msg if {
	some id, purpose in _purposes
	kind := object.get(purpose, ["lawful_basis", "kind"], "")
	not kind in object.keys(_basis_articles)
	kinds := concat(", ", sort(object.keys(_basis_articles)))
	msg := sprintf("purpose '%v': lawful basis kind '%v' must be one of %v", [id, kind, kinds])
}

violations contains sprintf("purpose '%v': a %v basis is GDPR Art. %v, not '%v'", [id, kind, article, cited]) if {
	some id, purpose in _purposes
	some kind, article in _basis_articles
	purpose.lawful_basis.kind == kind
	cited := object.get(purpose, ["lawful_basis", "article"], "")
	cited != article
}

violations contains sprintf("purpose '%v': a %v basis must name its statute (Art. 6(3))", [id, kind]) if {
	some id, purpose in _purposes
	kind := purpose.lawful_basis.kind
	kind in {"legal_obligation", "public_task"}
	not _present(object.get(purpose, ["lawful_basis", "statute"], null))
}

violations contains msg if {
	some id, purpose in _purposes
	required := object.get(purpose, "required_consent", null)
	required != null
	not required in _consent_kinds
	msg := sprintf("purpose '%v': required_consent must be null or one of %v", [id, concat(", ", sort(_consent_kinds))])
}

violations contains msg if {
	some id, purpose in _purposes
	purpose.lawful_basis.kind == "consent"
	object.get(purpose, "required_consent", null) != "consent"
	msg := sprintf("purpose '%v': a consent basis (Art. 6(1)(a)) must require a record of kind consent", [id])
}

violations contains sprintf("purpose '%v': retention_days must be a whole number of days above 0", [id]) if {
	some id, purpose in _purposes
	days := object.get(purpose, "retention_days", 0)
	not _positive_integer(days)
}

violations contains sprintf("purpose '%v': guardian_consent_below_age must be a number of years above 0", [id]) if {
	some id, purpose in _purposes
	age := object.get(purpose, "guardian_consent_below_age", 18)
	not _positive_integer(age)
}

violations contains sprintf("purpose '%v': art9_basis must be an Art. 9(2)(b)-(j) basis with a statute", [id]) if {
	some id, purpose in _purposes
	basis := object.get(purpose, "art9_basis", null)
	basis != null
	not _art9_basis(basis)
}

violations contains msg if {
	some id, purpose in _purposes
	object.get(purpose, "art9_basis", null) == null
	object.get(purpose, "required_consent", null) != "consent"
	some dataset, fields in object.get(purpose, "datasets", {})
	some field in fields
	object.get(_datasets, [dataset, "fields", field, "special_category"], false)
	msg := sprintf("purpose '%v': special category field '%v' needs an art9_basis or a consent purpose", [id, field])
}

_present(value) if {
	value != null
	value != ""
	value != []
	value != {}
}

_positive_integer(value) if {
	is_number(value)
	value > 0
	round(value) == value
}

_art9_basis(basis) if {
	regex.match(`^9\(2\)\([b-j]\)$`, object.get(basis, "article", ""))
	_present(object.get(basis, "statute", null))
}
