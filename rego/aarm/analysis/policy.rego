# METADATA
# title: Analysed parameters (input.analysis)
# description: |
#   The parsed facts the service hands policy for every parameter the catalogue types
#   (analysis key: sql, sql_condition, shell, url, host, email, path, amount, name), and
#   the lookups the other packages decide with: the facts of a parameter, every SQL and
#   shell facts document the action carries (nested SQL in a shell command included),
#   and whether a name is production-like (config.production). Tier 2 DENY, code
#   parameter_unparsed: a declared parameter whose value does not parse (its most
#   dangerous reading would otherwise be decided on), or that reached policy without
#   facts (the service and the policy disagree about the catalogue). No parsing here:
#   the service parses with the languages' real parsers; Rego reads the facts.
# related_resources:
#   - ref: docs/policies/analysis.md
#     description: analysis policy page
#   - ref: docs/analysis.md
#     description: the facts each type yields
# schemas:
#   - input: schema.input
package aarm.analysis

import data.aarm.layers

import data.aarm.catalogue
import data.aarm.explain

_production := layers.config.production

_params := input.action.parameters

_facts := object.get(input, ["analysis", "parameters"], {})

# METADATA
# title: declared
# description: |
#   The catalogue's analysis declaration of each parameter of this tool, as
#   {"type": <type>, "companions": {<role>: <parameter>}} (a bare type string has no
#   companions).
declared[param] := _declaration(spec.analysis) if {
	some param, spec in catalogue.entry.parameters
	spec.analysis
}

_declaration(spec) := {"type": spec, "companions": {}} if is_string(spec)

_declaration(spec) := {"type": spec.type, "companions": object.remove(spec, ["type"])} if is_object(spec)

# METADATA
# title: facts
# description: The facts document of each declared parameter that has one.
facts[param] := f if {
	some param, _ in declared
	f := _facts[param]
}

# METADATA
# title: values
# description: |
#   Every facts document of a declared parameter: its items for a list value (one per
#   recipient, attendee, ...), else the one document; [] without facts.
values(param) := f.items if {
	f := facts[param]
	is_array(f.items)
} else := [f] if {
	f := facts[param]
} else := []

# METADATA
# title: given
# description: True when the action gives parameter param a value (not absent, not null).
given(param) if {
	is_object(_params)
	_params[param] != null
}

# METADATA
# title: sql
# description: |
#   Every SQL facts document of the action, each {"param", "facts", "connection"}:
#   sql and sql_condition parameters with the parameters their companions name
#   (database, environment: where the SQL runs), and the SQL a shell command hands a
#   client (psql -c, mysql -e), whose connection is not known (connection {}).
sql contains {"param": param, "facts": facts[param], "connection": d.companions, "nested": false} if {
	some param, d in declared
	d.type in {"sql", "sql_condition"}
	facts[param]
}

sql contains {"param": param, "facts": nested, "connection": {}, "nested": true} if {
	some param, d in declared
	d.type == "shell"
	some nested in object.get(facts, [param, "sql"], [])
}

# METADATA
# title: shell
# description: Every shell facts document of the action, each {"param", "facts"}.
shell contains {"param": param, "facts": facts[param]} if {
	some param, d in declared
	d.type == "shell"
	facts[param]
}

# METADATA
# title: production_name
# description: |
#   True when name facts (a name parameter's, or input.analysis.names[raw] for a
#   database or schema a statement targets) read as production: a token of the
#   normalised, confusable-folded name is a configured production name, or such a name
#   with a configured suffix (proddb). A name that does not parse is production (its
#   most dangerous reading).
production_name(f) if f.parsed == false

production_name(f) if {
	some token in f.tokens
	token in _production_tokens
}

_production_tokens := {name | some name in _production.names} | {concat("", [name, suffix]) |
	some name in _production.names
	some suffix in _production.suffixes
}

# METADATA
# title: production_target
# description: |
#   True when the raw database or schema name a statement targets reads as production
#   (its facts are in input.analysis.names; a name without facts counts as production).
production_target(raw) if production_name(input.analysis.names[raw])

production_target(raw) if {
	is_string(raw)
	not input.analysis.names[raw]
}

# METADATA
# title: production_param
# description: |
#   True when parameter param is given and reads as production: its name facts do, or
#   it was not analysed (nothing proves it is not production).
production_param(param) if {
	given(param)
	production_name(facts[param])
}

production_param(param) if {
	given(param)
	not facts[param]
}

# METADATA
# title: deny_reasons
# description: Tier 2 DENY reasons for declared parameters that did not parse or have no facts.
# custom:
#   rule_id: aarm.analysis.unparsed
#   code: parameter_unparsed
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("a value that parses as %s", [declared[param].type])), sprintf(
	"%s parameter %q does not parse as %s (%s); a value that cannot be read is judged at its most dangerous reading and not run",
	[input.action.name, param, declared[param].type, _why(param)],
)) if {
	some param in object.get(input, ["analysis", "unparsed"], [])
	declared[param]
}

# METADATA
# custom:
#   rule_id: aarm.analysis.missing
#   code: parameter_unparsed
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("catalogue", "the service analysing the parameter: it and the policy read different catalogues"), sprintf(
	"%s parameter %q is declared %s in the catalogue but reached policy without analysis facts",
	[input.action.name, param, d.type],
)) if {
	some param, d in declared
	given(param)
	not _facts[param]
}

_why(param) := concat(", ", sort({reason |
	some f in values(param)
	f.parsed == false
	reason := object.get(f, "reason", "unparsed")
} | {"too many items" | facts[param].truncated == true}))

_reason(meta, param, would_change, message) := explain.reason(meta, message, param, null, would_change)
