package aarm.catalogue_test

import data.aarm.catalogue
import data.aarm.layers
import data.aarm.testing

test_catalogue_data_has_no_errors if {
	count(catalogue.errors) == 0
}

# A property of any catalogue (the pack's merged with any overlay): every entry is found by its name, with its own category
# and tier, and its declared semantic types are what parameters_of answers.
test_allow_every_catalogued_tool_is_its_own_entry if {
	every name, tool in layers.tools {
		catalogue.known with input as testing.input_for(name, {})
		catalogue.category == tool.category with input as testing.input_for(name, {})
		catalogue.risk_tier == tool.risk_tier with input as testing.input_for(name, {})
		catalogue.parameters_of({spec.semantic | some spec in tool.parameters}) == {p | some p, spec in tool.parameters; spec.semantic} with input as testing.input_for(name, {})
	}
}

_fixture := {"acme.lookup": {
	"category": "read",
	"risk_tier": "low",
	"output_trust": "trusted",
	"parameters": {
		"limit": {"type": "integer", "cap": 1000, "semantic": "count"},
		"sql": {"type": "string", "analysis": "sql", "semantic": "sql"},
		"note": {"type": "string"},
	},
}}

test_allow_known_tool_entry if {
	catalogue.known with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.category == "read" with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.risk_tier == "low" with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.entry.parameters.limit.cap == 1000 with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.parameters_of({"sql", "count"}) == {"limit", "sql"} with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.declares({"count"}) with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	not catalogue.declares({"amount"}) with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.parameters == {} with input as testing.input_for("mcp.mystery", {}) with data.aarm.catalogue.tools as _fixture
}

test_errors_flag_bad_semantic_declarations if {
	errors := catalogue.errors with data.aarm.catalogue.tools as {"x.y": {
		"category": "read",
		"risk_tier": "low",
		"output_trust": "trusted",
		"parameters": {
			"a": {"type": "string", "semantic": "telepathy"},
			"b": {"type": "number", "semantic": "body", "approval_above": 5},
			"c": {"type": "number", "semantic": "amount", "analysis": "amount", "approval_above": "lots"},
			"d": {"type": "string", "semantic": "role", "approval_pattern": "(unclosed"},
			"e": {"type": "boolean", "semantic": "flag", "bulk": "yes"},
			"f": {"type": "string", "semantic": "identifier", "classify": "column"},
			"g": {"type": "number", "semantic": "count", "approval_above": 50},
			"h": {"type": "boolean", "semantic": "flag", "bulk": false},
			"i": {"type": "string", "semantic": "role", "approval_pattern": "(?i)admin"},
			"j": {"type": "string", "semantic": "identifier", "classify": "table"},
			"k": {"type": "number", "semantic": "amount"},
			"l": {"type": "string", "semantic": "sql", "analysis": "sql_condition"},
			"m": {"type": "string", "semantic": "path", "analysis": "url"},
		},
	}}
	errors == {
		`x.y.k: semantic amount needs "analysis": one of ["amount"] (the rules decide on its parsed facts)`,
		`x.y.m: semantic path needs "analysis": one of ["path"] (the rules decide on its parsed facts)`,
		"x.y.a: unknown semantic telepathy (semantic_types: account, amount, artifact, body, channel, choice, cidr, content, count, currency, database, datetime, duration, email, fields, flag, host, identifier, number, path, person, phone, place, postal_address, query, recipient, role, secret, shell, sql, title, url, value)",
		"x.y.b: approval_above must be a number on an amount or count parameter",
		"x.y.c: approval_above must be a number on an amount or count parameter",
		"x.y.d: approval_pattern must be a valid regex on a role parameter",
		"x.y.e: bulk must be a boolean on a flag parameter",
		`x.y.f: classify must be "table" (the value names a table of classification.tables)`,
	}
}

test_deny_unknown_tool_has_unknown_category_and_tier if {
	not catalogue.known with input as testing.input_for("mcp.mystery", {})
	catalogue.category == "unknown" with input as testing.input_for("mcp.mystery", {})
	catalogue.risk_tier == "unknown" with input as testing.input_for("mcp.mystery", {})
}

test_errors_flag_bad_category_tier_and_name if {
	errors := catalogue.errors with data.aarm.catalogue.tools as {"Bad-Name": {
		"category": "teleport",
		"risk_tier": "extreme",
		"parameters": {},
	}}
	errors == {
		"Bad-Name: output_trust must be trusted or untrusted",
		"Bad-Name: name is not tool.operation",
		"Bad-Name: unknown category teleport",
		"Bad-Name: unknown risk_tier extreme",
	}
}

test_errors_flag_missing_parameters_object if {
	errors := catalogue.errors with data.aarm.catalogue.tools as {"x.y": {"category": "read", "risk_tier": "low", "output_trust": "trusted"}}
	errors == {"x.y: parameters is not an object"}
}

test_errors_flag_bad_parameter_schemas if {
	errors := catalogue.errors with data.aarm.catalogue.tools as {"x.y": {
		"category": "read",
		"risk_tier": "low",
		"output_trust": "trusted",
		"reads_data": "yes",
		"requires_facts": "maintenance_window",
		"parameters": {
			"a": {"type": "text"},
			"b": {"type": ["string", "blob"], "pattern": "(unclosed"},
			"c": {"type": "array", "items_type": "string", "blocked_patterns": ["[bad"]},
			"d": {"type": "string", "egress": {"kind": "pigeon", "mode": "allowlist"}},
			"e": {"type": "integer", "cap": "ten"},
			"f": {"type": "integer", "cap": 10, "default_value": 20},
		},
	}}
	errors == {
		"x.y.a: unknown type text",
		"x.y.b: unknown type blob",
		"x.y.b: invalid regex (unclosed",
		"x.y.c: invalid regex [bad",
		"x.y.d: egress needs kind email|url and mode allowlist|blocklist",
		"x.y.e: cap must be a number",
		"x.y.f: default_value above cap",
		"x.y: requires_facts must be a list of fact names",
		"x.y: reads_data must be a boolean",
	}
}

test_allow_every_tool_declares_output_trust if {
	every tool in data.aarm.catalogue.tools {
		tool.output_trust in {"trusted", "untrusted"}
	}
	every name, tool in layers.tools {
		catalogue.output_trust == tool.output_trust with input as testing.input_for(name, {})
	}
	catalogue.output_trust == "trusted" with input as testing.input_for("acme.lookup", {}) with data.aarm.catalogue.tools as _fixture
	catalogue.output_trust == "untrusted" with input as testing.input_for("mcp.mystery", {})
}

test_errors_flag_bad_analysis_declarations if {
	errors := catalogue.errors with data.aarm.catalogue.tools as {"x.y": {
		"category": "read",
		"risk_tier": "low",
		"output_trust": "trusted",
		"parameters": {
			"a": {"type": "string", "analysis": "yaml"},
			"b": {"type": "string", "analysis": {"type": "shell", "currency": "c", "cwd": "nope"}},
			"c": {"type": "string", "analysis": {"kind": "sql"}},
			"d": {"type": "string", "egress": {"kind": "url", "mode": "blocklist"}},
			"e": {"type": "string", "egress": {"kind": "email", "mode": "blocklist"}, "analysis": "url"},
			"f": {"type": "string", "analysis": "path", "schemes": ["https"]},
			"g": {"type": "string", "analysis": "url", "schemes": "https"},
			"h": {"type": "string", "analysis": {"type": "sql", "database": "c"}, "schemes": ["https"]},
		},
	}}
	errors == {
		`x.y.a: analysis must be a type of analysis_types (amount, email, host, name, path, shell, sql, sql_condition, url) or {"type": <type>, <role>: <parameter>}`,
		`x.y.c: analysis must be a type of analysis_types (amount, email, host, name, path, shell, sql, sql_condition, url) or {"type": <type>, <role>: <parameter>}`,
		`x.y.b: analysis type shell takes no companion "currency" (allowed: ["cwd"])`,
		`x.y.b: analysis companion "cwd" names nope, which is not a parameter of the tool`,
		`x.y.c: analysis companion "kind" names sql, which is not a parameter of the tool`,
		`x.y.d: egress of kind url needs "analysis": "url" (egress is decided on the parsed facts)`,
		`x.y.e: egress of kind email needs "analysis": "email" (egress is decided on the parsed facts)`,
		`x.y.f: schemes must be a list of URL schemes on a parameter with "analysis": "url"`,
		`x.y.g: schemes must be a list of URL schemes on a parameter with "analysis": "url"`,
		`x.y.h: schemes must be a list of URL schemes on a parameter with "analysis": "url"`,
	}
}

test_allow_every_analysis_type_is_one_the_service_analyses if {
	# The Python side checks the same list against aarm_pdp.analysis.TYPES.
	object.keys(data.aarm.catalogue.analysis_types) == {"amount", "email", "host", "name", "path", "shell", "sql", "sql_condition", "url"}
}
