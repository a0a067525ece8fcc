# METADATA
# title: Parameter validation, blocking and modification
# description: |
#   Checks the action's parameters against the catalogue schema of its tool.
#   Tier 2 (DENY): a value that is missing, of the wrong type, out of range, not
#   matching its pattern, enum or URL schemes (code parameter_invalid), or on a block
#   list (code parameter_blocked; a path's block patterns are matched against every
#   reading of the path: as given, resolved, and percent-decoded). Analysed SQL decides
#   the read-only contract: a read tool whose SQL writes, and a filter parameter that
#   carries more than a condition, are parameter_blocked. Egress lists: aarm.egress.
#   Tier 7 (MODIFY): a value above its cap, or a capped value left out, is replaced and
#   the whole corrected parameter object is returned (code parameter_modified).
# related_resources:
#   - ref: docs/policies/params.md
#     description: params policy page
# schemas:
#   - input: schema.input
package aarm.params

import data.aarm.analysis
import data.aarm.catalogue
import data.aarm.explain

_name := input.action.name

_params := input.action.parameters

_specs := catalogue.entry.parameters

# METADATA
# title: deny_reasons
# description: DENY reasons for invalid or blocked parameter values.
# custom:
#   rule_id: aarm.params.not_an_object
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), null, explain.change("value", "parameters given as an object"), sprintf(
	"%s parameters must be an object, got %s",
	[_name, type_name(_params)],
)) if {
	catalogue.known
	not is_object(_params)
}

# METADATA
# custom:
#   rule_id: aarm.params.required
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("a value for parameter %q", [param])), sprintf(
	"%s requires parameter %q, which is missing or null",
	[_name, param],
)) if {
	some param, spec in _specs
	spec.required == true
	not _present(param)
}

# METADATA
# custom:
#   rule_id: aarm.params.unexpected
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("leaving parameter %q out", [param])), sprintf(
	"%s does not accept parameter %q (allowed: %s)",
	[_name, param, concat(", ", sort(object.keys(_specs)))],
)) if {
	catalogue.entry.additional_parameters == false
	some param, _ in _given
	not _specs[param]
}

# METADATA
# custom:
#   rule_id: aarm.params.type
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("a value of type %v", [spec.type])), sprintf(
	"%s parameter %q must be of type %v, got %s",
	[_name, param, spec.type, type_name(value)],
)) if {
	some param, value in _given
	spec := _specs[param]
	not _type_ok(spec, value)
}

# METADATA
# custom:
#   rule_id: aarm.params.type
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("only %s items", [items_type])), sprintf(
	"%s parameter %q must hold only %s items, got %s",
	[_name, param, items_type, type_name(item)],
)) if {
	some param, value in _given
	spec := _specs[param]
	items_type := spec.items_type
	is_array(value)
	some item in value
	not _is_type(items_type, item)
}

# METADATA
# custom:
#   rule_id: aarm.params.range
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.compared("value", sprintf("a value of at least %v", [spec.minimum]), spec.minimum, value), sprintf(
	"%s parameter %q is %v, below the minimum %v",
	[_name, param, value, spec.minimum],
)) if {
	some param, value in _given
	spec := _specs[param]
	is_number(value)
	value < spec.minimum
}

# METADATA
# custom:
#   rule_id: aarm.params.range
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.compared("value", sprintf("a value of at most %v", [spec.maximum]), spec.maximum, value), sprintf(
	"%s parameter %q is %v, above the maximum %v",
	[_name, param, value, spec.maximum],
)) if {
	some param, value in _given
	spec := _specs[param]
	is_number(value)
	value > spec.maximum
}

# METADATA
# custom:
#   rule_id: aarm.params.length
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.compared("value", sprintf("a value of at most %v characters", [spec.max_length]), spec.max_length, count(value)), sprintf(
	"%s parameter %q is %d characters long, above the limit %v",
	[_name, param, count(value), spec.max_length],
)) if {
	some param, value in _given
	spec := _specs[param]
	is_string(value)
	count(value) > spec.max_length
}

# METADATA
# custom:
#   rule_id: aarm.params.length
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.compared("value", sprintf("at most %v items", [spec.max_items]), spec.max_items, count(value)), sprintf(
	"%s parameter %q has %d items, above the limit %v",
	[_name, param, count(value), spec.max_items],
)) if {
	some param, value in _given
	spec := _specs[param]
	is_array(value)
	count(value) > spec.max_items
}

# METADATA
# custom:
#   rule_id: aarm.params.pattern
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("a value matching %s", [pattern])), sprintf(
	"%s parameter %q value %q does not match %s",
	[_name, param, text, pattern],
)) if {
	some param, value in _given
	pattern := _specs[param].pattern
	some text in _strings(value)
	not regex.match(pattern, text)
}

# METADATA
# custom:
#   rule_id: aarm.params.enum
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("one of %v", [spec.enum])), sprintf(
	"%s parameter %q value %v is not one of %v",
	[_name, param, item, spec.enum],
)) if {
	some param, value in _given
	spec := _specs[param]
	is_array(spec.enum)
	some item in _scalars(value)
	not item in spec.enum
}

# METADATA
# custom:
#   rule_id: aarm.params.blocklist
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", "a value that is not on the block list"), sprintf(
	"%s parameter %q value %q is on the block list",
	[_name, param, text],
)) if {
	some param, value in _given
	blocklist := _specs[param].blocklist
	some text in _strings(value)
	lower(text) in {lower(blocked) | some blocked in blocklist}
}

# METADATA
# custom:
#   rule_id: aarm.params.blocklist
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("a value no reading of which matches %s", [pattern])), sprintf(
	"%s parameter %q value %q (read as %q) matches blocked pattern %s",
	[_name, param, text, reading, pattern],
)) if {
	some param, value in _given
	spec := _specs[param]
	some text in _strings(value)
	some reading in _readings(param, text)
	some pattern in spec.blocked_patterns
	regex.match(pattern, reading)
}

# METADATA
# custom:
#   rule_id: aarm.params.scheme
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), param, explain.change("value", sprintf("a URL of scheme %s", [concat(" or ", spec.schemes)])), sprintf(
	"%s parameter %q uses scheme %q; allowed: %s",
	[_name, param, f.scheme, concat(", ", spec.schemes)],
)) if {
	some param, spec in _specs
	is_array(spec.schemes)
	some f in analysis.values(param)
	f.parsed == true
	not f.scheme in spec.schemes
}

# METADATA
# custom:
#   rule_id: aarm.params.read_only_sql
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), s.param, explain.change("value", "SQL that only reads (a change goes through a tool that declares it)"), sprintf(
	"%s is a read tool, and its parameter %q %s; a read tool may only read",
	[_name, s.param, concat(", ", sort(effects))],
)) if {
	catalogue.category == "read"
	some s in analysis.sql
	effects := _sql_write_effects(s.facts)
	count(effects) > 0
}

# METADATA
# custom:
#   rule_id: aarm.params.condition_injection
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), s.param, explain.change("value", "a filter that is one condition and nothing more"), sprintf(
	"%s parameter %q is a filter condition but carries more than a condition (%s)",
	[_name, s.param, concat(", ", object.get(s.facts, "commands", []))],
)) if {
	some s in analysis.sql
	analysis.declared[s.param].type == "sql_condition"
	s.facts.injection == true
}

# METADATA
# title: modify_reasons
# description: MODIFY reasons, one per parameter that was capped or filled in.
# custom:
#   rule_id: aarm.params.cap
#   code: parameter_modified
modify_reasons contains _reason(rego.metadata.rule(), param, null, sprintf(
	"%s parameter %q lowered from %v to the cap %v",
	[_name, param, _given[param], cap],
)) if {
	some param, cap in _capped
}

# METADATA
# custom:
#   rule_id: aarm.params.default_value
#   code: parameter_modified
modify_reasons contains _reason(rego.metadata.rule(), param, null, sprintf(
	"%s parameter %q was not given; set to %v",
	[_name, param, value],
)) if {
	some param, value in _filled
}

# METADATA
# title: modified_parameters
# description: The whole parameter object to run with when the verdict is MODIFY.
modified_parameters := object.union(object.union(_given, _filled), _capped)

# METADATA
# title: strings
# description: |
#   The string values a parameter value holds: the value itself, or the string items of
#   a list. Shared with aarm.composition, which finds a send's destinations.
strings(value) := _strings(value)

_reason(meta, param, would_change, message) := explain.reason(meta, message, param, null, would_change)

# The given parameters without nulls; {} when parameters is not an object.
_given := {param: value |
	is_object(_params)
	some param, value in _params
	value != null
}

_present(param) if _given[param] != null

_capped[param] := spec.cap if {
	some param, spec in _specs
	is_number(spec.cap)
	value := _given[param]
	is_number(value)
	value > spec.cap
}

_filled[param] := spec.default_value if {
	is_object(_params)
	some param, spec in _specs
	spec.default_value != null
	not _present(param)
}

_type_ok(spec, _) if not spec.type

_type_ok(spec, value) if _is_type(spec.type, value)

_type_ok(spec, value) if {
	is_array(spec.type)
	some type_name in spec.type
	_is_type(type_name, value)
}

_is_type("string", value) if is_string(value)

_is_type("integer", value) if {
	is_number(value)
	round(value) == value
}

_is_type("number", value) if is_number(value)

_is_type("boolean", value) if is_boolean(value)

_is_type("array", value) if is_array(value)

_is_type("object", value) if is_object(value)

_strings(value) := [value] if is_string(value)

_strings(value) := [item | some item in value; is_string(item)] if is_array(value)

_scalars(value) := [value] if not is_array(value)

_scalars(value) := value if is_array(value)

# Every reading of a string value: as given, and for an analysed path also resolved
# (.., ., //, ~) and percent-decoded, so a block pattern cannot be walked around.
_readings(param, text) := {text} | {reading |
	some f in analysis.values(param)
	f.type == "path"
	some reading in [f.normalized, object.get(f, "decoded", null)]
	is_string(reading)
}

# What a statement does beyond reading, by the facts (the dangerous reading for SQL
# that does not parse: it writes, destroys and runs programs).
_sql_write_effects(f) := {effect |
	some flag, effect in _write_flags
	f[flag] == true
} | {"calls functions with side effects" | count(object.get(f, "side_effect_functions", [])) > 0}

_write_flags := {
	"writes": "writes",
	"destructive": "destroys data",
	"privilege": "changes privileges",
	"executes_program": "runs a program on the server",
	"server_file": "reads or writes server files",
	"opaque": "runs statements that cannot be seen through",
	"injection": "injects statements",
}
