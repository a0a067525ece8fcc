package aarm.explain_test

import data.aarm.explain
import data.aarm.testing

_meta := {"custom": {"rule_id": "aarm.x.rule", "code": "x_code"}}

_recent := [
	{"decision_id": "d-1", "name": "db.query", "category": "read", "decision": "ALLOW", "classification": "INTERNAL", "outcome": "executed"},
	{"decision_id": "d-2", "name": "web.fetch", "category": "read", "decision": "ALLOW", "classification": "PUBLIC", "outcome": "executed"},
	{"decision_id": "d-3", "name": "web.fetch", "category": "read", "decision": "ALLOW", "classification": "PUBLIC", "outcome": "pending"},
	{"decision_id": "d-4", "name": "email.read", "category": "read", "decision": "ALLOW", "classification": "INTERNAL", "outcome": "executed"},
]

# Six earlier actions, the last four in the window: call numbers 3..6.
_session(recent) := testing.input_with("email.send", {}, {"session": {"action_count": 6, "recent": recent}})

test_reason_has_the_six_members if {
	explain.reason(_meta, "m", "to", null, explain.nothing("n")) == {
		"code": "x_code", "rule_id": "aarm.x.rule", "message": "m",
		"param": "to", "provenance": null, "would_change": {"kind": "none", "text": "n"},
	}
}

test_normalized_gives_an_overlay_reason_null_explanations if {
	explain.normalized({"code": "c", "rule_id": "r", "message": "m", "extra": 1}) == {
		"code": "c", "rule_id": "r", "message": "m", "param": null, "provenance": null, "would_change": null,
	}
	full := explain.reason(_meta, "m", "p", explain.provenance("unseen"), null)
	explain.normalized(full) == full
}

test_top_level_parameter_of_a_path if {
	explain.top("to[0]") == "to"
	explain.top("recipient.iban") == "recipient"
	explain.top("amount") == "amount"
}

test_untrusted_calls_are_the_executed_untrusted_outputs_numbered_in_the_session if {
	calls := explain.untrusted_calls with input as _session(_recent)
	calls == [
		{"call": 4, "tool": "web.fetch", "decision_id": "d-2"},
		{"call": 6, "tool": "email.read", "decision_id": "d-4"},
	]
	explain.sources_text == "the outputs of call 4, web.fetch (decision d-2); call 6, email.read (decision d-4)" with input as _session(_recent)
	explain.sources_text == "the output of call 6, web.fetch (decision d-2)" with input as _session(array.slice(_recent, 0, 2))
	explain.sources_text == "content the session ingested earlier" with input as _session([])
	explain.untrusted_calls == [] with input as testing.input_for("email.send", {})
}

test_sources_without_a_decision_id if {
	recent := [{"name": "web.fetch", "outcome": "executed"}]
	explain.sources_text == "the output of call 6, web.fetch" with input as _session(recent)
}

test_provenance_names_sources_only_for_untrusted_content if {
	p := explain.provenance("untrusted") with input as _session(_recent)
	p.origin == "untrusted"
	[s.decision_id | some s in p.sources] == ["d-2", "d-4"]
	pointed := explain.provenance("pointed") with input as _session(_recent)
	count(pointed.sources) == 2
	explain.provenance("user") == {"origin": "user", "sources": []} with input as _session(_recent)
	explain.provenance("unseen") == {"origin": "unseen", "sources": []} with input as _session(_recent)
}

test_origin_of_provenance_origins if {
	explain.origin(["unseen"]) == "unseen"
	explain.origin(["tool_untrusted"]) == "untrusted"
	explain.origin(["tool_untrusted", "user_pointed"]) == "pointed"
	explain.origin(["tool_untrusted", "user"]) == "user"
	explain.origin(["tool_trusted", "tool_untrusted"]) == "trusted"
}

test_of_param_takes_the_least_trusted_value if {
	docs := {
		"to[0]": {"origins": ["user"]},
		"to[1]": {"origins": ["tool_untrusted"]},
		"cc": {"origins": ["tool_trusted"]},
	}
	i := testing.input_with("email.send", {}, {"provenance": {"parameters": docs}, "session": {"action_count": 6, "recent": _recent}})
	p := explain.of_param("to") with input as i
	p.origin == "untrusted"
	count(p.sources) == 2
	explain.of_param("cc") == {"origin": "trusted", "sources": []} with input as i
	explain.of_param("subject") == null with input as i
}

test_changes if {
	explain.change("value", "t") == {"kind": "value", "text": "t"}
	explain.compared("signal", "t", 0.8, 0.95) == {"kind": "signal", "text": "t", "threshold": 0.8, "value": 0.95}
	explain.fact("backup_verified", "t") == {"kind": "fact", "text": "t", "fact": "backup_verified", "context_needed": ["backup_verified"]}
}

test_approval_names_the_group_the_finding_resolves_to if {
	explain.approval("finance", "") == {"kind": "approval", "text": "an approval by finance", "approver_group": "finance"}
	explain.approval("finance", "an amount of at most 10") == {
		"kind": "approval",
		"text": "an approval by finance, or an amount of at most 10",
		"approver_group": "finance",
	}
	explain.approval_compared("finance", "x", 10, 20) == {"kind": "approval", "text": "an approval by finance, or x", "approver_group": "finance", "threshold": 10, "value": 20}

	# A group the config does not define: the fallback group approves (as aarm.stepup resolves it).
	explain.approver_group("nobody") == "platform"
	explain.approval("", "").approver_group == "platform"
}
