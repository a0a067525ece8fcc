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
	"artifact_classification": "NONE",
}

# METADATA
# description: input.dependencies of an action that consumes no other action's output.
dependencies := {"deferred": [], "denied": [], "unknown": [], "depth": 0}

# METADATA
# description: input.provenance of an action with no parameter traced to untrusted content.
provenance := {"parameters": {}, "untrusted_only": [], "unseen": []}

# METADATA
# description: input.provenance of an action whose parameters at these paths came only from untrusted content (as whole values).
untrusted_provenance(paths) := {
	"parameters": {path: {"origins": ["tool_untrusted"], "whole": ["tool_untrusted"], "found": [], "untrusted_share": 0} | some path in paths},
	"untrusted_only": sort(paths),
	"unseen": [],
}

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

# --- input.analysis: the facts the service's analysis step gives ------------------------
# Builders for the facts of each analysed type, trimmed to the fields the pack reads but
# shaped as aarm_pdp.analysis gives them (docs/analysis.md), and analysed(...), which puts
# them into an input for the parameters the catalogue declares. The service's parsers are
# not re-implemented here: a test names the facts of each value it uses (canned), except
# for the types whose facts follow from the value without parsing (amount numbers, plain
# names and e-mail addresses, paths taken as already resolved).

# METADATA
# description: input.analysis.amounts of a session with no earlier payment.
no_amounts := {"session": _no_sums, "windows": {"3600": _no_sums, "86400": _no_sums}}

_no_sums := {"count": 0, "total": 0, "by_currency": {}}

# METADATA
# description: input.analysis.amounts after count earlier payments adding up to total (in the session and every window).
amounts(count, total) := {"session": _sums(count, total), "windows": {"3600": _sums(count, total), "86400": _sums(count, total)}}

_sums(count, total) := {"count": count, "total": total, "by_currency": {"EUR": total}}

# METADATA
# description: input.analysis with these facts by parameter; unparsed lists the ones that did not parse.
analysis(parameters) := {
	"version": "aarm.analysis.v1",
	"parameters": parameters,
	"unparsed": sort([p | some p, f in parameters; _unparsed(f)]),
	"names": {},
	"amounts": no_amounts,
}

_unparsed(f) if f.parsed == false

_unparsed(f) if f.truncated == true

# METADATA
# description: |
#   input_with(name, parameters, overrides) plus input.analysis for every parameter the
#   catalogue declares for tool name and the call gives: canned[value] when the test
#   names its facts, else the facts that follow from the value (numbers as amounts, names,
#   e-mail domains, paths as given); a list value gets one facts document per item.
#   overrides may carry "analysis" keys (names, amounts) merged over the result.
analysed(name, parameters, overrides, canned) := input_with(name, parameters, object.union(
	{"analysis": analysis(_analysed_facts(name, parameters, canned))},
	overrides,
))

_analysed_facts(name, parameters, canned) := {param: facts |
	is_object(parameters)
	some param, spec in data.aarm.catalogue.tools[name].parameters
	kind := _kind(spec.analysis)
	value := parameters[param]
	value != null
	facts := _facts_of(kind, value, parameters, canned)
}

_kind(spec) := spec if is_string(spec)

_kind(spec) := spec.type if is_object(spec)

_facts_of(kind, value, parameters, canned) := list_facts(kind, [_one(kind, item, parameters, canned) | some item in value]) if {
	is_array(value)
	kind in {"amount", "email", "host", "name", "path", "url"}
} else := _one(kind, value, parameters, canned)

_one(_, value, _, canned) := canned[value]

_one(kind, value, parameters, canned) := _derived(kind, value, parameters) if not canned[value]

_derived("amount", value, parameters) := amount_facts(value, object.get(parameters, "currency", null)) if is_number(value)

_derived("name", value, _) := name_facts(value) if is_string(value)

_derived("email", value, _) := email_facts(parts[count(parts) - 1]) if {
	is_string(value)
	parts := split(lower(value), "@")
	count(parts) > 1
}

_derived("path", value, _) := path_facts(value, {}) if is_string(value)

_derived(kind, value, _) := unparsed_facts(kind, "not_a_string", {}) if {
	kind != "amount"
	not is_string(value)
}

# METADATA
# description: |
#   Facts of a list value: one document per item (at most 100 analysed).
list_facts(kind, items) := {"type": kind, "parsed": every_parsed(items), "items": items, "truncated": false}

# METADATA
# description: True when every facts document of the list parsed.
every_parsed(items) if {
	every item in items {
		item.parsed == true
	}
} else := false

# METADATA
# description: Facts of a value that did not parse, with the most dangerous reading the analyser gives it.
unparsed_facts(kind, reason, reading) := object.union({"type": kind, "parsed": false, "reason": reason}, reading)

# METADATA
# description: |
#   Facts of a name (ASCII): lower case, tokens are the runs of letters or digits.
name_facts(text) := {
	"type": "name", "parsed": true, "normalized": lower(text), "skeleton": lower(text),
	"tokens": [m[0] | some m in regex.find_all_string_submatch_n(`[a-z]+|[0-9]+`, lower(text), -1)],
	"ascii": true, "confusable": false,
}

# METADATA
# description: |
#   Facts of a URL whose host is a domain (skeleton: the host itself unless given).
url_facts(scheme, host) := {
	"type": "url", "parsed": true, "scheme": scheme, "host": host, "host_type": "domain",
	"ip": null, "skeleton": host, "userinfo": false, "path": "/",
}

# METADATA
# description: Facts of a URL whose host is an IP address; flags say which ranges it is in (global when none).
ip_url_facts(scheme, address, flags) := object.union(url_facts(scheme, address), {
	"host_type": "ipv4",
	"ip": object.union({"version": 4, "address": address, "private": false, "loopback": false, "link_local": false, "global": count(flags) == 0}, flags),
})

# METADATA
# description: Facts of an e-mail address delivered to domain (ASCII, lower case).
email_facts(domain) := {"type": "email", "parsed": true, "ascii_domain": domain, "skeleton": domain, "registrable_domain": domain}

# METADATA
# description: Facts of a path that resolves to normalized; flags (system, protected, glob, decoded, ...) over the ordinary ones.
path_facts(normalized, flags) := object.union(
	{
		"type": "path", "parsed": true, "normalized": normalized, "absolute": startswith(normalized, "/"),
		"system": false, "protected": false, "glob": false, "percent_encoded": false, "traversal": false,
	},
	flags,
)

# METADATA
# description: |
#   Facts of an amount: value, and the currency of the companion parameter.
amount_facts(value, currency) := {
	"type": "amount", "parsed": true, "value": value, "negative": value < 0, "source": "number",
	"strict": true, "ambiguous": false, "currency": null, "currency_param": currency, "currency_conflict": false,
}

# METADATA
# description: |
#   Facts of a SQL text made of statements (see statement): the summary flags hold when
#   any statement has them, commands and tables are collected from the statements.
sql_facts(statements) := {
	"type": "sql", "parsed": true, "statements": statements,
	"statement_count": count(statements), "multi_statement": count(statements) > 1,
	"commands": sort({st.command | some st in statements}),
	"writes": _any(statements, "writes"), "destructive": _any(statements, "destructive"),
	"dynamic": _any(statements, "dynamic"), "opaque": _any(statements, "opaque"),
	"privilege": _any(statements, "privilege"), "executes_program": _any(statements, "program"),
	"server_file": _any(statements, "server_file"),
	"tables": sort({t.name | some st in statements; some t in st.targets; t.object == "table"}),
	"databases": sort({t.database | some st in statements; some t in st.targets; is_string(t.database)}),
	"schemas": sort({t.schema | some st in statements; some t in st.targets; is_string(t.schema)}),
	"reads": [r | some st in statements; some r in st.reads],
	"side_effect_functions": [], "comments": 0, "truncated": false,
}

_any(statements, flag) if {
	some st in statements
	st[flag] == true
} else := false

# METADATA
# description: |
#   One statement of sql_facts: its command ("DROP TABLE"), flags over the ordinary ones
#   (writes, destructive, privilege, program, server_file, opaque, dynamic, reads) and
#   targets (see target).
statement(command, flags, targets) := object.union(
	{
		"node": "", "command": command, "depth": 0, "via": "top",
		"writes": false, "destructive": false, "dynamic": false, "opaque": false, "privilege": false,
		"program": false, "server_file": false, "filter": null, "targets": targets, "reads": [], "functions": [],
	},
	flags,
)

# METADATA
# description: |
#   A statement target: object (table, schema, database, role, ...) with its database, schema and name.
target(object, database, schema, name) := {"object": object, "database": database, "schema": schema, "name": name}

# METADATA
# description: |
#   Facts of a WHERE condition: filter none, trivial or present, and the statements injected after it.
condition_facts(filter, injected) := object.union(sql_facts(injected), {
	"type": "sql_condition", "filter": filter, "injection": count(injected) > 0,
})

# METADATA
# description: |
#   Facts of a shell command made of commands (see command): effects over the all-false
#   ones, and extra fields over the rest (deletes, writes, urls, sql, nested_unparsed).
#   destructive and destructive_possible follow from the effects as the analyser derives them.
shell_facts(commands, effects, extra) := object.union(
	{
		"type": "shell", "parsed": true, "commands": commands,
		"programs": sort({c.program | some c in commands}),
		"effects": object.union(_no_effects, effects),
		"deletes": [], "writes": [], "urls": [], "sql": [], "nested_unparsed": [],
		"dynamic": false, "destructive": _flag_in(effects, _destructive_effects),
		"destructive_possible": _flag_in(effects, _destructive_effects | _possible_effects), "max_depth": 0,
	},
	extra,
)

_no_effects := {effect: false | some effect in ((_destructive_effects | _possible_effects) | {
	"recursive_delete", "find_delete", "download", "interpreter_code", "remote_command", "dynamic",
})}

_destructive_effects := {"root_wipe", "device_write", "format_device", "permission_wipe", "system_delete"}

_possible_effects := {
	"dynamic_delete", "download_to_shell", "opaque_code", "depth_exceeded", "truncated",
	"encoded_payload", "system_write", "unicode_whitespace",
}

_flag_in(effects, names) if {
	some name in names
	effects[name] == true
} else := false

# METADATA
# description: |
#   One simple command of shell_facts, as argv (program: the first word).
command(argv) := {"program": argv[0], "argv": argv, "wrappers": [], "depth": 0, "via": "top", "dynamic": false, "cwd": null}

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

test_analysis_builders if {
	analysis({"a": {"parsed": true, "truncated": true}, "b": {"parsed": false}, "c": {"parsed": true}}).unparsed == ["a", "b"]
	i := analysed("email.send", {"to": ["A@X.example", 7], "subject": "s"}, {}, {})
	[object.get(f, "ascii_domain", null) | some f in i.analysis.parameters.to.items] == ["x.example", null]
	i.analysis.parameters.to.parsed == false
	i.analysis.unparsed == ["to"]
	j := analysed("payments.transfer", {"amount": 5, "currency": "EUR"}, {"analysis": {"amounts": amounts(1, 7)}}, {})
	j.analysis.parameters.amount.value == 5
	j.analysis.parameters.amount.currency_param == "EUR"
	j.analysis.amounts.session == {"count": 1, "total": 7, "by_currency": {"EUR": 7}}
	analysed("db.query", "SELECT 1", {}, {}).analysis.parameters == {}
	name_facts("Prod-EU1").tokens == ["prod", "eu", "1"]
	shell_facts([command(["rm", "-rf", "/"])], {"root_wipe": true}, {}).destructive == true
	shell_facts([command(["ls"])], {"download_to_shell": true}, {}).destructive_possible == true
	shell_facts([command(["ls"])], {}, {}).destructive_possible == false
	sql_facts([statement("DROP TABLE", {"destructive": true}, [target("table", null, "s", "t")])]).schemas == ["s"]
	condition_facts("none", []).injection == false
	ip_url_facts("http", "10.0.0.1", {"private": true}).ip.global == false
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
