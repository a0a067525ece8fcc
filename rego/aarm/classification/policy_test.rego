package aarm.classification_test

import data.aarm.classification
import data.aarm.testing

# The session, by default one that has read no classified artifact.
_session(overrides) := {"session": object.union({"artifact_classification": "NONE"}, overrides)}

_predict(name, parameters) := [level, labels] if {
	level := classification.data_classification with input as testing.analysed(name, parameters, _session({}), _canned)
	labels := classification.data_labels with input as testing.analysed(name, parameters, _session({}), _canned)
}

test_allow_config_has_no_errors if {
	count(classification.errors) == 0
}

test_errors_flag_bad_levels_regexes_and_tool_floors if {
	errors := classification.errors with data.aarm.config.classification.tables as {"t": {"level": "SECRET"}}
		with data.aarm.config.classification.paths as [{"pattern": "(unclosed", "level": "PUBLIC"}]
		with data.aarm.overlays as {"acme": {"catalogue": {"tools": {"acme.read": {"data_classification": {"level": "TOP"}}}}}}
	errors == {
		"classification: unknown level SECRET in {\"level\": \"SECRET\"}",
		"classification: invalid regex (unclosed",
		"classification: acme.read declares data_classification with unknown level TOP",
	}
}

test_level_scale if {
	classification.level("PUBLIC") == 0
	classification.level("RESTRICTED") == 3
	classification.level("NONE") == -1
	classification.level("") == -1
	classification.level(null) == -1
	classification.level("TOP_SECRET") == 3 # unknown names count as the top level
	classification.name(1) == "INTERNAL"
	classification.name(-1) == "NONE"
}

test_classify_sensitive_tables if {
	_predict("db.query", {"table": "customers"}) == ["CONFIDENTIAL", ["PII"]]
	_predict("db.query", {"table": "public.Employees"}) == ["CONFIDENTIAL", ["PII"]]
	_predict("db.query", {"table": "salaries"}) == ["RESTRICTED", ["FINANCIAL", "PII"]]
	_predict("db.query", {"table": "orders"}) == ["INTERNAL", []]
}

_reads(tables) := testing.sql_facts([testing.statement("SELECT", {"reads": [testing.target("table", null, null, t) | some t in tables]}, [])])

# The tables the analysis finds in each SQL text (reads and statement targets).
_canned := {
	"SELECT * FROM customers": _reads(["customers"]),
	"select o.id from orders o join payroll p on p.id = o.id": _reads(["orders", "payroll"]),
	"SELECT * FROM orders JOIN mystery ON 1=1": _reads(["orders", "mystery"]),
	"SELECT * FROM public.orders": _reads(["public.orders"]),
	"INSERT INTO payroll VALUES (1)": testing.sql_facts([testing.statement("INSERT", {"writes": true}, [testing.target("table", null, null, "payroll")])]),
	"SELEC": testing.unparsed_facts("sql", "syntax_error", {"statements": []}),
	"/tmp/../confidential/x.pdf": testing.path_facts("/confidential/x.pdf", {"traversal": true}),
	"/%63onfidential/x": testing.path_facts("/%63onfidential/x", {"percent_encoded": true, "decoded": "/confidential/x"}),
}

test_classify_tables_named_in_sql if {
	_predict("db.query", {"sql": "SELECT * FROM public.orders"}) == ["INTERNAL", []]
	_predict("db.query", {"sql": "INSERT INTO payroll VALUES (1)"}) == ["RESTRICTED", ["FINANCIAL", "PII"]]
	_predict("db.query", {"sql": "SELEC"}) == ["RESTRICTED", []]
	not_analysed := classification.data_classification with input as testing.input_with("db.query", {"sql": "SELECT * FROM public_pricing"}, _session({}))
	not_analysed == "RESTRICTED"
	_predict("db.query", {"sql": "SELECT * FROM customers"}) == ["CONFIDENTIAL", ["PII"]]
	_predict("db.query", {"sql": "select o.id from orders o join payroll p on p.id = o.id"}) == ["RESTRICTED", ["FINANCIAL", "PII"]]
}

test_classify_unknown_table_as_restricted if {
	_predict("db.query", {"table": "mystery"}) == ["RESTRICTED", []]
	_predict("db.query", {"sql": "SELECT * FROM orders JOIN mystery ON 1=1"}) == ["RESTRICTED", []]
	_predict("db.query", {"limit": 5}) == ["RESTRICTED", []]
}

test_classify_paths_in_every_reading if {
	_predict("file.read", {"path": "/tmp/../confidential/x.pdf"}) == ["RESTRICTED", []]
	_predict("file.read", {"path": "/%63onfidential/x"}) == ["CONFIDENTIAL", []]
}

test_classify_paths if {
	_predict("file.read", {"path": "/confidential/merger_plans.pdf"}) == ["CONFIDENTIAL", []]
	_predict("file.read", {"path": "/strategy/competitive-response.docx"}) == ["CONFIDENTIAL", []]
	_predict("file.read", {"path": "/hr/reviews.xlsx"}) == ["CONFIDENTIAL", ["PII"]]
	_predict("file.read", {"path": "/public/press.txt"}) == ["PUBLIC", []]
	_predict("internal_api.get", {"path": "/employee/salaries"}) == ["RESTRICTED", ["FINANCIAL", "PII"]]
	_predict("code.read", {"path": "login.py"}) == ["INTERNAL", []]
}

test_classify_path_traversal_as_restricted if {
	_predict("file.read", {"path": "/public/../strategy/plan.docx"}) == ["RESTRICTED", []]
}

test_classify_tool_floors if {
	_predict("search.web", {"query": "x"}) == ["PUBLIC", []]
	_predict("browser.get", {"url": "https://example.com"}) == ["PUBLIC", []]
	_predict("crm.query", {"query": "x"}) == ["INTERNAL", []]
	_predict("secrets.read", {"path": "prod/db"}) == ["RESTRICTED", ["SECRET"]]
}

test_classify_unclassified_read_as_restricted if {
	_predict("file.read", {"path": "/tmp/notes.bin"}) == ["RESTRICTED", []]
	_predict("file.read", {"path": 42}) == ["RESTRICTED", []]
}

test_classify_unclassified_level_comes_from_config if {
	level := classification.data_classification with input as testing.input_with("file.read", {"path": "/tmp/x"}, _session({}))
		with data.aarm.config.classification.unclassified as "CONFIDENTIAL"
	level == "CONFIDENTIAL"
}

test_classify_artifact_classification_raises_the_level if {
	level := classification.data_classification with input as testing.input_with("file.read", {"path": "/tmp/report.csv"}, _session({"artifact_classification": "CONFIDENTIAL"}))
	level == "CONFIDENTIAL"
	level2 := classification.data_classification with input as testing.input_with("search.web", {"query": "x"}, _session({"artifact_classification": "RESTRICTED"}))
	level2 == "RESTRICTED"
}

test_allow_non_read_actions_are_not_classified if {
	not classification.applies with input as testing.input_with("email.send", {"to": "a@acme.example"}, _session({}))
	not classification.data_classification with input as testing.input_with("email.send", {"to": "a@acme.example"}, _session({}))
	not classification.data_labels with input as testing.input_with("payments.transfer", {}, _session({}))
	not classification.applies with input as testing.input_with("mcp.mystery", {}, _session({}))
}

test_classify_reads_data_tools_outside_the_read_category if {
	classification.applies with input as testing.input_with("secrets.search", {"query": "admin"}, _session({}))
	_predict("secrets.search", {"query": "admin"}) == ["RESTRICTED", ["SECRET"]]
}

# --- operator tools: classified from the declaration alone ---------------------------

_acme := {"acme": {"catalogue": {"tools": {
	"warehouse.select": {
		"category": "read", "risk_tier": "low", "output_trust": "trusted",
		"parameters": {
			"from_table": {"type": "string", "semantic": "identifier", "classify": "table"},
			"statement": {"type": "string", "semantic": "sql", "analysis": "sql"},
			"ticket": {"type": "string", "semantic": "identifier"},
		},
	},
	"storage.fetch": {
		"category": "read", "risk_tier": "low", "output_trust": "trusted",
		"parameters": {"location": {"type": "string", "semantic": "path", "analysis": "path"}},
	},
	"wiki.page": {
		"category": "read", "risk_tier": "low", "output_trust": "trusted",
		"data_classification": {"level": "INTERNAL"},
		"parameters": {"page_id": {"type": "string", "semantic": "identifier"}},
	},
}}}}

_acme_predict(name, parameters, facts) := [level, labels] if {
	call := testing.input_with(name, parameters, object.union(_session({}), {"analysis": testing.analysis(facts)}))
	level := classification.data_classification with input as call with data.aarm.overlays as _acme
	labels := classification.data_labels with input as call with data.aarm.overlays as _acme
}

test_operator_tool_classified_by_its_table_and_sql_parameters if {
	not data.aarm.catalogue.tools["warehouse.select"]
	_acme_predict("warehouse.select", {"from_table": "salaries"}, {}) == ["RESTRICTED", ["FINANCIAL", "PII"]]
	_acme_predict("warehouse.select", {"from_table": "orders"}, {}) == ["INTERNAL", []]
	_acme_predict("warehouse.select", {"statement": "q"}, {"statement": _reads(["customers"])}) == ["CONFIDENTIAL", ["PII"]]
	_acme_predict("warehouse.select", {"statement": "q"}, {"statement": testing.unparsed_facts("sql", "syntax_error", {"statements": []})}) == ["RESTRICTED", []]

	# An identifier that names no table is no table: the read is unclassified.
	_acme_predict("warehouse.select", {"ticket": "orders"}, {}) == ["RESTRICTED", []]
}

test_operator_tool_classified_by_its_path_parameter_and_floor if {
	not data.aarm.catalogue.tools["storage.fetch"]
	_acme_predict("storage.fetch", {"location": "/hr/x.xlsx"}, {"location": testing.path_facts("/hr/x.xlsx", {})}) == ["CONFIDENTIAL", ["PII"]]
	_acme_predict("storage.fetch", {"location": "/%66inance/q.xlsx"}, {"location": testing.path_facts("/%66inance/q.xlsx", {"percent_encoded": true, "decoded": "/finance/q.xlsx"})}) == ["CONFIDENTIAL", ["FINANCIAL"]]
	_acme_predict("wiki.page", {"page_id": "p1"}, {}) == ["INTERNAL", []]
}
