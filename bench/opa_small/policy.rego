# METADATA
# title: Small reference policy (bench lane opa-small)
# description: |
#   A tool-call policy of the size peers' OPA benchmarks use (a dozen rules: a tool
#   allowlist with risk tiers, forbidden tools, a role check, a domain blocklist, a row
#   cap, an amount threshold), answering a decision document shaped like the pack's.
#   The bench sends it the very bodies it sends the pack (bench/run.py, lane
#   opa-small), so the two OPA CPU figures differ only by the policy. Not a policy to
#   deploy: it judges nothing of the session, provenance or analysis.
package small

_tool := data.small.tools[input.action.name]

_known if _tool

_params := input.action.parameters

deny contains "forbidden" if input.action.name in data.small.forbidden

deny contains "default_posture" if not _known

deny contains "role_required" if {
	allowed := data.small.roles_allowed[_tool.risk_tier]
	count({r | some r in input.identity.roles; r in allowed}) == 0
}

deny contains "parameter_blocked" if {
	some value in _params
	is_string(value)
	some domain in data.small.blocked_domains
	contains(lower(value), domain)
}

deny contains "parameter_invalid" if {
	limit := object.get(_params, "limit", 0)
	not is_number(limit)
}

step_up contains "high_impact" if _tool.risk_tier in {"high", "critical"}

step_up contains "high_impact" if object.get(_params, "amount", 0) > data.small.step_up_amount

modify contains "parameter_modified" if object.get(_params, "limit", 0) > data.small.row_cap

_reasons(codes) := [{"code": c, "rule_id": concat(".", ["small", c]), "message": c} | some c in codes]

decision := {"decision": "DENY", "reasons": _reasons(deny)} if {
	count(deny) > 0
} else := {"decision": "STEP_UP", "reasons": _reasons(step_up)} if {
	count(step_up) > 0
} else := {
	"decision": "MODIFY",
	"reasons": _reasons(modify),
	"modified_parameters": object.union(_params, {"limit": data.small.row_cap}),
} if {
	count(modify) > 0
} else := {"decision": "ALLOW", "reasons": _reasons({"catalogued"})}
