# METADATA
# title: Parameter validation, blocking and modification
# description: |
#   Checks the action's parameters against the catalogue schema of its tool.
#   Tier 2 (DENY): a value that is missing, of the wrong type, out of range, not
#   matching its pattern or enum (code parameter_invalid), or on a block list / off an
#   allow list such as the egress domain lists (code parameter_blocked).
#   Tier 7 (MODIFY): a value above its cap, or a capped value left out, is replaced and
#   the whole corrected parameter object is returned (code parameter_modified).
# related_resources:
#   - ref: docs/policies/params.md
#     description: params policy page
# schemas:
#   - input: schema.input
package aarm.params

import data.aarm.catalogue

_egress := data.aarm.config.params.egress

_name := input.action.name

_params := input.action.parameters

_specs := catalogue.entry.parameters

# METADATA
# title: deny_reasons
# description: DENY reasons for invalid or blocked parameter values.
# custom:
#   rule_id: aarm.params.not_an_object
#   code: parameter_invalid
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
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
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s parameter %q value %q matches blocked pattern %s",
	[_name, param, text, pattern],
)) if {
	some param, value in _given
	spec := _specs[param]
	some text in _strings(value)
	some pattern in spec.blocked_patterns
	regex.match(pattern, text)
}

# METADATA
# custom:
#   rule_id: aarm.params.egress_blocklist
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s parameter %q sends to %q, and domain %q is on the egress block list",
	[_name, param, text, domain],
)) if {
	some param, value in _given
	kind := _specs[param].egress.kind
	some text in _strings(value)
	domain := _domain(kind, text)
	_domain_in(domain, _egress.blocked_domains)
}

# METADATA
# custom:
#   rule_id: aarm.params.egress_allowlist
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s parameter %q sends to %q, and domain %q is not internal or on the egress allow list",
	[_name, param, text, domain],
)) if {
	some param, value in _given
	egress := _specs[param].egress
	egress.mode == "allowlist"
	some text in _strings(value)
	domain := _domain(egress.kind, text)
	not _domain_in(domain, array.concat(_egress.internal_domains, _egress.allowed_domains))
}

# METADATA
# title: modify_reasons
# description: MODIFY reasons, one per parameter that was capped or filled in.
# custom:
#   rule_id: aarm.params.cap
#   code: parameter_modified
modify_reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s parameter %q lowered from %v to the cap %v",
	[_name, param, _given[param], cap],
)) if {
	some param, cap in _capped
}

# METADATA
# custom:
#   rule_id: aarm.params.default_value
#   code: parameter_modified
modify_reasons contains _reason(rego.metadata.rule(), sprintf(
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

# METADATA
# title: domain
# description: The lower-cased domain of an e-mail address (kind "email") or URL (kind "url"); "" when none.
domain(kind, text) := _domain(kind, text)

# METADATA
# title: domain_in
# description: True when a domain equals, or is a subdomain of, an entry of the list.
domain_in(domain, domains) if _domain_in(domain, domains)

_reason(meta, message) := {
	"code": meta.custom.code,
	"rule_id": meta.custom.rule_id,
	"message": message,
}

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

_domain("email", text) := _email_domain(text)

_domain("url", text) := _url_domain(text)

_email_domain(text) := trim(parts[count(parts) - 1], " <>.") if {
	parts := split(lower(trim_space(text)), "@")
	count(parts) > 1
} else := ""

_url_domain(text) := trim_right(lower(match[0][1]), ".") if {
	match := regex.find_all_string_submatch_n(
		`^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?\[?([^/:?#\]]+)`,
		trim_space(text),
		1,
	)
	count(match) == 1
} else := ""

_domain_in(domain, domains) if {
	domain != ""
	some listed in domains
	_domain_matches(domain, lower(listed))
}

_domain_matches(domain, listed) if domain == listed

_domain_matches(domain, listed) if endswith(domain, concat("", [".", listed]))
