package aarm.analysis_test

import data.aarm.analysis
import data.aarm.testing

_in(name, parameters, canned) := testing.analysed(name, parameters, {}, canned)

_rules(i) := {reason.rule_id | some reason in reasons} if {
	reasons := analysis.deny_reasons with input as i
}

_drop := testing.sql_facts([testing.statement("DROP TABLE", {"writes": true, "destructive": true}, [testing.target("table", null, null, "t")])])

test_declared_reads_the_catalogue if {
	d := analysis.declared with input as testing.input_for("db.query", {})
	d.sql == {"type": "sql", "companions": {"database": "database", "environment": "environment"}}
	d.database == {"type": "name", "companions": {}}
	not d.table
	count(analysis.declared) == 0 with input as testing.input_for("crm.query", {})
	count(analysis.declared) == 0 with input as testing.input_for("mcp.mystery", {})
}

test_facts_and_values if {
	i := _in("email.send", {"to": ["a@acme.example", "b@evil.com"], "subject": "s"}, {})
	[f.ascii_domain | some f in analysis.values("to")] == ["acme.example", "evil.com"] with input as i
	analysis.values("cc") == [] with input as i
	not analysis.facts.subject with input as i
	j := _in("http.get", {"url": "u"}, {"u": testing.url_facts("https", "x.example")})
	[f.host | some f in analysis.values("url")] == ["x.example"] with input as j
	analysis.given("url") with input as j
	not analysis.given("headers") with input as j
	not analysis.given("url") with input as testing.input_for("http.get", "not an object")
}

test_sql_collects_parameters_and_shell_clients if {
	i := _in("db.query", {"sql": "x", "where": "w", "database": "d"}, {"x": _drop, "w": testing.condition_facts("present", [])})
	{[s.param, s.nested] | some s in analysis.sql} == {["sql", false], ["where", false]} with input as i
	some s in analysis.sql with input as i
	s.connection == {"database": "database", "environment": "environment"}
	shell := testing.shell_facts([testing.command(["psql", "-c", "DROP TABLE t"])], {}, {"sql": [_drop]})
	j := _in("shell.exec", {"command": "c"}, {"c": shell})
	analysis.sql == {{"param": "command", "facts": _drop, "connection": {}, "nested": true}} with input as j
	{s.param | some s in analysis.shell} == {"command"} with input as j
}

test_production_names_by_token if {
	every name in ["production", "prod1", "proddb", "customers_prod", "live_payments", "main", "prd", "prod-eu-1", "productiondb"] {
		analysis.production_name(testing.name_facts(name))
	}
	every name in ["product_catalog", "reproduction", "livestock", "maintenance", "staging", "prodigy"] {
		not analysis.production_name(testing.name_facts(name))
	}
	analysis.production_name(testing.unparsed_facts("name", "not_a_string", {}))
}

test_production_targets_and_parameters if {
	i := testing.analysed("db.execute", {"sql": "x", "database": "prod", "environment": "staging"}, {"analysis": {"names": {"live": testing.name_facts("live"), "scratch": testing.name_facts("scratch")}}}, {"x": _drop})
	analysis.production_target("live") with input as i
	not analysis.production_target("scratch") with input as i
	analysis.production_target("unknown") with input as i
	not analysis.production_target(null) with input as i
	analysis.production_param("database") with input as i
	not analysis.production_param("environment") with input as i
	not analysis.production_param("params") with input as i
	analysis.production_param("database") with input as testing.input_for("db.execute", {"database": "staging"})
}

test_deny_unparsed_declared_parameters if {
	unparsed := testing.unparsed_facts("shell", "syntax_error", {"destructive_possible": true})
	i := _in("shell.exec", {"command": "c"}, {"c": unparsed})
	_rules(i) == {"aarm.analysis.unparsed"}
	some reason in analysis.deny_reasons with input as i
	reason == {
		"code": "parameter_unparsed",
		"rule_id": "aarm.analysis.unparsed",
		"message": `shell.exec parameter "command" does not parse as shell (syntax_error); a value that cannot be read is judged at its most dangerous reading and not run`,
		"param": "command",
		"provenance": null,
		"would_change": {"kind": "value", "text": "a value that parses as shell"},
	}

	# A list: the reasons of its items, or that it has more items than were analysed.
	j := _in("email.send", {"to": ["ok@acme.example", 7]}, {})
	some r in analysis.deny_reasons with input as j
	contains(r.message, "(not_a_string)")
	many := testing.analysed("email.send", {"to": ["a@acme.example"]}, {"analysis": {"parameters": {"to": {"truncated": true}}, "unparsed": ["to"]}}, {})
	some m in analysis.deny_reasons with input as many
	contains(m.message, "(too many items)")

	# A parameter the catalogue does not declare is not this rule's business.
	k := testing.input_with("crm.query", {"query": "x"}, {"analysis": {"unparsed": ["query"]}})
	_rules(k) == set()
}

test_deny_declared_parameter_without_facts if {
	i := testing.input_for("http.post", {"url": "https://evil.com/x", "body": "b"})
	_rules(i) == {"aarm.analysis.missing"}
	some reason in analysis.deny_reasons with input as i
	reason.message == `http.post parameter "url" is declared url in the catalogue but reached policy without analysis facts`
	_rules(testing.input_for("http.post", {"url": null})) == set()
}

test_allow_parsed_parameters if {
	_rules(_in("http.get", {"url": "u"}, {"u": testing.url_facts("https", "x.example")})) == set()
	_rules(_in("crm.query", {"query": "x"}, {})) == set()
}
