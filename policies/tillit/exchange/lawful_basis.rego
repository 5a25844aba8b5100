# Lawful basis (part of package tillit.exchange).
#
# GDPR Art. 6. The lawful basis comes from the purpose registry, never from the requester.
# For a legal obligation (6(1)(c)) or a public task (6(1)(e)) the basis must be laid down by law
# (Art. 6(3)): the registry holds the statute and the request must cite exactly that statute.
# For a consent purpose (6(1)(a)) the request cites the article, e.g. "GDPR Art. 6(1)(a)".
# Whether a consent, explicit request or waiver of confidentiality is on record is decided in
# consent.rego; these are kept apart from the GDPR basis (Recital 43).

package tillit.exchange

_statute_kinds := {"legal_obligation", "public_task"}

_basis := object.get(_purpose, "lawful_basis", {})

_deny contains _reason("LEGAL_BASIS_MISMATCH", _legal_basis_problem)

_legal_basis_problem := sprintf(
	"The purpose '%v' relies on GDPR Art. %v, which must be laid down by law, but the registry names no statute for it.",
	[_purpose_id, object.get(_basis, "article", "?")],
) if {
	_basis.kind in _statute_kinds
	not _non_empty_string(object.get(_basis, "statute", null))
} else := sprintf(
	"The request cites '%v' as its legal basis, but the purpose '%v' rests on '%v'.",
	[object.get(_request, "legal_basis", ""), _purpose_id, _expected_citation],
) if {
	object.get(_request, "legal_basis", "") != _expected_citation
} else := sprintf(
	"The purpose '%v' has no usable lawful basis in the registry.",
	[_purpose_id],
) if {
	_purpose
	not _expected_citation
}

_expected_citation := _basis.statute if {
	_basis.kind in _statute_kinds
} else := sprintf("GDPR Art. %v", [_basis.article]) if {
	_basis.kind == "consent"
}

default _lawful_basis_out := null

_lawful_basis_out := {
	"article": _basis.article,
	"kind": _basis.kind,
	"statute": object.get(_basis, "statute", null),
}

_non_empty_string(value) if {
	is_string(value)
	value != ""
}
