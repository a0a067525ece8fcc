package aarm.context_test

import data.aarm.context
import data.aarm.testing

# alice acts, with no original request unless `extra` (deep-merged over this) says otherwise.
_as_alice(extra) := object.union({"identity": {"human": "alice@acme.example"}, "session": {"original_request": null}}, extra)

_fact(value) := testing.fact(value, "ticketing")

_request(text) := {"session": {"original_request": testing.original_request(text, "", "NONE")}}

_cleanup := {"table": "test_records", "where": "x = 1", "created_by": "alice@acme.example"}

_ids(rules) := {rule.id | some rule in rules}

test_allow_config_has_no_errors if {
	count(context.errors) == 0
}

test_errors_flag_bad_rules if {
	errors := context.errors with data.aarm.config.context_rules as [
		{"id": "a", "priority": "high", "decision": "MAYBE", "match": {}, "conditions": [{"op": "like"}]},
		{"id": "a", "priority": 1, "decision": "STEP_UP", "approver_group": "nobody", "match": {}, "conditions": []},
		{"priority": 1, "decision": "DENY", "match": {}},
	]
	errors == {
		"context rule a: bad decision MAYBE",
		"context rule a: unknown op like",
		"context rule a: priority must be a number",
		"context rule a: STEP_UP needs an approver_group",
		"duplicate context rule id a",
		"context rule {\"decision\": \"DENY\", \"match\": {}, \"priority\": 1}: id must be a string",
	}
}

test_deny_row_delete_without_request if {
	i := testing.input_with("database.delete", _cleanup, _as_alice({}))
	_ids(context.top) == {"row_delete_needs_cleanup_request"} with input as i
	reasons := context.deny_reasons with input as i
	{r.code | some r in reasons} == {"context_rule_denied"}
	count(context.stepup_findings) == 0 with input as i
}

test_step_up_requested_cleanup_of_own_rows if {
	i := testing.input_with("database.delete", _cleanup, _as_alice(_request("please clean up the test data I created yesterday")))
	_ids(context.top) == {"cleanup_of_own_data_requested"} with input as i
	count(context.deny_reasons) == 0 with input as i
	findings := context.stepup_findings with input as i
	{f.group | some f in findings} == {"data_owners"}
	{f.reason.code | some f in findings} == {"context_supported"}
}

test_step_up_declared_cleanup_intent if {
	extra := {"session": {"original_request": testing.original_request("tidy up", "data_cleanup", "NONE")}}
	_ids(context.top) == {"cleanup_intent_declared"} with input as testing.input_with("database.delete", _cleanup, _as_alice(extra))
}

test_deny_cleanup_of_someone_elses_rows if {
	i := testing.input_with("database.delete", object.union(_cleanup, {"created_by": "bob@acme.example"}), _as_alice(_request("clean up the test data")))
	_ids(context.top) == {"row_delete_needs_cleanup_request"} with input as i
}

test_defer_conflict_between_same_priority_rules if {
	facts := {"facts": {"change_ticket": _fact("approved"), "change_freeze": _fact(true)}}
	i := testing.input_with("credentials.rotate", {"target": "prod-payments"}, _as_alice(facts))
	context.conflict with input as i
	context.conflict_context_needed == {"change_freeze", "change_ticket"} with input as i
	context.conflict_message == "context rules of priority 50 disagree: change_freeze_active says DENY; change_ticket_approved says ALLOW" with input as i
	count(context.deny_reasons) == 0 with input as i
}

test_allow_top_priority_allow_rule_alone if {
	i := testing.input_with("credentials.rotate", {"target": "prod-payments"}, _as_alice({"facts": {"change_ticket": _fact("approved")}}))
	not context.conflict with input as i
	count(context.deny_reasons) == 0 with input as i
	count(context.stepup_findings) == 0 with input as i
}

test_deny_change_freeze_alone if {
	i := testing.input_with("iam.grant_role", {"principal": "bob", "role": "viewer"}, _as_alice({"facts": {"change_freeze": _fact(true)}}))
	{r.rule_id | some r in context.deny_reasons} == {"aarm.context.rule_denied"} with input as i
}

test_conflict_context_needed_defaults_to_rule_ids if {
	rules := [
		{"id": "a", "priority": 1, "decision": "ALLOW", "match": {"tools": ["crm"]}, "conditions": []},
		{"id": "b", "priority": 1, "decision": "DENY", "match": {"categories": ["read"]}, "conditions": []},
	]
	needed := context.conflict_context_needed with input as testing.input_with("crm.query", {"query": "x"}, _as_alice({}))
		with data.aarm.config.context_rules as rules
	needed == {"rule:a", "rule:b"}
}

_op_rule(condition) := [{"id": "r", "priority": 1, "decision": "DENY", "message": "m", "match": {"names": ["crm.query"]}, "conditions": [condition]}]

_holds(condition, extra) if {
	count(context.applicable) == 1 with input as testing.input_with("crm.query", {"query": "x", "limit": 5}, _as_alice(extra))
		with data.aarm.config.context_rules as _op_rule(condition)
}

test_condition_operators if {
	_holds({"path": ["action", "parameters", "query"], "op": "eq", "value": "x"}, {})
	not _holds({"path": ["action", "parameters", "query"], "op": "eq", "value": "y"}, {})
	_holds({"path": ["action", "parameters", "query"], "op": "neq", "value": "y"}, {})
	not _holds({"path": ["action", "parameters", "missing"], "op": "neq", "value": "y"}, {})
	_holds({"path": ["action", "parameters", "query"], "op": "in", "value": ["x", "z"]}, {})
	_holds({"path": ["action", "parameters", "query"], "op": "matches", "value": "^x$"}, {})
	not _holds({"path": ["action", "parameters", "limit"], "op": "matches", "value": "5"}, {})
	_holds({"path": ["action", "parameters", "created_by"], "op": "eq_path", "value": ["identity", "human"]}, {"action": {"parameters": {"created_by": "alice@acme.example"}}})
	_holds({"path": ["action", "parameters", "limit"], "op": "gte", "value": 5}, {})
	not _holds({"path": ["action", "parameters", "limit"], "op": "gte", "value": 6}, {})
	_holds({"path": ["action", "parameters", "limit"], "op": "lt", "value": 6}, {})
	_holds({"path": ["facts", "flag"], "op": "exists"}, {"facts": {"flag": false}})
	not _holds({"path": ["facts", "flag"], "op": "exists"}, {})
	not _holds({"path": ["action", "parameters", "query"], "op": "like", "value": "x"}, {})
}

test_rule_without_message_or_group_still_decides if {
	rules := [{"id": "r", "priority": 1, "decision": "STEP_UP", "match": {"names": ["crm.query"]}, "conditions": []}]
	findings := context.stepup_findings with input as testing.input_with("crm.query", {"query": "x"}, _as_alice({}))
		with data.aarm.config.context_rules as rules
	{f.group | some f in findings} == {""}
	some f in findings
	contains(f.reason.message, "no message configured")
}

# --- fact sources: a rule that lowers the decision needs an authoritative fact ----------

test_allow_rule_ignores_an_unauthoritative_fact if {
	# The agent says the change ticket is approved and the freeze is on: the freeze (DENY)
	# holds from any source, the approval (ALLOW) does not, so there is no conflict.
	facts := {"facts": {"change_ticket": testing.fact("approved", "agent"), "change_freeze": testing.fact(true, "agent")}}
	i := testing.input_with("credentials.rotate", {"target": "prod-payments"}, _as_alice(facts))
	not context.conflict with input as i
	_ids(context.applicable) == {"change_freeze_active"} with input as i
	{r.rule_id | some r in context.deny_reasons} == {"aarm.context.rule_denied"} with input as i
}

test_step_up_rule_on_a_fact_needs_an_authoritative_source if {
	rules := [
		{"id": "deny", "priority": 1, "decision": "DENY", "match": {"names": ["crm.query"]}, "conditions": []},
		{"id": "lift", "priority": 2, "decision": "STEP_UP", "approver_group": "security", "match": {"names": ["crm.query"]}, "conditions": [
			{"path": ["action", "parameters", "query"], "op": "eq_path", "value": ["facts", "approved_query", "value"]},
		]},
	]
	asserted := testing.input_with("crm.query", {"query": "x"}, _as_alice({"facts": {"approved_query": testing.fact("x", "enforcement_point")}}))
	_ids(context.top) == {"deny"} with input as asserted with data.aarm.config.context_rules as rules
	trusted := testing.input_with("crm.query", {"query": "x"}, _as_alice({"facts": {"approved_query": testing.fact("x", "ticketing")}}))
	_ids(context.top) == {"lift"} with input as trusted with data.aarm.config.context_rules as rules
}

test_rule_matches_a_declared_semantic_type if {
	rules := [{"id": "roles", "priority": 1, "decision": "DENY", "message": "m", "match": {"semantics": ["role"]}, "conditions": []}]
	overlay := {"acme": {"catalogue": {"tools": {"directory.assign_access": {
		"category": "identity", "risk_tier": "high", "output_trust": "trusted",
		"parameters": {"level": {"type": "string", "semantic": "role"}},
	}}}}}
	count(context.applicable) == 1 with input as testing.input_with("directory.assign_access", {"level": "admin"}, _as_alice({}))
		with data.aarm.config.context_rules as rules
		with data.aarm.overlays as overlay
	count(context.applicable) == 0 with input as testing.input_with("crm.query", {"query": "x"}, _as_alice({}))
		with data.aarm.config.context_rules as rules
}

# --- explanations -------------------------------------------------------------------

test_explain_a_context_deny_names_its_conditions_and_what_it_needs if {
	i := testing.input_with("iam.grant_role", {"principal": "bob", "role": "viewer"}, _as_alice({"facts": {"change_freeze": _fact(true)}}))
	some r in context.deny_reasons with input as i
	r.param == null
	r.would_change == {
		"kind": "context",
		"text": "the conditions of context rule change_freeze_active not holding (facts.change_freeze.value)",
		"context_needed": ["change_freeze"],
	}
	j := testing.input_with("database.delete", _cleanup, _as_alice({}))
	some d in context.deny_reasons with input as j
	d.would_change == {"kind": "context", "text": "the conditions of context rule row_delete_needs_cleanup_request not holding (it has none: it matches the tool)"}
}

test_explain_a_context_step_up_names_its_group_and_the_one_parameter_it_reads if {
	i := testing.input_with("database.delete", _cleanup, _as_alice(_request("please clean up the test data I created yesterday")))
	some f in context.stepup_findings with input as i
	f.reason.param == "created_by"
	f.reason.would_change == {"kind": "approval", "text": "an approval by data_owners", "approver_group": "data_owners"}
	rules := [{"id": "r", "priority": 1, "decision": "STEP_UP", "match": {"names": ["crm.query"]}, "conditions": []}]
	some g in context.stepup_findings with input as testing.input_with("crm.query", {"query": "x"}, _as_alice({}))
		with data.aarm.config.context_rules as rules
	g.reason.would_change.approver_group == "platform"
}
