package aarm.main_test

import data.aarm.main

_input(name, parameters, facts) := {
	"version": "aarm.v1",
	"request_id": "req-1",
	"now": "2026-11-26T02:00:00Z",
	"now_ns": 1795658400000000000,
	"identity": {
		"tenant": "acme", "human": "alice@acme.example", "service": "agent-platform",
		"agent": "agent-7", "session_id": "s-1", "roles": ["analyst"],
		"delegation_chain": [],
	},
	"action": {
		"tool": split(name, ".")[0],
		"operation": substring(name, count(split(name, ".")[0]) + 1, -1),
		"name": name,
		"parameters": parameters,
		"depends_on": [],
		"original_tool": "",
	},
	"facts": facts,
	"risk_signals": {"injection_score": 0.1},
}

_decide(name, parameters) := _decide_with_facts(name, parameters, {})

_decide_with_facts(name, parameters, facts) := d if {
	d := main.decision with input as _input(name, parameters, facts)
}

_fact(value) := {"value": value, "source": "ticketing", "observed_at": "2026-11-26T01:59:00Z"}

_transfer(amount) := {"amount": amount, "currency": "USD", "to_account": "DE89370400440532"}

# --- the five verdicts, end to end -------------------------------------------

test_allow_benign_catalogued_read if {
	d := _decide("db.query", {"table": "customers", "limit": 10})
	d == {
		"decision": "ALLOW",
		"reasons": [{
			"code": "catalogued",
			"rule_id": "aarm.main.catalogued",
			"message": "db.query is a catalogued read tool (risk tier low) and no policy finding applies",
		}],
		"matched_rules": ["aarm.main.catalogued"],
		"risk": {"level": "LOW", "score": 0.1},
	}
}

test_deny_forbidden_drop_production_database if {
	d := _decide("database.drop", {"database": "production"})
	d.decision == "DENY"
	[reason.code | some reason in d.reasons] == ["forbidden"]
	"aarm.forbidden.drop_production_database" in d.matched_rules
	d.risk == {"level": "CRITICAL", "score": 0.99}
	not d.approval
	not d.deferral
	not d.modified_parameters
}

test_modify_row_cap if {
	d := _decide("db.query", {"table": "customers", "limit": 5000})
	d.decision == "MODIFY"
	d.modified_parameters == {"table": "customers", "limit": 1000}
	d.matched_rules == ["aarm.params.cap"]
	[reason.code | some reason in d.reasons] == ["parameter_modified"]
	d.risk.level == "MEDIUM"
}

test_step_up_large_payment if {
	d := _decide("payments.transfer", _transfer(25000))
	d.decision == "STEP_UP"
	d.approval == {"approvers": ["finance-approvers"], "timeout_seconds": 3600}
	d.matched_rules == ["aarm.stepup.large_payment"]
	[reason.code | some reason in d.reasons] == ["high_impact"]
	d.risk.level == "HIGH"
}

test_defer_credentials_rotate_without_maintenance_window if {
	d := _decide("credentials.rotate", {"target": "prod-payments"})
	d.decision == "DEFER"
	d.deferral == {"trigger": "missing_context", "context_needed": ["maintenance_window"], "timeout_seconds": 300}
	d.matched_rules == ["aarm.deferral.missing_context"]
	[reason.code | some reason in d.reasons] == ["missing_context"]
}

test_allow_credentials_rotate_inside_maintenance_window if {
	d := _decide_with_facts("credentials.rotate", {"target": "prod-payments"}, {"maintenance_window": _fact(true)})
	d.decision == "ALLOW"
	d.matched_rules == ["aarm.main.catalogued"]
}

test_deny_credentials_rotate_outside_maintenance_window if {
	d := _decide_with_facts("credentials.rotate", {"target": "prod-payments"}, {"maintenance_window": _fact(false)})
	d.decision == "DENY"
	d.matched_rules == ["aarm.deferral.context_denied"]
	[reason.code | some reason in d.reasons] == ["context_denied"]
}

# --- precedence ----------------------------------------------------------------

test_deny_forbidden_beats_step_up_and_defer if {
	# database.drop is critical (STEP_UP) and needs backup_verified (DEFER): forbidden wins.
	d := _decide("database.drop", {"database": "production"})
	d.decision == "DENY"
	d.matched_rules == [
		"aarm.deferral.missing_context",
		"aarm.forbidden.drop_production_database",
		"aarm.stepup.high_impact_tool",
	]
	[reason.rule_id | some reason in d.reasons] == ["aarm.forbidden.drop_production_database"]
}

test_deny_forbidden_whatever_the_facts_claim if {
	facts := {
		"authorization": _fact("CEO says drop production now"),
		"backup_verified": _fact(true),
		"approved_by": _fact("ceo@acme.example"),
	}
	d := _decide_with_facts("database.drop", {"database": "production"}, facts)
	d.decision == "DENY"
	[reason.code | some reason in d.reasons] == ["forbidden"]
}

test_deny_forbidden_beats_default_posture_allow if {
	d := main.decision with input as _input("shell.exec", {"command": "rm -rf /"}, {})
		with data.aarm.config.default_posture as "ALLOW"
	d.decision == "DENY"
	d.matched_rules == ["aarm.forbidden.recursive_root_delete"]
}

test_deny_forbidden_for_uncatalogued_security_tool if {
	d := _decide("siem.mute_alerts", {})
	d.decision == "DENY"
	d.matched_rules == ["aarm.forbidden.disable_security_control"]
}

test_deny_parameter_deny_beats_step_up if {
	d := _decide("payments.transfer", object.union(_transfer(25000), {"currency": "BTC"}))
	d.decision == "DENY"
	[reason.rule_id | some reason in d.reasons] == ["aarm.params.enum"]
	"aarm.stepup.large_payment" in d.matched_rules
}

test_deny_parameter_deny_beats_defer if {
	d := _decide("credentials.rotate", {"target": "prod-payments", "force": true})
	d.decision == "DENY"
	[reason.code | some reason in d.reasons] == ["parameter_invalid"]
	"aarm.deferral.missing_context" in d.matched_rules
}

test_defer_beats_step_up if {
	d := _decide("db.drop_database", {"database": "staging"})
	d.decision == "DEFER"
	d.deferral.context_needed == ["backup_verified"]
	d.matched_rules == ["aarm.deferral.missing_context", "aarm.stepup.high_impact_tool"]
}

test_step_up_once_the_fact_is_present if {
	d := _decide_with_facts("db.drop_database", {"database": "staging"}, {"backup_verified": _fact(true)})
	d.decision == "STEP_UP"
	d.approval.approvers == ["data-owners"]
}

test_step_up_beats_modify if {
	d := _decide("db.delete", {"table": "users"})
	d.decision == "STEP_UP"
	d2 := main.decision with input as _input("email.search", {"query": "x", "limit": 5000}, {})
		with data.aarm.catalogue.tools["email.search"].risk_tier as "critical"
	d2.decision == "STEP_UP"
	"aarm.params.cap" in d2.matched_rules
}

test_deny_blocked_egress_beats_everything_below if {
	d := _decide("email.send", {"to": ["compliance@attacker.com"], "body": "customer export"})
	d.decision == "DENY"
	[reason.code | some reason in d.reasons] == ["parameter_blocked"]
	d.risk.level == "CRITICAL"
}

test_deny_missing_required_parameter_is_deny_not_undefined if {
	d := _decide("payments.transfer", {"amount": 5})
	d.decision == "DENY"
	[reason.rule_id | some reason in d.reasons] == ["aarm.params.required", "aarm.params.required"]
}

# --- default posture -------------------------------------------------------------

test_deny_unknown_tool_by_default_posture if {
	d := _decide("mcp.mystery_tool", {"x": 1})
	d.decision == "DENY"
	d.reasons == [{
		"code": "default_posture",
		"rule_id": "aarm.main.default_posture",
		"message": "mcp.mystery_tool is not in the tool catalogue; the default posture DENY applies",
	}]
	d.matched_rules == ["aarm.main.default_posture"]
	d.risk == {"level": "HIGH", "score": 0.7}
}

test_allow_unknown_tool_when_default_posture_is_overridden if {
	d := main.decision with input as _input("mcp.mystery_tool", {}, {})
		with data.aarm.config.default_posture as "ALLOW"
	d.decision == "ALLOW"
	[reason.code | some reason in d.reasons] == ["default_posture"]
}

test_deny_unknown_tool_when_default_posture_is_invalid if {
	every posture in ["STEP_UP", "MODIFY", "allow", 1] {
		d := main.decision with input as _input("mcp.mystery_tool", {}, {})
			with data.aarm.config.default_posture as posture
		d.decision == "DENY"
	}
}

test_allow_default_posture_does_not_touch_catalogued_tools if {
	d := main.decision with input as _input("db.query", {"table": "t", "limit": 1}, {})
		with data.aarm.config.default_posture as "ALLOW"
	d.matched_rules == ["aarm.main.catalogued"]
}

# --- totality, shape and determinism --------------------------------------------------

_samples := [
	_input("db.query", {"table": "customers", "limit": 10}, {}),
	_input("db.query", {"table": "customers", "limit": 5000}, {}),
	_input("db.query", "SELECT 1", {}),
	_input("db.query", null, {}),
	_input("db.query", {"table": ["customers"], "limit": "10"}, {}),
	_input("payments.transfer", _transfer(25000), {}),
	_input("payments.transfer", {}, {}),
	_input("credentials.rotate", {"target": "prod-payments"}, {}),
	_input("credentials.rotate", {"target": "prod-payments"}, {"maintenance_window": "yes"}),
	_input("database.drop", {"database": "production"}, {}),
	_input("shell.exec", {"command": 42}, {}),
	_input("email.send", {"to": ["a@acme.example", {"nested": true}]}, {}),
	_input("mcp.mystery", {}, {}),
	_input("", {}, {}),
	{"version": "aarm.v1", "action": {}, "identity": {}, "facts": {}, "risk_signals": {}},
	{},
]

_verdict_parts := {"MODIFY": "modified_parameters", "STEP_UP": "approval", "DEFER": "deferral"}

test_decision_is_total_and_well_formed if {
	every sample in _samples {
		d := main.decision with input as sample
		d.decision in {"ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER"}
		count(d.reasons) > 0
		every reason in d.reasons {
			object.keys(reason) == {"code", "rule_id", "message"}
			startswith(reason.rule_id, "aarm.")
			reason.rule_id in d.matched_rules
		}
		d.matched_rules == sort({rule | some rule in d.matched_rules})
		d.risk.level in {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
		is_number(d.risk.score)
		every verdict, part in _verdict_parts {
			_part_matches_verdict(d, verdict, part)
		}
	}
}

_part_matches_verdict(d, verdict, part) if {
	d.decision == verdict
	_has(d, part)
}

_part_matches_verdict(d, verdict, part) if {
	d.decision != verdict
	not _has(d, part)
}

_has(d, part) if object.get(d, part, null) != null

test_step_up_always_has_an_approver if {
	step_ups := [d |
		some sample in _samples
		d := main.decision with input as sample
		d.decision == "STEP_UP"
	]
	count(step_ups) > 0
	every d in step_ups {
		count(d.approval.approvers) > 0
		d.approval.timeout_seconds > 0
	}
}

test_defer_always_names_needed_context if {
	d := _decide("credentials.rotate", {"target": "prod-payments"})
	count(d.deferral.context_needed) > 0
	d.deferral.trigger == "missing_context"
}

test_deny_empty_input_by_default_posture if {
	d := main.decision with input as {}
	d.decision == "DENY"
	d.matched_rules == ["aarm.main.default_posture"]
}

test_deny_reasons_sorted_by_rule_id if {
	d := _decide("email.send", {"to": ["x@attacker.com", 7], "subject": 12})
	d.decision == "DENY"
	ids := [reason.rule_id | some reason in d.reasons]
	ids == sort(ids)
	count(ids) == 3
}
