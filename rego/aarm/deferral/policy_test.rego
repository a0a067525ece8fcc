package aarm.deferral_test

import data.aarm.deferral
import data.aarm.testing

# Every action here runs against the same target.
_target := {"target": "prod-payments"}

_window(value) := {"facts": {"maintenance_window": testing.fact(value, "change-calendar")}}

test_defer_credentials_rotate_without_maintenance_window if {
	reasons := deferral.reasons with input as testing.input_for("credentials.rotate", _target)
	{reason.rule_id | some reason in reasons} == {"aarm.deferral.missing_context"}
	{reason.code | some reason in reasons} == {"missing_context"}
	deferral.deferral == {
		"trigger": "missing_context",
		"context_needed": ["maintenance_window"],
		"timeout_seconds": 300,
	} with input as testing.input_for("credentials.rotate", _target)
}

test_defer_when_fact_is_not_a_boolean if {
	reasons := deferral.reasons with input as testing.input_with("credentials.rotate", _target, _window("maybe"))
	count(reasons) == 1
	reasons2 := deferral.reasons with input as testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": true}})
	count(reasons2) == 1
}

test_defer_lists_every_missing_fact_sorted if {
	needed := deferral.deferral.context_needed with input as testing.input_for("credentials.rotate", _target)
		with data.aarm.catalogue.tools["credentials.rotate"].requires_facts as ["z_fact", "maintenance_window"]
	needed == ["maintenance_window", "z_fact"]
}

test_deny_when_fact_is_false if {
	deny := deferral.deny_reasons with input as testing.input_with("credentials.rotate", _target, _window(false))
	{reason.rule_id | some reason in deny} == {"aarm.deferral.context_denied"}
	some reason in deny
	reason.code == "context_denied"
	contains(reason.message, "change-calendar")
	count(deferral.reasons) == 0 with input as testing.input_with("credentials.rotate", _target, _window(false))
}

test_allow_when_fact_is_true if {
	count(deferral.reasons) == 0 with input as testing.input_with("credentials.rotate", _target, _window(true))
	count(deferral.deny_reasons) == 0 with input as testing.input_with("credentials.rotate", _target, _window(true))
}

test_defer_when_only_an_unauthoritative_source_says_true if {
	every source in ["agent", "enforcement_point", "Agent ", "unknown-system", ""] {
		i := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": testing.fact(true, source)}})
		reasons := deferral.reasons with input as i
		[r.rule_id | some r in reasons] == ["aarm.deferral.missing_context"]
		some r in reasons
		contains(r.message, "authoritative")
		deferral.deferral.context_needed == ["maintenance_window"] with input as i
		count(deferral.deny_reasons) == 0 with input as i
	}
}

test_deny_when_any_source_says_false if {
	# A fact may always tighten: the agent's own "false" denies like the calendar's.
	i := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": testing.fact(false, "agent")}})
	{r.code | some r in deferral.deny_reasons} == {"context_denied"} with input as i
	count(deferral.reasons) == 0 with input as i
}

test_allow_authoritative_sources_come_from_config if {
	i := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": testing.fact(true, "my-cmdb")}})
	count(deferral.reasons) == 1 with input as i
	count(deferral.reasons) == 0 with input as i
		with data.aarm.config.facts as _sources({"*": ["my-cmdb"]})
	count(deferral.reasons) == 0 with input as i
		with data.aarm.config.facts as _sources({"maintenance_window": ["My-CMDB"]})
	count(deferral.reasons) == 1 with input as i
		with data.aarm.config.facts as _sources({"maintenance_window": ["other"], "*": ["my-cmdb"]})

	# A self-asserted source stays unauthoritative even when a list names it.
	j := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": testing.fact(true, "agent")}})
	count(deferral.reasons) == 1 with input as j
		with data.aarm.config.facts as _sources({"*": ["agent"]})
}

_sources(lists) := {"authoritative_sources": lists, "self_asserted_sources": data.aarm.config.facts.self_asserted_sources}

test_allow_tools_without_required_facts if {
	count(deferral.reasons) == 0 with input as testing.input_for("db.query", _target)
	count(deferral.reasons) == 0 with input as testing.input_for("mcp.mystery", _target)
}

test_defer_timeout_and_trigger_come_from_config if {
	d := deferral.deferral with input as testing.input_for("credentials.rotate", _target)
		with data.aarm.config.deferral.timeout_seconds as 60
	d.timeout_seconds == 60
}

# --- issue 4 triggers ---------------------------------------------------------------

_fact(value) := testing.fact(value, "monitoring")

test_defer_dependency_on_deferred_action if {
	i := testing.input_with("crm.query", _target, {"dependencies": {"deferred": ["d-2", "d-1"], "denied": [], "unknown": [], "depth": 1}})
	deferral.deferral == {"trigger": "dependency", "context_needed": ["resolution:d-1", "resolution:d-2"], "timeout_seconds": 300} with input as i
	{r.code | some r in deferral.reasons} == {"dependency"} with input as i
}

test_deny_dependency_denied_or_too_deep if {
	denied := deferral.dependency_deny_reasons with input as testing.input_with("crm.query", _target, {"dependencies": {"deferred": [], "denied": ["d-9"], "depth": 0}})
	{r.code | some r in denied} == {"dependency_denied"}
	deep := deferral.dependency_deny_reasons with input as testing.input_with("crm.query", _target, {"dependencies": {"deferred": ["d-3"], "denied": [], "depth": 4}})
	{r.code | some r in deep} == {"defer_depth_exceeded"}
	ok := deferral.dependency_deny_reasons with input as testing.input_with("crm.query", _target, {"dependencies": {"deferred": ["d-3"], "denied": [], "depth": 3}})
	count(ok) == 0
}

test_defer_environment_state_conflict if {
	i := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": _fact(true), "environment_state_conflict": _fact(true)}})
	deferral.deferral == {"trigger": "conflict", "context_needed": ["environment_state_conflict"], "timeout_seconds": 300} with input as i
	count(deferral.reasons) == 0 with input as testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": _fact(true), "environment_state_conflict": _fact(false)}})
}

test_defer_conflicting_context_rules if {
	i := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": _fact(true), "change_ticket": _fact("approved"), "change_freeze": _fact(true)}})
	d := deferral.deferral with input as i
	d.trigger == "conflict"
	d.context_needed == ["change_freeze", "change_ticket"]
}

test_defer_low_confidence if {
	i := testing.input_with("crm.query", _target, {"risk_signals": {"intent_confidence": 0.59}})
	deferral.deferral == {"trigger": "low_confidence", "context_needed": ["intent_confirmation"], "timeout_seconds": 300} with input as i
	count(deferral.reasons) == 0 with input as testing.input_with("crm.query", _target, {"risk_signals": {"intent_confidence": 0.6}})
}

test_defer_trigger_order_and_union_of_context_needed if {
	i := testing.input_with("credentials.rotate", _target, {"risk_signals": {"intent_confidence": 0.1}, "dependencies": {"deferred": ["d-1"], "depth": 1}})
	d := deferral.deferral with input as i
	d.trigger == "dependency"
	d.context_needed == ["intent_confirmation", "maintenance_window", "resolution:d-1"]
	{r.code | some r in deferral.reasons} == {"dependency", "low_confidence", "missing_context"} with input as i
	d2 := deferral.deferral with input as i
		with data.aarm.config.deferral.trigger_order as ["low_confidence"]
	d2.trigger == "low_confidence"
	d3 := deferral.deferral with input as i
		with data.aarm.config.deferral.trigger_order as []
	d3.trigger == "dependency"
}

# --- explanations -------------------------------------------------------------------

_one(reasons) := r if {
	count(reasons) == 1
	some r in reasons
}

test_explain_a_missing_fact_names_the_fact_and_who_may_assert_it if {
	r := _one(deferral.reasons) with input as testing.input_for("credentials.rotate", _target)
	r.param == null
	r.provenance == null
	r.would_change == {
		"kind": "fact",
		"text": `fact "maintenance_window" true from an authoritative source (change-calendar, change-management, cmdb, monitoring, ticketing, conformance, conformance-resolver)`,
		"fact": "maintenance_window",
		"context_needed": ["maintenance_window"],
	}
	agent := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": testing.fact(true, "agent")}})
	a := _one(deferral.reasons) with input as agent
	a.would_change.fact == "maintenance_window"
}

test_explain_a_false_fact_names_the_fact if {
	r := _one(deferral.deny_reasons) with input as testing.input_with("credentials.rotate", _target, _window(false))
	r.would_change == {
		"kind": "fact",
		"text": `fact "maintenance_window" true (change-calendar reports false)`,
		"fact": "maintenance_window",
		"context_needed": ["maintenance_window"],
	}
}

test_explain_dependencies_conflicts_and_low_confidence if {
	dep := _one(deferral.reasons) with input as testing.input_with("crm.query", _target, {"dependencies": {"deferred": ["d-2"], "denied": [], "unknown": [], "depth": 1}})
	dep.would_change.kind == "resolution"
	dep.would_change.context_needed == ["resolution:d-2"]
	denied := _one(deferral.dependency_deny_reasons) with input as testing.input_with("crm.query", _target, {"dependencies": {"deferred": [], "denied": ["d-9"], "depth": 0}})
	denied.would_change.kind == "none"
	deep := _one(deferral.dependency_deny_reasons) with input as testing.input_with("crm.query", _target, {"dependencies": {"deferred": ["d-3"], "denied": [], "depth": 4}})
	deep.would_change.threshold == 3
	deep.would_change.value == 4

	i := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": _fact(true), "environment_state_conflict": _fact(true)}})
	conflict := _one(deferral.reasons) with input as i
	conflict.would_change.fact == "environment_state_conflict"
	rules := testing.input_with("credentials.rotate", _target, {"facts": {"maintenance_window": _fact(true), "change_ticket": _fact("approved"), "change_freeze": _fact(true)}})
	disagree := _one(deferral.reasons) with input as rules
	disagree.would_change.kind == "context"
	disagree.would_change.context_needed == ["change_freeze", "change_ticket"]

	low := _one(deferral.reasons) with input as testing.input_with("crm.query", _target, {"risk_signals": {"intent_confidence": 0.4}})
	low.would_change == {
		"kind": "signal",
		"text": "an intent confidence of at least 0.6, or the context intent_confirmation",
		"threshold": 0.6,
		"value": 0.4,
		"context_needed": ["intent_confirmation"],
	}
}
