# METADATA
# title: High-impact actions that need human approval
# description: |
#   Tier 6 of the AARM precedence (STEP_UP, code high_impact). The action is
#   understood and allowed in principle, but its impact is high enough that a human
#   from a named approver group must authorize it: large payments (one, or the session's
#   payments added up: input.analysis.amounts), privileged role grants, bulk or
#   unfiltered deletes, destructive or privilege-changing SQL (decided on the parsed
#   statements), shell commands that may be destructive without being known to be
#   (a download or decoded payload piped to a shell, interpreter code, system writes),
#   and any tool whose catalogue risk tier is configured as approval-only (critical).
#   Every rule decides from what the catalogue declares about the tool (category, risk
#   tier, the semantic type of each parameter and its per-parameter threshold), never
#   from the tool's name: an operator's tool gets these protections from its declaration.
#   A privileged grant whose role and grantees, or a recursive delete whose path, the
#   requesting human's own request named (input.provenance origin "user") is what the
#   human asked for and needs no second approval; the same values from anywhere else do.
# related_resources:
#   - ref: docs/policies/stepup.md
#     description: stepup policy page
# schemas:
#   - input: schema.input
package aarm.stepup

import data.aarm.layers

import data.aarm.analysis
import data.aarm.catalogue
import data.aarm.egress
import data.aarm.explain

_cfg := layers.config.stepup

_name := input.action.name

_params := input.action.parameters

# METADATA
# title: reasons
# description: STEP_UP reasons, one per high-impact finding.
reasons contains finding.reason if some finding in _findings

# METADATA
# title: approval
# description: |
#   Approver groups of every finding (sorted, without duplicates) and the shortest of
#   their timeouts. Falls back to the fallback approver group when a finding names a
#   group the config does not define, so a STEP_UP always has an approver.
approval := approval_for(groups)

# METADATA
# title: groups
# description: The approver group names of the baseline high-impact findings.
groups := {finding.group | some finding in _findings}

# METADATA
# title: approval_for
# description: |
#   The approval part for a set of approver group names (the context STEP_UP tier in
#   aarm.main uses it too): the union of their approvers and the shortest timeout. An
#   empty set, or a group the config does not define, means the fallback group.
approval_for(names) := {
	"approvers": sort({approver | some name in _named(names); some approver in _group(name).approvers}),
	"timeout_seconds": min({_group(name).timeout_seconds | some name in _named(names)}),
}

_named(names) := names if count(names) > 0

else := {_cfg.fallback_approver_group}

_group(name) := _cfg.approver_groups[name]

_group(name) := _cfg.approver_groups[_cfg.fallback_approver_group] if not _cfg.approver_groups[name]

# METADATA
# custom:
#   rule_id: aarm.stepup.large_payment
#   code: high_impact
_findings contains _finding(
	rego.metadata.rule(), rule.approver_group, payment.param, null, explain.approval_compared(
		rule.approver_group,
		sprintf("an amount of at most %v", [payment.threshold]),
		payment.threshold, payment.value,
	),
	sprintf(
		"%s of %v %v (parameter %q) is above the approval threshold of %v",
		[_name, payment.value, payment.currency, payment.param, payment.threshold],
	),
) if {
	rule := _cfg.large_payment
	some payment in _payments
	payment.value > payment.threshold
}

# METADATA
# custom:
#   rule_id: aarm.stepup.cumulative_payment
#   code: high_impact
_findings contains _finding(
	rego.metadata.rule(), rule.approver_group, payment.param, null, explain.approval_compared(
		rule.approver_group,
		sprintf("payments of %s totalling at most %v", [_span(window), threshold]),
		threshold, total,
	),
	sprintf(
		"%s of %v %v (parameter %q) brings the payments of %s to %v (%d earlier), above the approval threshold of %v",
		[_name, payment.value, payment.currency, payment.param, _span(window), total, prior.count, threshold],
	),
) if {
	rule := _cfg.large_payment
	some payment in _payments
	some window, threshold in rule.cumulative_thresholds
	prior := _prior(window)
	prior.count > 0
	total := prior.total + payment.value
	total > threshold
}

# What this action pays: each parsed parameter of semantic type amount of a tool of a
# payment category, with its currency (its own, else its companion's) and its approval
# threshold (the parameter's approval_above, else the configured amount_threshold).
_payments contains {"param": param, "value": f.value, "currency": _currency(f), "threshold": _threshold(param, _cfg.large_payment.amount_threshold)} if {
	catalogue.category in _cfg.large_payment.categories
	some param in catalogue.parameters_of({"amount"})
	some f in analysis.values(param)
	f.parsed == true
	is_number(f.value)
}

# A parameter's own approval threshold (approval_above in the catalogue), else the default.
_threshold(param, default_value) := object.get(catalogue.parameters[param], "approval_above", default_value)

_currency(f) := f.currency if is_string(f.currency)

else := f.currency_param if is_string(f.currency_param)

else := ""

_prior("session") := input.analysis.amounts.session

_prior(window) := input.analysis.amounts.windows[window] if window != "session"

_span("session") := "this session"

_span(window) := sprintf("the last %s s", [window]) if window != "session"

# METADATA
# custom:
#   rule_id: aarm.stepup.privileged_role_grant
#   code: high_impact
_findings contains _finding(
	rego.metadata.rule(), rule.approver_group, param, explain.of_param(param), explain.approval(
		rule.approver_group,
		"a request by the human that names the role and everyone it goes to",
	),
	sprintf(
		"%s grants privileged role %q (parameter %q) to %s; privilege grants need security approval",
		[_name, role, param, _grantee],
	),
) if {
	rule := _cfg.privileged_role
	catalogue.category in rule.categories
	some param in catalogue.parameters_of({"role"})
	some role in _strings(_params[param])
	regex.match(object.get(catalogue.parameters[param], "approval_pattern", rule.role_pattern), role)
	not _grant_requested(param)
}

# The requesting human's own request named the role and everyone it goes to
# (input.provenance: origin "user"): the grant is what the human asked for, not a
# value the agent picked up somewhere.
_grant_requested(role_param) if {
	_user_named(role_param)
	grantees := {param |
		some param in catalogue.parameters_of({"recipient", "email", "person", "identifier"})
		analysis.given(param)
	}
	every param in grantees {
		_user_named(param)
	}
}

_user_named(param) if {
	not egress.direct_injection
	"user" in input.provenance.parameters[param].origins
}

# Who receives the grant: the values of the parameters declared as its recipient or person.
_grantee := concat(", ", sort(names)) if {
	names := {name |
		some param in catalogue.parameters_of({"recipient", "email", "person", "identifier"})
		some name in _strings(_params[param])
	}
	count(names) > 0
} else := "an unnamed principal"

_strings(value) := {value} if is_string(value)

else := {item | some item in value; is_string(item)} if is_array(value)

else := set()

# METADATA
# custom:
#   rule_id: aarm.stepup.bulk_delete
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, param, null, explain.approval(rule.approver_group, "a filter that selects rows"), sprintf(
	"%s on %s has no real filter (%s=%v); a delete of every row needs approval",
	[_name, _deleted_object, param, object.get(_params, param, "none")],
)) if {
	rule := _cfg.bulk_delete
	catalogue.category in rule.categories
	some param in _filter_params
	_unfiltered(param)
}

# The filter of a destructive tool: a parameter of semantic type sql that the catalogue
# has analysed as a condition (a WHERE clause).
_filter_params contains param if {
	some param in catalogue.parameters_of({"sql"})
	analysis.declared[param].type == "sql_condition"
}

_deleted_object := concat(", ", sort(names)) if {
	names := {sprintf("%s %v", [param, _params[param]]) |
		some param in catalogue.parameters_of({"identifier", "database"})
		analysis.given(param)
	}
	count(names) > 0
} else := "its target"

# METADATA
# custom:
#   rule_id: aarm.stepup.bulk_delete
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, param, null, explain.approval_compared(rule.approver_group, sprintf("at most %v rows", [threshold]), threshold, rows), sprintf(
	"%s may delete up to %v rows (parameter %q), above the bulk threshold of %v",
	[_name, rows, param, threshold],
)) if {
	rule := _cfg.bulk_delete
	catalogue.category in rule.categories
	some param in catalogue.parameters_of({"count"})
	rows := _params[param]
	is_number(rows)
	threshold := _threshold(param, rule.row_threshold)
	rows > threshold
}

# METADATA
# custom:
#   rule_id: aarm.stepup.bulk_delete
#   code: high_impact
_findings contains _finding(
	rego.metadata.rule(), rule.approver_group, param, explain.of_param(param), explain.approval(
		rule.approver_group,
		"a path the user's request named, without wildcards or recursive flags",
	),
	sprintf(
		"%s of %q (parameter %q) is a bulk delete (wildcard or recursive)",
		[_name, path, param],
	),
) if {
	rule := _cfg.bulk_delete
	catalogue.category in rule.categories
	some param in catalogue.parameters_of({"path"})
	path := _params[param]
	_bulk_path(param)
	not _user_named(param)
}

# METADATA
# custom:
#   rule_id: aarm.stepup.destructive_sql
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, s.param, null, explain.approval(rule.approver_group, ""), sprintf(
	"%s parameter %q runs SQL that %s (%s); drops, truncates, unfiltered deletes and privilege changes need approval",
	[_name, s.param, concat(", ", sort(effects)), concat(", ", object.get(s.facts, "commands", []))],
)) if {
	rule := _cfg.destructive_sql
	some s in analysis.sql
	s.facts.parsed == true
	effects := _sql_effects(s.facts)
	count(effects) > 0
}

_sql_effects(f) := {effect |
	some flag, effect in {
		"destructive": "destroys data",
		"privilege": "changes privileges",
		"server_file": "reads or writes server files",
		"opaque": "cannot be seen through",
	}
	f[flag] == true
} | {"calls functions with side effects" | count(object.get(f, "side_effect_functions", [])) > 0}

# METADATA
# custom:
#   rule_id: aarm.stepup.risky_shell
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), _cfg.risky_shell.approver_group, s.param, null, explain.approval(_cfg.risky_shell.approver_group, ""), sprintf(
	"%s parameter %q may be destructive (%s); a human must read it before it runs",
	[_name, s.param, concat(", ", sort(_shell_risks(s.facts)))],
)) if {
	some s in analysis.shell
	s.facts.parsed == true
	s.facts.destructive == false
	s.facts.destructive_possible == true
}

_shell_risks(f) := {effect | some effect, held in f.effects; held == true} | {"a nested script does not parse" | count(f.nested_unparsed) > 0}

# METADATA
# custom:
#   rule_id: aarm.stepup.high_impact_tool
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), group, null, null, explain.approval(group, ""), sprintf(
	"%s is a %s-tier %s tool; every call needs approval",
	[_name, catalogue.risk_tier, catalogue.category],
)) if {
	rule := _cfg.high_impact_tier
	catalogue.risk_tier in rule.tiers
	group := object.get(rule.approver_group_by_category, catalogue.category, rule.default_approver_group)
}

_finding(meta, group, param, provenance, would_change, message) := {
	"group": group,
	"reason": explain.reason(meta, message, param, provenance, would_change),
}

# No filter given, or one whose parsed condition filters nothing (true, 1 = 1, x = x,
# an OR with such a branch), or a filter that did not reach policy analysed.
_unfiltered(param) if not analysis.given(param)

_unfiltered(param) if analysis.facts[param].filter in {"none", "trivial"}

_unfiltered(param) if {
	analysis.given(param)
	not analysis.facts[param]
}

_bulk_path(param) if {
	some f in analysis.values(param)
	f.glob == true
}

# A flag of the destructive tool that is set widens the delete (recursive, all, force),
# unless the catalogue declares the flag "bulk": false (a dry run, a notification).
_bulk_path(_) if {
	some flag in catalogue.parameters_of({"flag"})
	_params[flag] == true
	not catalogue.parameters[flag].bulk == false
}
