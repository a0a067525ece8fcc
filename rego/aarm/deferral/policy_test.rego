package aarm.deferral_test

import data.aarm.deferral

_input(name, facts) := {
	"version": "aarm.v1",
	"action": {
		"tool": split(name, ".")[0],
		"operation": split(name, ".")[1],
		"name": name,
		"parameters": {"target": "prod-payments"},
		"depends_on": [],
		"original_tool": "",
	},
	"identity": {}, "facts": facts, "risk_signals": {},
}

_window(value) := {"maintenance_window": {"value": value, "source": "change-calendar", "observed_at": "2026-11-26T01:59:00Z"}}

test_defer_credentials_rotate_without_maintenance_window if {
	reasons := deferral.reasons with input as _input("credentials.rotate", {})
	{reason.rule_id | some reason in reasons} == {"aarm.deferral.missing_context"}
	{reason.code | some reason in reasons} == {"missing_context"}
	deferral.deferral == {
		"trigger": "missing_context",
		"context_needed": ["maintenance_window"],
		"timeout_seconds": 300,
	} with input as _input("credentials.rotate", {})
}

test_defer_when_fact_is_not_a_boolean if {
	reasons := deferral.reasons with input as _input("credentials.rotate", _window("maybe"))
	count(reasons) == 1
	reasons2 := deferral.reasons with input as _input("credentials.rotate", {"maintenance_window": true})
	count(reasons2) == 1
}

test_defer_lists_every_missing_fact_sorted if {
	needed := deferral.deferral.context_needed with input as _input("credentials.rotate", {})
		with data.aarm.catalogue.tools["credentials.rotate"].requires_facts as ["z_fact", "maintenance_window"]
	needed == ["maintenance_window", "z_fact"]
}

test_deny_when_fact_is_false if {
	deny := deferral.deny_reasons with input as _input("credentials.rotate", _window(false))
	{reason.rule_id | some reason in deny} == {"aarm.deferral.context_denied"}
	some reason in deny
	reason.code == "context_denied"
	contains(reason.message, "change-calendar")
	count(deferral.reasons) == 0 with input as _input("credentials.rotate", _window(false))
}

test_allow_when_fact_is_true if {
	count(deferral.reasons) == 0 with input as _input("credentials.rotate", _window(true))
	count(deferral.deny_reasons) == 0 with input as _input("credentials.rotate", _window(true))
}

test_allow_tools_without_required_facts if {
	count(deferral.reasons) == 0 with input as _input("db.query", {})
	count(deferral.reasons) == 0 with input as _input("mcp.mystery", {})
}

test_defer_timeout_and_trigger_come_from_config if {
	d := deferral.deferral with input as _input("credentials.rotate", {})
		with data.aarm.config.deferral.timeout_seconds as 60
	d.timeout_seconds == 60
}
