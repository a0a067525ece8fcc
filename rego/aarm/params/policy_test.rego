package aarm.params_test

import data.aarm.params
import data.aarm.testing

_deny_rules(name, parameters) := rules if {
	reasons := params.deny_reasons with input as testing.analysed(name, parameters, {}, _canned)
	rules := {reason.rule_id | some reason in reasons}
}

_deny_codes(name, parameters) := codes if {
	reasons := params.deny_reasons with input as testing.analysed(name, parameters, {}, _canned)
	codes := {reason.code | some reason in reasons}
}

_modify_rules(name, parameters) := rules if {
	reasons := params.modify_reasons with input as testing.analysed(name, parameters, {}, _canned)
	rules := {reason.rule_id | some reason in reasons}
}

_payment := {"amount": 250, "currency": "USD", "to_account": "DE89370400440532"}

test_allow_valid_parameters_have_no_findings if {
	_deny_rules("db.query", {"table": "customers", "limit": 10}) == set()
	_modify_rules("db.query", {"table": "customers", "limit": 10}) == set()
	_deny_rules("payments.transfer", _payment) == set()
	_deny_rules("email.send", {"to": ["bob@acme.example", "carol@partner.example"], "subject": "hi"}) == set()
	_deny_rules("http.get", {"url": "https://docs.python.org/3/"}) == set()
}

test_allow_unknown_tool_is_not_checked if {
	_deny_rules("mcp.mystery", {"anything": true}) == set()
}

test_deny_missing_required_parameter if {
	_deny_rules("payments.transfer", {"amount": 5, "currency": "USD"}) == {"aarm.params.required"}
	_deny_codes("payments.transfer", {"amount": 5, "currency": "USD"}) == {"parameter_invalid"}
}

test_deny_null_required_parameter if {
	_deny_rules("file.read", {"path": null}) == {"aarm.params.required"}
}

test_deny_parameters_not_an_object if {
	_deny_rules("file.read", "/etc/hosts") == {"aarm.params.not_an_object", "aarm.params.required"}
	_modify_rules("db.query", ["customers"]) == set()
}

test_deny_unexpected_parameter_on_strict_tool if {
	_deny_rules("payments.transfer", object.union(_payment, {"note_to_self": "x"})) == {"aarm.params.unexpected"}
}

test_allow_unexpected_parameter_on_open_tool if {
	_deny_rules("db.query", {"table": "customers", "limit": 5, "hint": "fast"}) == set()
}

test_deny_wrong_type if {
	_deny_rules("payments.transfer", object.union(_payment, {"amount": "lots"})) == {"aarm.params.type"}
	_deny_rules("db.query", {"table": "customers", "limit": 10.5}) == {"aarm.params.type"}
	_deny_rules("file.delete", {"path": "/tmp/x", "recursive": "yes"}) == {"aarm.params.type"}
	_deny_rules("email.send", {"to": 42}) == {"aarm.params.type"}
}

test_deny_wrong_item_type if {
	_deny_rules("email.send", {"to": ["bob@acme.example", 7]}) == {"aarm.params.type"}
}

test_deny_out_of_range if {
	_deny_rules("payments.transfer", object.union(_payment, {"amount": 0})) == {"aarm.params.range"}
	_deny_rules("payments.transfer", object.union(_payment, {"amount": 20000000})) == {"aarm.params.range"}
	_deny_rules("db.query", {"table": "customers", "limit": -1}) == {"aarm.params.range"}
}

test_deny_too_long if {
	_deny_rules("payments.transfer", object.union(_payment, {"memo": concat("", ["a" | some _ in numbers.range(1, 141)])})) == {"aarm.params.length"}
	too_many := [sprintf("u%d@acme.example", [i]) | some i in numbers.range(1, 51)]
	_deny_rules("email.send", {"to": too_many}) == {"aarm.params.length"}
}

test_deny_pattern_mismatch if {
	_deny_rules("db.query", {"table": "customers; DROP TABLE x", "limit": 1}) == {"aarm.params.pattern"}
	_deny_rules("payments.transfer", object.union(_payment, {"to_account": "de89 bad!"})) == {"aarm.params.pattern"}
}

test_allow_object_parameters if {
	_deny_rules("http.get", {"url": "https://docs.python.org/3/", "headers": {"accept": "text/html"}}) == set()
}

test_deny_url_scheme_not_allowed if {
	_deny_rules("http.post", {"url": "http://api.stripe.com/v1"}) == {"aarm.params.scheme"}
	_deny_rules("http.get", {"url": "ftp://files.example/x"}) == {"aarm.params.scheme"}
	some reason in params.deny_reasons with input as testing.analysed("http.post", {"url": "http://api.stripe.com/v1"}, {}, _canned)
	contains(reason.message, `scheme "http"; allowed: https`)

	# A URL that did not parse has no scheme to check (aarm.analysis denies it).
	_deny_rules("http.get", {"url": "not a url"}) == set()
}

test_deny_enum_mismatch if {
	_deny_rules("payments.transfer", object.union(_payment, {"currency": "BTC"})) == {"aarm.params.enum"}
}

test_deny_blocklisted_value if {
	_deny_rules("slack.post", {"channel": "public-updates", "text": "merger"}) == {"aarm.params.blocklist"}
	_deny_codes("slack.post", {"channel": "#public-updates", "text": "x"}) == {"parameter_blocked"}
	_deny_rules("file.read", {"path": "/home/alice/.ssh/id_rsa"}) == {"aarm.params.blocklist"}
	_deny_rules("file.write", {"path": "/etc/cron.d/job", "content": "x"}) == {"aarm.params.blocklist"}
}

test_deny_blocked_path_in_every_reading if {
	# As given, as it resolves, and as it percent-decodes.
	_deny_rules("file.read", {"path": "/tmp/../etc/shadow"}) == {"aarm.params.blocklist"}
	_deny_rules("file.read", {"path": "/home/alice/.aws/%63redentials"}) == {"aarm.params.blocklist"}
	_deny_rules("file.write", {"path": "/home/alice/project/../.bashrc", "content": "x"}) == {"aarm.params.blocklist"}
	some reason in params.deny_reasons with input as testing.analysed("file.read", {"path": "/tmp/../etc/shadow"}, {}, _canned)
	contains(reason.message, `(read as "/etc/shadow")`)
	_deny_rules("file.read", {"path": "/home/alice/project/docs/../src/main.py"}) == set()
}

test_deny_sql_that_writes_through_a_read_tool if {
	every sql in ["DELETE FROM orders", "GRANT ALL ON users TO PUBLIC", "SELEC * FRM", "SELECT pg_terminate_backend(1)"] {
		_deny_rules("db.query", {"sql": sql, "limit": 10}) == {"aarm.params.read_only_sql"}
	}
	some reason in params.deny_reasons with input as testing.analysed("db.query", {"sql": "DELETE FROM orders", "limit": 10}, {}, _canned)
	reason.message == `db.query is a read tool, and its parameter "sql" destroys data, writes; a read tool may only read`
	_deny_rules("db.query", {"sql": "SELECT 1", "limit": 10}) == set()
	_deny_rules("db.execute", {"sql": "DELETE FROM orders"}) == set()
}

test_deny_filter_that_carries_more_than_a_condition if {
	_deny_rules("db.query", {"table": "orders", "where": "id = 1; DROP TABLE users", "limit": 1}) == {"aarm.params.condition_injection", "aarm.params.read_only_sql"}
	_deny_rules("db.delete", {"table": "orders", "where": "id = 1; DROP TABLE users"}) == {"aarm.params.condition_injection"}
	_deny_rules("db.delete", {"table": "orders", "where": "id = 1"}) == set()
}

_canned := {
	"/home/alice/.ssh/id_rsa": testing.path_facts("/home/alice/.ssh/id_rsa", {}),
	"/tmp/../etc/shadow": testing.path_facts("/etc/shadow", {"system": true, "traversal": true}),
	"/home/alice/.aws/%63redentials": testing.path_facts("/home/alice/.aws/%63redentials", {"percent_encoded": true, "decoded": "/home/alice/.aws/credentials"}),
	"/home/alice/project/../.bashrc": testing.path_facts("/home/alice/.bashrc", {"traversal": true}),
	"/home/alice/project/docs/../src/main.py": testing.path_facts("/home/alice/project/src/main.py", {"traversal": true}),
	"http://api.stripe.com/v1": testing.url_facts("http", "api.stripe.com"),
	"ftp://files.example/x": testing.url_facts("ftp", "files.example"),
	"https://docs.python.org/3/": testing.url_facts("https", "docs.python.org"),
	"not a url": testing.unparsed_facts("url", "invalid_url", {"host": null}),
	"DELETE FROM orders": testing.sql_facts([testing.statement("DELETE", {"writes": true, "destructive": true}, [testing.target("table", null, null, "orders")])]),
	"GRANT ALL ON users TO PUBLIC": testing.sql_facts([testing.statement("GRANT", {"writes": true, "privilege": true}, [])]),
	"SELEC * FRM": testing.unparsed_facts("sql", "syntax_error", {"writes": true, "destructive": true, "opaque": true, "statements": []}),
	"SELECT pg_terminate_backend(1)": object.union(testing.sql_facts([testing.statement("SELECT", {}, [])]), {"side_effect_functions": ["pg_terminate_backend"]}),
	"SELECT 1": testing.sql_facts([testing.statement("SELECT", {}, [])]),
	"id = 1; DROP TABLE users": testing.condition_facts("present", [testing.statement("DROP TABLE", {"writes": true, "destructive": true, "via": "injection"}, [testing.target("table", null, null, "users")])]),
	"id = 1": testing.condition_facts("present", []),
}

test_modify_caps_value_above_cap if {
	_modify_rules("db.query", {"table": "customers", "limit": 5000}) == {"aarm.params.cap"}
	params.modified_parameters == {"table": "customers", "limit": 1000} with input as testing.input_for("db.query", {"table": "customers", "limit": 5000})
}

test_modify_fills_missing_capped_value if {
	_modify_rules("db.query", {"table": "customers"}) == {"aarm.params.default_value"}
	params.modified_parameters == {"table": "customers", "limit": 1000} with input as testing.input_for("db.query", {"table": "customers"})
}

test_modify_keeps_other_parameters if {
	given := {"query": "vendor pricing", "folder": "inbox", "limit": 10000}
	params.modified_parameters == object.union(given, {"limit": 100}) with input as testing.input_for("email.search", given)
}

test_allow_value_at_cap_is_not_modified if {
	_modify_rules("db.query", {"table": "customers", "limit": 1000}) == set()
	_modify_rules("search.web", {"query": "opa"}) == set()
}

test_deny_reason_messages_name_the_parameter if {
	some reason in params.deny_reasons with input as testing.input_for("payments.transfer", {"amount": 5, "currency": "USD"})
	contains(reason.message, `"to_account"`)
}

_extra_tools := {"x.custom": {
	"category": "read",
	"risk_tier": "low",
	"parameters": {
		"anything": {},
		"flags": {"type": "array", "enum": ["a", "b"]},
	},
}}

test_allow_untyped_parameter_accepts_any_value if {
	rules := _deny_rules("x.custom", {"anything": {"deep": [1, 2]}}) with data.aarm.catalogue.tools as _extra_tools
	rules == set()
}

test_deny_enum_checks_each_array_item if {
	rules := _deny_rules("x.custom", {"flags": ["a", "c"]}) with data.aarm.catalogue.tools as _extra_tools
	rules == {"aarm.params.enum"}
}

test_allow_boolean_parameter if {
	_deny_rules("file.delete", {"path": "/tmp/x", "recursive": true}) == set()
}

# --- explanations -------------------------------------------------------------------

_deny_reason(name, parameters, rule_id) := r if {
	some r in params.deny_reasons with input as testing.analysed(name, parameters, {}, _canned)
	r.rule_id == rule_id
}

test_explain_a_value_out_of_range_names_the_limit_and_the_value if {
	r := _deny_reason("payments.transfer", object.union(_payment, {"amount": 20000000}), "aarm.params.range")
	r.param == "amount"
	r.provenance == null
	r.would_change == {"kind": "value", "text": "a value of at most 10000000", "threshold": 10000000, "value": 20000000}
	low := _deny_reason("db.query", {"table": "customers", "limit": -1}, "aarm.params.range")
	low.would_change.threshold == 1
	low.would_change.value == -1
}

test_explain_missing_unexpected_and_blocked_parameters if {
	m := _deny_reason("payments.transfer", {"amount": 5, "currency": "USD"}, "aarm.params.required")
	m.param == "to_account"
	m.would_change == {"kind": "value", "text": `a value for parameter "to_account"`}
	u := _deny_reason("payments.transfer", object.union(_payment, {"bogus": 1}), "aarm.params.unexpected")
	u.param == "bogus"
	b := _deny_reason("slack.post", {"channel": "public-updates", "text": "merger"}, "aarm.params.blocklist")
	b.param == "channel"
	b.would_change.kind == "value"
	n := _deny_reason("db.query", "SELECT 1", "aarm.params.not_an_object")
	n.param == null
}

test_explain_a_cap_names_the_parameter if {
	some r in params.modify_reasons with input as testing.analysed("db.query", {"table": "customers", "limit": 5000}, {}, _canned)
	r.param == "limit"
	r.would_change == null
}
