# METADATA
# title: High-impact actions that need human approval
# description: |
#   Tier 6 of the AARM precedence (STEP_UP, code high_impact). The action is
#   understood and allowed in principle, but its impact is high enough that a human
#   from a named approver group must authorize it: large payments, privileged role
#   grants, bulk or unfiltered deletes, destructive SQL on non-production databases, and
#   any tool whose catalogue risk tier is configured as approval-only (critical).
# related_resources:
#   - ref: docs/policies/stepup.md
#     description: stepup policy page
# schemas:
#   - input: schema.input
package aarm.stepup

import data.aarm.catalogue

_cfg := data.aarm.config.stepup

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
_findings contains _finding(rego.metadata.rule(), rule.approver_group, sprintf(
	"%s of %v %v is above the approval threshold of %v",
	[_name, amount, object.get(_params, "currency", ""), rule.amount_threshold],
)) if {
	rule := _cfg.large_payment
	amount := _params[rule.tools[_name]]
	is_number(amount)
	amount > rule.amount_threshold
}

# METADATA
# custom:
#   rule_id: aarm.stepup.privileged_role_grant
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, sprintf(
	"%s grants privileged role %q to %v; privilege grants need security approval",
	[_name, role, object.get(_params, "principal", "an unnamed principal")],
)) if {
	rule := _cfg.privileged_role
	role := _params[rule.tools[_name]]
	regex.match(rule.role_pattern, role)
}

# METADATA
# custom:
#   rule_id: aarm.stepup.bulk_delete
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, sprintf(
	"%s on table %v has no real filter (%s=%q); a delete of every row needs approval",
	[_name, object.get(_params, "table", "?"), tool.filter_param, filter],
)) if {
	rule := _cfg.bulk_delete
	tool := rule.table_tools[_name]
	filter := object.get(_params, tool.filter_param, "")
	_trivial_filter(rule, filter)
}

# METADATA
# custom:
#   rule_id: aarm.stepup.bulk_delete
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, sprintf(
	"%s may delete up to %v rows, above the bulk threshold of %v",
	[_name, rows, rule.row_threshold],
)) if {
	rule := _cfg.bulk_delete
	tool := rule.table_tools[_name]
	rows := _params[tool.count_param]
	is_number(rows)
	rows > rule.row_threshold
}

# METADATA
# custom:
#   rule_id: aarm.stepup.bulk_delete
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, sprintf(
	"%s of %q is a bulk delete (wildcard or recursive)",
	[_name, path],
)) if {
	rule := _cfg.bulk_delete
	tool := rule.path_tools[_name]
	path := _params[tool.path_param]
	_bulk_path(rule, tool, path)
}

# METADATA
# custom:
#   rule_id: aarm.stepup.destructive_sql
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), rule.approver_group, sprintf(
	"%s runs destructive SQL (matched %q); schema drops, truncates and unfiltered deletes need approval",
	[_name, pattern],
)) if {
	rule := _cfg.destructive_sql
	sql := _params[rule.tools[_name]]
	some pattern in rule.patterns
	regex.match(pattern, sql)
}

# METADATA
# custom:
#   rule_id: aarm.stepup.high_impact_tool
#   code: high_impact
_findings contains _finding(rego.metadata.rule(), group, sprintf(
	"%s is a %s-tier %s tool; every call needs approval",
	[_name, catalogue.risk_tier, catalogue.category],
)) if {
	rule := _cfg.high_impact_tier
	catalogue.risk_tier in rule.tiers
	group := object.get(rule.approver_group_by_category, catalogue.category, rule.default_approver_group)
}

_finding(meta, group, message) := {
	"group": group,
	"reason": {
		"code": meta.custom.code,
		"rule_id": meta.custom.rule_id,
		"message": message,
	},
}

_trivial_filter(rule, filter) if regex.match(rule.trivial_filter_pattern, filter)

# A filter that is not a string (null, a number) filters nothing we can check.
_trivial_filter(_, filter) if not is_string(filter)

_bulk_path(rule, _, path) if regex.match(rule.glob_pattern, path)

_bulk_path(_, tool, _) if _params[tool.recursive_param] == true
