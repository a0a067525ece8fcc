# METADATA
# title: Shared test helpers
# description: |
#   Builders for aarm.v1 input documents, imported by the policy tests as
#   data.aarm.testing (the counterpart of Regal's ast.policy in
#   bundle/regal/ast/testing.rego). input_for gives the smallest input for one tool
#   call; input_with deep-merges overrides over it (object.union), so a test states only
#   what differs. The values below are neutral parts to merge in: the request fields of
#   the docs/opa-contract.md example and the issue-4 keys of a known session with no
#   history. Test support only: the file name ends in _test.rego so it stays out of the
#   policy hash, and no policy may import it (scripts/check_rego_structure.py).
# related_resources:
#   - ref: docs/policies/testing.md
#     description: testing helpers page
package aarm.testing

# METADATA
# description: |
#   The action block of a call to tool name "tool.operation": tool is the text before
#   the first dot, operation the rest; no dependencies, not resolved from a meta-tool.
action(name, parameters) := {
	"tool": split(name, ".")[0],
	"operation": substring(name, count(split(name, ".")[0]) + 1, -1),
	"name": name,
	"parameters": parameters,
	"depends_on": [],
	"original_tool": "",
}

# METADATA
# description: |
#   The smallest aarm.v1 input for a call of tool name with parameters (taken as
#   given, so a test may pass a non-object): exactly the keys rego/schemas/input.json
#   requires, with empty identity, facts and risk_signals, and none of the optional
#   keys (request_id, now, session, dependencies, provenance, drift).
input_for(name, parameters) := {
	"version": "aarm.v1",
	"action": action(name, parameters),
	"identity": {},
	"facts": {},
	"risk_signals": {},
}

# METADATA
# description: |
#   input_for(name, parameters) with overrides deep-merged over it by object.union:
#   nested objects merge key by key, any other value (string, number, array, null)
#   replaces the one below. Build overrides from the values below and the test's own.
input_with(name, parameters, overrides) := object.union(input_for(name, parameters), overrides)

# METADATA
# description: A fact as the service passes it in input.facts, observed a minute before now.
fact(value, source) := {"value": value, "source": source, "observed_at": "2026-11-26T01:59:00Z"}

# METADATA
# description: The session's original request (session.original_request), no expected scope.
original_request(text, intent_class, max_classification) := {
	"text": text,
	"intent_class": intent_class,
	"expected_scope": [],
	"max_classification": max_classification,
}

# METADATA
# description: |
#   The request-level fields of the example input in docs/opa-contract.md: ids, the
#   clock, alice's full identity acting through agent-7 with no delegation, and a low
#   injection score.
contract := {
	"request_id": "req-1",
	"now": "2026-11-26T02:00:00Z",
	"now_ns": 1795658400000000000,
	"identity": {
		"tenant": "acme", "human": "alice@acme.example", "service": "agent-platform",
		"agent": "agent-7", "session_id": "s-1", "roles": ["analyst"],
		"delegation_chain": [],
	},
	"risk_signals": {"injection_score": 0.1},
}

# METADATA
# description: input.session of a known session before its first action.
session := {
	"known": true,
	"original_request": null,
	"action_count": 0,
	"elapsed_seconds": 0,
	"tools_used": [],
	"categories_used": [],
	"highest_classification": "NONE",
	"labels": [],
	"untrusted_content": false,
	"counts": {"60": {"all": 0}, "3600": {"all": 0}},
	"recent": [],
	"pending_deferrals": [],
	"artifact_classification": "NONE",
}

# METADATA
# description: input.dependencies of an action that consumes no other action's output.
dependencies := {"deferred": [], "denied": [], "unknown": [], "depth": 0}

# METADATA
# description: input.provenance of an action with no parameter traced to untrusted content.
provenance := {"parameters": {}, "untrusted_only": [], "unseen": []}

# METADATA
# description: input.drift of an action that has not drifted from the original request.
drift := {
	"action": 0, "alignment": 1, "max": 0, "ema": 0,
	"components": {"scope": 0, "classification": 0, "novelty": 0, "chain": 0},
	"scope_expansion": false, "classification_escalation": false,
}

# METADATA
# description: The issue-4 keys (session, dependencies, provenance, drift) of a known session with no history.
known_session := {
	"session": session,
	"dependencies": dependencies,
	"provenance": provenance,
	"drift": drift,
}

# --- the helpers' own tests -------------------------------------------------------------

test_input_for_splits_the_name_at_the_first_dot if {
	input_for("db.query", {"limit": 1}) == {
		"version": "aarm.v1",
		"action": {
			"tool": "db", "operation": "query", "name": "db.query",
			"parameters": {"limit": 1}, "depends_on": [], "original_tool": "",
		},
		"identity": {}, "facts": {}, "risk_signals": {},
	}
	action("mcp.github.create_issue", {}).operation == "github.create_issue"
	action("", "not an object") == {
		"tool": "", "operation": "", "name": "",
		"parameters": "not an object", "depends_on": [], "original_tool": "",
	}
}

test_input_with_merges_objects_and_replaces_other_values if {
	i := input_with("db.query", {"limit": 1}, {
		"action": {"parameters": {"table": "t"}},
		"session": object.union(session, {"labels": ["PII"], "counts": {"3600": {"external_communication": 2}}}),
	})
	i.action.parameters == {"limit": 1, "table": "t"}
	i.session.labels == ["PII"]
	i.session.counts == {"60": {"all": 0}, "3600": {"all": 0, "external_communication": 2}}
	i.identity == {}
}

test_contract_and_known_session_give_every_top_level_key if {
	full := input_with("db.query", {}, object.union(contract, known_session))
	object.keys(full) == {
		"version", "request_id", "now", "now_ns", "identity", "action", "facts", "risk_signals",
		"session", "dependencies", "provenance", "drift",
	}
	full.facts == {}
	fact(true, "ticketing") == {"value": true, "source": "ticketing", "observed_at": "2026-11-26T01:59:00Z"}
	original_request("t", "", "NONE").expected_scope == []
}
