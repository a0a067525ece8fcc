# METADATA
# title: Tool catalogue
# description: |
#   Lookup of the action in the tool catalogue (layers.tools, keyed by
#   "tool.operation") and a lint of the catalogue data itself. Every other package reads
#   the catalogue through the rules here.
# related_resources:
#   - ref: docs/policies/catalogue.md
#     description: catalogue policy page
# schemas:
#   - input: schema.input
package aarm.catalogue

import data.aarm.layers

# METADATA
# title: entry
# description: The catalogue entry for input.action.name; undefined for an unknown tool.
entry := layers.tool(input.action.name)

# METADATA
# title: known
# description: True when the action names a catalogued tool.
known if entry

# METADATA
# title: category
# description: The tool's category, "unknown" for a tool not in the catalogue.
category := entry.category if known

else := "unknown"

# METADATA
# title: risk_tier
# description: The tool's risk tier, "unknown" for a tool not in the catalogue.
risk_tier := entry.risk_tier if known

else := "unknown"

# METADATA
# title: output_trust
# description: |
#   Whether the tool's output is trusted ("trusted") or may carry attacker-controlled
#   text ("untrusted"); "untrusted" for a tool not in the catalogue. The service reads
#   the same field to record provenance and session.untrusted_content.
output_trust := entry.output_trust if known

else := "untrusted"

# METADATA
# title: parameters
# description: The parameters the catalogue declares for the action's tool ({} for an unknown tool).
parameters := entry.parameters if is_object(entry.parameters)

else := {}

# METADATA
# title: parameters_of
# description: |
#   The names of the action tool's parameters whose declared semantic type
#   (a type of semantic_types: amount, path, sql, role, ...) is one of types (a set).
#   Rules decide from these declarations, never from a tool's name.
parameters_of(types) := {param |
	some param, spec in parameters
	spec.semantic in types
}

# METADATA
# title: declares
# description: True when the action's tool declares a parameter of one of the semantic types.
declares(types) if count(parameters_of(types)) > 0

# METADATA
# title: errors
# description: |
#   Problems in the catalogue data (unknown category, tier, type or semantic type,
#   invalid regex, malformed egress, cap, analysis, schemes or per-parameter policy
#   keys: approval_above, approval_pattern, bulk, classify). Tests require this set to
#   be empty.
errors contains sprintf("%s: unknown category %v", [name, tool.category]) if {
	some name, tool in layers.tools
	not _known_category(tool)
}

errors contains sprintf("%s: unknown risk_tier %v", [name, tool.risk_tier]) if {
	some name, tool in layers.tools
	not _known_tier(tool)
}

errors contains sprintf("%s: name is not tool.operation", [name]) if {
	some name, _ in layers.tools
	not regex.match(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`, name)
}

errors contains sprintf("%s: parameters is not an object", [name]) if {
	some name, tool in layers.tools
	not _has_parameters(tool)
}

errors contains sprintf("%s.%s: unknown type %v", [name, param, type_name]) if {
	some name, param
	spec := _specs[name][param]
	some type_name in _declared_types(spec)
	not type_name in data.aarm.catalogue.parameter_types
}

errors contains sprintf("%s.%s: unknown semantic %v (semantic_types: %s)", [name, param, spec.semantic, concat(", ", data.aarm.catalogue.semantic_types)]) if {
	some name, param
	spec := _specs[name][param]
	spec.semantic
	not spec.semantic in data.aarm.catalogue.semantic_types
}

errors contains sprintf("%s.%s: semantic %s needs \"analysis\": one of %v (the rules decide on its parsed facts)", [name, param, spec.semantic, needed]) if {
	some name, param
	spec := _specs[name][param]
	needed := data.aarm.catalogue.semantic_analysis[spec.semantic]
	not _analysis_type(object.get(spec, "analysis", "")) in needed
}

errors contains sprintf("%s.%s: approval_above must be a number on an amount or count parameter", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	limit := spec.approval_above
	not _valid_approval_above(spec, limit)
}

errors contains sprintf("%s.%s: approval_pattern must be a valid regex on a role parameter", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	pattern := spec.approval_pattern
	not _valid_approval_pattern(spec, pattern)
}

errors contains sprintf("%s.%s: bulk must be a boolean on a flag parameter", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	bulk := spec.bulk
	not _valid_bulk(spec, bulk)
}

errors contains sprintf("%s.%s: classify must be \"table\" (the value names a table of classification.tables)", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	spec.classify
	not spec.classify == "table"
}

errors contains sprintf("%s.%s: invalid regex %v", [name, param, pattern]) if {
	some name, param
	spec := _specs[name][param]
	some pattern in _patterns(spec)
	not regex.is_valid(pattern)
}

errors contains sprintf("%s.%s: egress needs kind email|url and mode allowlist|blocklist", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	egress := spec.egress
	not _valid_egress(egress)
}

errors contains sprintf("%s.%s: cap must be a number", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	cap := spec.cap
	not is_number(cap)
}

errors contains sprintf("%s.%s: default_value above cap", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	spec.default_value > spec.cap
}

errors contains sprintf("%s: output_trust must be trusted or untrusted", [name]) if {
	some name, tool in layers.tools
	not _known_trust(tool)
}

errors contains sprintf("%s: reads_data must be a boolean", [name]) if {
	some name, tool in layers.tools
	flag := tool.reads_data
	not is_boolean(flag)
}

errors contains sprintf("%s: requires_facts must be a list of fact names", [name]) if {
	some name, tool in layers.tools
	facts := tool.requires_facts
	not _string_list(facts)
}

errors contains sprintf("%s.%s: analysis must be a type of analysis_types (%s) or {\"type\": <type>, <role>: <parameter>}", [name, param, concat(", ", sort(object.keys(data.aarm.catalogue.analysis_types)))]) if {
	some name, param
	spec := _specs[name][param]
	spec.analysis
	not _known_analysis(spec.analysis)
}

errors contains sprintf("%s.%s: analysis type %s takes no companion %q (allowed: %v)", [name, param, kind, role, allowed]) if {
	some name, param
	spec := _specs[name][param]
	kind := _analysis_type(spec.analysis)
	allowed := data.aarm.catalogue.analysis_types[kind]
	some role, _ in object.remove(spec.analysis, ["type"])
	not role in allowed
}

errors contains sprintf("%s.%s: analysis companion %q names %v, which is not a parameter of the tool", [name, param, role, other]) if {
	some name, param
	spec := _specs[name][param]
	is_object(spec.analysis)
	some role, other in object.remove(spec.analysis, ["type"])
	not _specs[name][other]
}

errors contains sprintf("%s.%s: egress of kind %s needs \"analysis\": %q (egress is decided on the parsed facts)", [name, param, spec.egress.kind, spec.egress.kind]) if {
	some name, param
	spec := _specs[name][param]
	spec.egress.kind in {"email", "url"}
	not _analysis_type(object.get(spec, "analysis", "")) == spec.egress.kind
}

errors contains sprintf("%s.%s: schemes must be a list of URL schemes on a parameter with \"analysis\": \"url\"", [name, param]) if {
	some name, param
	spec := _specs[name][param]
	schemes := spec.schemes
	not _valid_schemes(spec, schemes)
}

_valid_approval_above(spec, limit) if {
	is_number(limit)
	spec.semantic in {"amount", "count"}
}

_valid_approval_pattern(spec, pattern) if {
	is_string(pattern)
	regex.is_valid(pattern)
	spec.semantic == "role"
}

_valid_bulk(spec, bulk) if {
	is_boolean(bulk)
	spec.semantic == "flag"
}

_known_analysis(spec) if data.aarm.catalogue.analysis_types[_analysis_type(spec)]

_analysis_type(spec) := spec if is_string(spec)

_analysis_type(spec) := spec.type if is_object(spec)

_valid_schemes(spec, schemes) if {
	_analysis_type(spec.analysis) == "url"
	_string_list(schemes)
}

_specs[name][param] := spec if {
	some name, tool in layers.tools
	some param, spec in tool.parameters
}

_declared_types(spec) := ({t | t := spec.type; is_string(t)} | {t | is_array(spec.type); some t in spec.type}) | {t | t := spec.items_type}

_patterns(spec) := array.concat([spec.pattern], object.get(spec, "blocked_patterns", [])) if is_string(spec.pattern)

else := object.get(spec, "blocked_patterns", [])

_valid_egress(egress) if {
	egress.kind in {"email", "url"}
	egress.mode in {"allowlist", "blocklist"}
}

_string_list(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

_known_category(tool) if tool.category in data.aarm.catalogue.categories

_known_trust(tool) if tool.output_trust in {"trusted", "untrusted"}

_known_tier(tool) if tool.risk_tier in data.aarm.catalogue.risk_tiers

_has_parameters(tool) if is_object(tool.parameters)
