package aarm.signals_test

import data.aarm.signals
import data.aarm.testing

# Who acts (alice, no roles, no delegation, unless `identity` says otherwise) and the risk signals.
_actor(identity, risk_signals) := {
	"identity": object.union({"human": "alice@acme.example", "roles": [], "delegation_chain": []}, identity),
	"risk_signals": risk_signals,
}

_deny(name, identity, risk_signals) := {r.code | some r in reasons} if {
	reasons := signals.deny_reasons with input as testing.input_with(name, {"to": "x@partner.example"}, _actor(identity, risk_signals))
}

_stepup(name, parameters, identity, risk_signals) := {f.reason.code | some f in findings} if {
	findings := signals.stepup_findings with input as testing.analysed(name, parameters, _actor(identity, risk_signals), {})
}

test_deny_high_injection_score_on_risky_tools if {
	every name in ["file.delete", "email.send", "payments.transfer", "shell.exec", "iam.grant_role"] {
		_deny(name, {}, {"injection_score": 0.94}) == {"injection_risk"}
	}
}

test_allow_injection_score_at_threshold_or_on_reads if {
	_deny("file.delete", {}, {"injection_score": 0.8}) == set()
	_deny("db.query", {}, {"injection_score": 0.99}) == set()
	_deny("file.delete", {}, {"injection_score": "high"}) == set()
}

_link(from, to, scopes) := {"delegator": from, "delegatee": to, "scopes": scopes}

test_deny_delegation_that_widens_scope if {
	chain := [_link("alice@acme.example", "orchestrator", ["email"]), _link("orchestrator", "agent-7", ["email", "admin"])]
	_deny("crm.query", {"delegation_chain": chain}, {}) == {"delegation_scope_exceeded"}
	chain2 := [_link("alice@acme.example", "orchestrator", []), _link("orchestrator", "agent-7", ["crm"])]
	_deny("crm.query", {"delegation_chain": chain2}, {}) == {"delegation_scope_exceeded"}
	chain3 := [{"delegator": "alice@acme.example", "delegatee": "orchestrator"}, _link("orchestrator", "agent-7", ["crm"])]
	_deny("crm.query", {"delegation_chain": chain3}, {}) == {"delegation_scope_exceeded"}
}

test_allow_delegation_that_narrows_scope if {
	chain := [
		_link("alice@acme.example", "orchestrator", ["email", "crm"]),
		_link("orchestrator", "agent-7", ["email.send", "crm:read"]),
		_link("agent-7", "sub-agent", ["email.send"]),
	]
	_deny("crm.query", {"delegation_chain": chain}, {}) == set()
	wildcard := [_link("alice@acme.example", "orchestrator", ["*"]), _link("orchestrator", "agent-7", ["anything"])]
	_deny("crm.query", {"delegation_chain": wildcard}, {}) == set()
	_deny("crm.query", {"delegation_chain": [_link("alice@acme.example", "agent-7", ["admin"])]}, {}) == set()
}

test_step_up_external_send_from_low_trust_memory if {
	_stepup("email.send", {"to": "x@vendor.example"}, {}, {"memory_source_trust": 0.5}) == {"memory_trust"}
}

test_allow_trusted_memory_or_internal_send if {
	_stepup("email.send", {"to": "x@vendor.example"}, {}, {"memory_source_trust": 0.8}) == set()
	_stepup("email.send", {"to": "bob@acme.example"}, {}, {"memory_source_trust": 0.1}) == set()
	_stepup("db.query", {"table": "orders"}, {}, {"memory_source_trust": 0.1}) == set()
}

test_step_up_send_with_admin_scope if {
	_stepup("email.send", {"to": "bob@acme.example"}, {"roles": ["admin"]}, {}) == {"privileged_scope"}
	_stepup("email.send", {"to": "bob@acme.example"}, {"roles": ["Administrator"]}, {}) == {"privileged_scope"}
	_stepup("email.send", {"to": "bob@acme.example"}, {"effective_scope": ["mail:admin"]}, {}) == {"privileged_scope"}
	_stepup("slack.post", {"channel": "#eng", "text": "x"}, {"roles": ["root"]}, {}) == {"privileged_scope"}
}

test_allow_send_with_ordinary_roles if {
	_stepup("email.send", {"to": "bob@acme.example"}, {"roles": ["analyst", "badminton"]}, {}) == set()
	_stepup("db.query", {"table": "orders"}, {"roles": ["admin"]}, {}) == set()
	_stepup("email.send", {"to": "bob@acme.example"}, {"effective_scope": [42]}, {}) == set()
}

# --- explanations -------------------------------------------------------------------

test_explain_an_injection_score_names_the_threshold_and_the_score if {
	some r in signals.deny_reasons with input as testing.input_with("email.send", {"to": "x@partner.example"}, _actor({}, {"injection_score": 0.94}))
	r.param == null
	r.would_change == {"kind": "signal", "text": "a prompt-injection score of at most 0.8", "threshold": 0.8, "value": 0.94}
}

test_explain_a_widened_delegation_names_the_scope if {
	chain := [
		{"delegator": "alice@acme.example", "delegatee": "agent-7", "scopes": ["email"]},
		{"delegator": "agent-7", "delegatee": "agent-8", "scopes": ["payments"]},
	]
	some r in signals.deny_reasons with input as testing.input_with("crm.query", {}, _actor({"delegation_chain": chain}, {}))
	r.would_change == {"kind": "identity", "text": `a delegation chain in which agent-7 was delegated scope "payments" before passing it on`}
}

test_explain_memory_trust_and_privileged_scope_need_their_group if {
	some m in signals.stepup_findings with input as testing.analysed("email.send", {"to": "x@vendor.example"}, _actor({}, {"memory_source_trust": 0.5}), {})
	m.reason.would_change == {"kind": "approval", "text": "an approval by security, or memory trust of at least 0.8", "approver_group": "security", "threshold": 0.8, "value": 0.5}
	some p in signals.stepup_findings with input as testing.analysed("email.send", {"to": "bob@acme.example"}, _actor({"roles": ["admin"]}, {}), {})
	p.reason.would_change.approver_group == "security"
	p.reason.param == null
}
