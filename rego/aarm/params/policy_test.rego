package aarm.params_test

import data.aarm.params
import data.aarm.testing

_deny_rules(name, parameters) := rules if {
	reasons := params.deny_reasons with input as testing.input_for(name, parameters)
	rules := {reason.rule_id | some reason in reasons}
}

_deny_codes(name, parameters) := codes if {
	reasons := params.deny_reasons with input as testing.input_for(name, parameters)
	codes := {reason.code | some reason in reasons}
}

_modify_rules(name, parameters) := rules if {
	reasons := params.modify_reasons with input as testing.input_for(name, parameters)
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
	_deny_rules("email.send", {"to": "not-an-address"}) == {"aarm.params.pattern"}
	_deny_rules("http.post", {"url": "http://api.stripe.com/v1"}) == {"aarm.params.pattern"}
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

test_deny_egress_blocklisted_email_domain if {
	_deny_rules("email.send", {"to": ["alice@acme.example", "Compliance@Attacker.com"]}) == {"aarm.params.egress_blocklist"}
	_deny_codes("email.send", {"to": "x@mail.evil.com"}) == {"parameter_blocked"}
	_deny_rules("email.send", {"to": "a@acme.example", "bcc": ["drop@webhook.site"]}) == {"aarm.params.egress_blocklist"}
}

test_deny_egress_blocklisted_url if {
	_deny_rules("http.get", {"url": "https://pastebin.com/raw/abc"}) == {"aarm.params.egress_blocklist"}
	_deny_rules("browser.get", {"url": "http://x.ngrok.io:8080/hook"}) == {"aarm.params.egress_blocklist"}
}

test_deny_egress_allowlist_email if {
	_deny_rules("email.forward", {"message_id": "m1", "to": "legal-review@evil-corp.io"}) == {"aarm.params.egress_allowlist"}
	_deny_rules("email.forward", {"message_id": "m1", "to": "legal@acme.example"}) == set()
	_deny_rules("email.forward", {"message_id": "m1", "to": "legal@eu.partner.example"}) == set()
}

test_deny_egress_allowlist_url if {
	_deny_rules("http.post", {"url": "https://steal-keys.com/form", "body": {"k": "v"}}) == {"aarm.params.egress_allowlist", "aarm.params.egress_blocklist"}
	_deny_rules("http.post", {"url": "https://hooks.slack.com/services/T0/B0/x"}) == set()
}

test_deny_egress_allowlist_userinfo_trick if {
	_deny_rules("http.post", {"url": "https://api.stripe.com@steal.io/x"}) == {"aarm.params.egress_allowlist"}
}

test_deny_egress_allowlist_unparseable_destination if {
	rules := _deny_rules("http.post", {"url": "https://"})
	"aarm.params.egress_allowlist" in rules
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
