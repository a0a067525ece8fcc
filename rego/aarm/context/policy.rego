# METADATA
# title: Data-driven context rules
# description: |
#   Evaluates layers.config.context_rules: each rule has an id, a priority, a match
#   (action names, tool namespaces or catalogue categories), conditions on input paths
#   (session, facts, identity, parameters) and a decision (ALLOW, DENY or STEP_UP).
#   Only the applicable rules of the highest priority count. If they agree: DENY is a
#   context-dependent DENY (tier 5, code context_rule_denied), STEP_UP a context STEP_UP
#   (tier 6, code context_supported), ALLOW suppresses lower-priority rules. If they
#   disagree, conflict is true and aarm.deferral DEFERs with trigger conflict (AARM R3).
#   A rule that can lower a decision (ALLOW, STEP_UP) holds on a fact only when the
#   fact's source is authoritative for it (aarm.facts); DENY rules take any source.
# related_resources:
#   - ref: docs/policies/context.md
#     description: context policy page
# schemas:
#   - input: schema.input
package aarm.context

import data.aarm.layers

import data.aarm.catalogue
import data.aarm.explain
import data.aarm.facts

_rules := layers.config.context_rules

# METADATA
# title: applicable
# description: The rules whose match and every condition hold for this input.
applicable contains rule if {
	some rule in _rules
	_matches(rule.match)
	every condition in object.get(rule, "conditions", []) {
		_holds(condition)
		_trusted(rule, condition)
	}
}

# A condition on input.facts lets a rule that lowers the decision apply only when the
# fact it reads comes from an authoritative source; a DENY rule may use any fact.
_trusted(rule, _) if rule.decision == "DENY"

_trusted(rule, c) if {
	rule.decision != "DENY"
	every name in _fact_names(c) {
		facts.authoritative[name]
	}
}

_fact_names(c) := {name |
	some path in [c.path, _value_path(c)]
	path[0] == "facts"
	name := path[1]
}

_value_path(c) := c.value if c.op == "eq_path"

else := []

_matches(match) if input.action.name in object.get(match, "names", [])

_matches(match) if input.action.tool in object.get(match, "tools", [])

_matches(match) if catalogue.category in object.get(match, "categories", [])

# A rule may match what a tool declares instead of its name: any parameter of one of
# the semantic types (a "role", an "amount"), so an operator's tools are covered too.
_matches(match) if {
	types := match.semantics
	count(types) > 0 # most rules match by name: no catalogue look-up for them
	catalogue.declares({t | some t in types})
}

_get(path) := value if {
	value := object.get(input, path, null)
	value != null
}

_holds(c) if {
	c.op == "eq"
	_get(c.path) == c.value
}

_holds(c) if {
	c.op == "neq"
	_get(c.path) != c.value
}

_holds(c) if {
	c.op == "in"
	_get(c.path) in c.value
}

_holds(c) if {
	c.op == "matches"
	value := _get(c.path)
	is_string(value)
	regex.match(c.value, value)
}

_holds(c) if {
	c.op == "eq_path"
	_get(c.path) == _get(c.value)
}

_holds(c) if {
	c.op == "gte"
	value := _get(c.path)
	is_number(value)
	value >= c.value
}

_holds(c) if {
	c.op == "lt"
	value := _get(c.path)
	is_number(value)
	value < c.value
}

_holds(c) if {
	c.op == "exists"
	object.get(input, c.path, null) != null
}

# METADATA
# title: top
# description: The applicable rules of the highest priority.
top contains rule if {
	some rule in applicable
	rule.priority == max({r.priority | some r in applicable})
}

# METADATA
# title: conflict
# description: True when the top-priority applicable rules disagree on the decision.
conflict if count({rule.decision | some rule in top}) > 1

_ids(decision) := concat(", ", sort({rule.id | some rule in top; rule.decision == decision}))

# METADATA
# title: conflict_message
# description: Describes the disagreeing rules, for the DEFER reason.
conflict_message := sprintf("context rules of priority %v disagree: %s", [
	max({r.priority | some r in applicable}),
	concat("; ", sort({sprintf("%s says %s", [_ids(d), d]) | some rule in top; d := rule.decision})),
])

# METADATA
# title: conflict_context_needed
# description: What a resolver must refresh to settle a conflict (each rule's context_needed, else rule:<id>).
conflict_context_needed contains needed if {
	some rule in top
	some needed in object.get(rule, "context_needed", [concat("", ["rule:", rule.id])])
}

# METADATA
# title: deny_reasons
# description: Tier 5 DENY reasons from agreeing top-priority DENY rules.
# custom:
#   rule_id: aarm.context.rule_denied
#   code: context_rule_denied
deny_reasons contains _reason(rego.metadata.rule(), rule, object.union(
	explain.change("context", sprintf(
		"the conditions of context rule %v not holding (%s)",
		[object.get(rule, "id", "?"), _condition_paths(rule)],
	)),
	_needed_part(rule),
)) if {
	not conflict
	some rule in top
	rule.decision == "DENY"
}

# METADATA
# title: stepup_findings
# description: Tier 6 STEP_UP findings from agreeing top-priority STEP_UP rules.
# custom:
#   rule_id: aarm.context.rule_step_up
#   code: context_supported
stepup_findings contains {"group": object.get(rule, "approver_group", ""), "reason": _reason(rego.metadata.rule(), rule, explain.approval(object.get(rule, "approver_group", ""), ""))} if {
	not conflict
	some rule in top
	rule.decision == "STEP_UP"
}

# A context rule decides on the input paths of its conditions; the one parameter it
# reads, if exactly one (input.action.parameters.<name>), is the reason's parameter.
_reason(meta, rule, would_change) := explain.reason(
	meta,
	sprintf("%v (context rule %v): %v", [input.action.name, object.get(rule, "id", "?"), object.get(rule, "message", "no message configured")]),
	_rule_param(rule),
	null,
	would_change,
)

_rule_param(rule) := params[0] if {
	params := [p | some p in _rule_params(rule)]
	count(params) == 1
} else := null

_rule_params(rule) := {c.path[2] |
	some c in object.get(rule, "conditions", [])
	is_array(c.path)
	count(c.path) > 2
	c.path[0] == "action"
	c.path[1] == "parameters"
}

_needed_part(rule) := {"context_needed": rule.context_needed} if is_array(rule.context_needed)

else := {}

_condition_paths(rule) := concat(", ", sort({concat(".", [sprintf("%v", [p]) | some p in c.path]) |
	some c in object.get(rule, "conditions", [])
	is_array(c.path)
})) if count(object.get(rule, "conditions", [])) > 0

else := "it has none: it matches the tool"

# METADATA
# title: errors
# description: Problems in the context rule config. Tests require this set to be empty.
errors contains sprintf("context rule %v: bad decision %v", [rule.id, rule.decision]) if {
	some rule in _rules
	not _valid_decision(rule)
}

errors contains sprintf("context rule %v: unknown op %v", [rule.id, c.op]) if {
	some rule in _rules
	some c in object.get(rule, "conditions", [])
	not _valid_op(c)
}

errors contains sprintf("context rule %v: id must be a string", [rule]) if {
	some rule in _rules
	not _string_id(rule)
}

errors contains sprintf("context rule %v: priority must be a number", [rule.id]) if {
	some rule in _rules
	not _numeric_priority(rule)
}

errors contains sprintf("context rule %v: STEP_UP needs an approver_group", [rule.id]) if {
	some rule in _rules
	rule.decision == "STEP_UP"
	not layers.config.stepup.approver_groups[rule.approver_group]
}

errors contains sprintf("duplicate context rule id %v", [id]) if {
	some i, a in _rules
	some j, b in _rules
	i < j
	a.id == b.id
	id := a.id
}

_valid_decision(rule) if rule.decision in {"ALLOW", "DENY", "STEP_UP"}

_valid_op(c) if c.op in {"eq", "neq", "in", "matches", "eq_path", "gte", "lt", "exists"}

_string_id(rule) if is_string(rule.id)

_numeric_priority(rule) if is_number(rule.priority)
