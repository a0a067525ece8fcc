package aarm.forbidden_test

import data.aarm.forbidden
import data.aarm.testing

# The rule ids the call's facts make fire; canned holds the facts of its analysed values
# (aarm.testing derives names, amounts and e-mail domains itself).
_fired(name, params, canned) := {reason.rule_id | some reason in reasons} if {
	reasons := forbidden.reasons with input as testing.analysed(name, params, {}, canned)
}

_rules(name, params) := _fired(name, params, {})

_drop := "aarm.forbidden.drop_production_database"

_wipe := "aarm.forbidden.recursive_root_delete"

_system := "aarm.forbidden.system_path_delete"

_device := "aarm.forbidden.device_or_permission_wipe"

_control := "aarm.forbidden.disable_security_control"

_program := "aarm.forbidden.sql_server_program"

# SQL facts of one statement with targets (flags: writes, destructive, program, ...).
_sql(command, flags, targets) := testing.sql_facts([testing.statement(command, flags, targets)])

_drop_table(schema, table) := _sql("DROP TABLE", {"writes": true, "destructive": true}, [testing.target("table", null, schema, table)])

_drop_database(database) := _sql("DROP DATABASE", {"writes": true, "destructive": true}, [testing.target("database", database, null, database)])

# The facts of a shell command with these effects.
_shell_facts(argv, effects) := testing.shell_facts([testing.command(argv)], effects, {})

_shell(facts) := _fired("shell.exec", {"command": "cmd"}, {"cmd": facts})

# --- dropping production ---------------------------------------------------------------

test_deny_drop_production_database_by_tool if {
	every database in ["production", "prod-payments", "customers_prd", "proddb", "prod1", "live", "main", "PROD_Main"] {
		_rules("database.drop", {"database": database}) == {_drop}
		_rules("db.drop_database", {"database": database}) == {_drop}
	}
}

test_deny_drop_when_the_name_reads_as_production_after_normalisation if {
	# "prоd" with a Cyrillic o: the analysis gives its confusable skeleton and tokens.
	facts := object.union(testing.name_facts("prod"), {"normalized": "prоd", "ascii": false, "confusable": true})
	_fired("database.drop", {"database": "prоd"}, {"prоd": facts}) == {_drop}
}

test_allow_drop_non_production_database_is_not_forbidden if {
	every database in ["staging", "products", "reproduction_tmp", "livestock_demo", "maintenance_scratch"] {
		_rules("database.drop", {"database": database}) == set()
	}
}

test_deny_drop_when_the_name_is_unreadable if {
	# Not a string, or not analysed at all: nothing proves it is not production.
	_rules("database.drop", {"database": 42}) == {_drop}
	reasons := forbidden.reasons with input as testing.input_for("database.drop", {"database": "staging"})
	{r.rule_id | some r in reasons} == {_drop}
}

test_production_names_come_from_config if {
	rules := {r.rule_id | some r in forbidden.reasons} with input as testing.analysed("database.drop", {"database": "primary"}, {}, {})
		with data.aarm.config.production.names as ["primary"]
	rules == {_drop}
	none := {r.rule_id | some r in forbidden.reasons} with input as testing.analysed("database.drop", {"database": "proddb"}, {}, {})
		with data.aarm.config.production.suffixes as []
	none == set()
}

test_deny_drop_sql_against_production if {
	sql := "DROP TABLE users"
	canned := {sql: _drop_table(null, "users")}
	_fired("db.execute", {"sql": sql, "database": "production"}, canned) == {_drop}
	_fired("db.execute", {"sql": sql, "database": "prod"}, canned) == {_drop}
	_fired("db.execute", {"sql": sql, "environment": "production"}, canned) == {_drop}
	_fired("db.execute", {"sql": sql, "database": "analytics", "environment": "production"}, canned) == {_drop}
	_fired("db.query", {"sql": sql}, canned) == {_drop}
}

test_deny_drop_sql_whose_target_reads_as_production if {
	# DROP DATABASE proddb while connected to postgres; DROP TABLE prod.users on analytics.
	db := _with_names("db.execute", {"sql": "a", "database": "postgres"}, {"a": _drop_database("proddb")}, {"proddb": testing.name_facts("proddb")})
	{r.rule_id | some r in forbidden.reasons} == {_drop} with input as db
	schema := _with_names("db.execute", {"sql": "b", "database": "analytics"}, {"b": _drop_table("prod", "users")}, {"prod": testing.name_facts("prod")})
	{r.rule_id | some r in forbidden.reasons} == {_drop} with input as schema

	# A target name the analysis did not normalise counts as production.
	bare := testing.analysed("db.execute", {"sql": "b", "database": "analytics"}, {}, {"b": _drop_table("prod", "users")})
	{r.rule_id | some r in forbidden.reasons} == {_drop} with input as bare
	staging := _with_names("db.execute", {"sql": "c", "database": "analytics"}, {"c": _drop_table("staging", "users")}, {"staging": testing.name_facts("staging")})
	count(forbidden.reasons) == 0 with input as staging
}

_with_names(name, params, canned, names) := testing.analysed(name, params, {"analysis": {"names": names}}, canned)

test_deny_drop_sql_without_target_is_treated_as_production if {
	_fired("db.execute", {"sql": "x"}, {"x": _drop_table(null, "users")}) == {_drop}
}

test_allow_drop_sql_without_target_when_assumption_disabled if {
	rules := {reason.rule_id | some reason in forbidden.reasons} with input as testing.analysed("db.execute", {"sql": "x"}, {}, {"x": _drop_table(null, "users")})
		with data.aarm.config.production.assume_when_unspecified as false
	rules == set()
}

test_allow_drop_sql_on_staging_and_other_statements if {
	_fired("db.execute", {"sql": "x", "database": "staging"}, {"x": _drop_table(null, "users")}) == set()
	_fired("db.execute", {"sql": "x", "database": "production"}, {"x": _sql("TRUNCATE", {"writes": true, "destructive": true}, [])}) == set()
	_fired("db.execute", {"sql": "x", "database": "production"}, {"x": _sql("SELECT", {}, [])}) == set()
}

test_allow_unparsed_sql_is_left_to_the_unparsed_rule if {
	facts := testing.unparsed_facts("sql", "syntax_error", {"writes": true, "destructive": true, "executes_program": true, "statements": []})
	_fired("db.execute", {"sql": "x"}, {"x": facts}) == set()
}

test_deny_drop_sql_through_the_shell if {
	# psql -c 'DROP DATABASE customers': the shell hands the SQL to a client whose
	# connection is unknown, so it is treated as production.
	facts := testing.shell_facts([testing.command(["psql", "-c", "DROP DATABASE customers"])], {}, {"sql": [_drop_database("customers")]})
	_shell(facts) == {_drop}
}

test_deny_program_on_the_database_server if {
	copy := _sql("COPY", {"writes": true, "destructive": true, "program": true}, [])
	_fired("db.query", {"sql": "x"}, {"x": copy}) == {_program}
	_fired("db.execute", {"sql": "x", "database": "staging_app"}, {"x": copy}) == {_program}
}

# --- deletes ----------------------------------------------------------------------------

test_deny_recursive_delete_of_protected_paths_in_the_shell if {
	_shell(_shell_facts(["rm", "-rf", "/"], {"recursive_delete": true, "root_wipe": true, "system_delete": true})) == {_wipe, _system}
	_shell(_shell_facts(["rm", "-fr", "~"], {"recursive_delete": true, "root_wipe": true})) == {_wipe}
	_shell(_shell_facts(["rm", "/etc/passwd"], {"system_delete": true})) == {_system}
}

test_allow_scoped_deletes_in_the_shell if {
	_shell(_shell_facts(["rm", "-rf", "/tmp/build"], {"recursive_delete": true})) == set()
	_shell(_shell_facts(["find", ".", "-delete"], {"recursive_delete": true, "find_delete": true})) == set()
	_shell(_shell_facts(["ls", "-la", "/"], {})) == set()
}

test_deny_file_delete_of_protected_or_system_path if {
	root := {"/etc/..": testing.path_facts("/", {"protected": true, "system": true, "traversal": true})}
	_fired("file.delete", {"path": "/etc/.."}, root) == {_wipe}
	encoded := {"/%65tc": testing.path_facts("/%65tc", {"protected": true, "system": true, "percent_encoded": true, "decoded": "/etc"})}
	_fired("file.delete", {"path": "/%65tc", "recursive": true}, encoded) == {_wipe}
	passwd := {"/home/a/../../etc/passwd": testing.path_facts("/etc/passwd", {"system": true, "traversal": true})}
	_fired("file.delete", {"path": "/home/a/../../etc/passwd"}, passwd) == {_system}
	_rules("file.delete", {"path": "/home/alice/tmp.txt"}) == set()
}

test_deny_file_delete_of_an_unanalysed_path if {
	reasons := forbidden.reasons with input as testing.input_for("file.delete", {"path": "/tmp/x"})
	{r.rule_id | some r in reasons} == {_wipe}
	some r in reasons
	contains(r.message, "an unanalysed path")
}

# --- devices and permissions -------------------------------------------------------------

test_deny_device_writes_formats_and_permission_wipes if {
	_shell(_shell_facts(["dd", "if=/dev/zero", "of=/dev/sda"], {"device_write": true})) == {_device}
	_shell(_shell_facts(["mkfs.ext4", "/dev/sda1"], {"format_device": true})) == {_device}
	_shell(_shell_facts(["chmod", "-R", "000", "/"], {"permission_wipe": true, "system_write": true})) == {_device}
	some r in forbidden.reasons with input as testing.analysed("shell.exec", {"command": "c"}, {}, {"c": _shell_facts(["x"], {"device_write": true, "format_device": true})})
	contains(r.message, "formats a device and writes to a block device")
}

# --- security controls ------------------------------------------------------------------

test_deny_disable_security_control_tools if {
	_rules("security.disable_logging", {"target": "cloudtrail"}) == {_control}
	_rules("logging.disable", {"target": "audit"}) == {_control}
	_rules("audit.delete_logs", {"target": "all"}) == {_control}
}

test_deny_disable_security_control_uncatalogued_namespace if {
	_rules("edr.stop_agent", {}) == {_control}
}

test_allow_security_change_that_does_not_disable if {
	_rules("security.update_firewall_rule", {"rule_name": "r", "action": "deny"}) == set()
}

test_deny_disable_security_control_through_the_shell if {
	every argv in [
		["systemctl", "stop", "auditd"],
		["service", "rsyslog", "stop"],
		["auditctl", "-e", "0"],
		["auditctl", "-D"],
		["setenforce", "0"],
		["aws", "cloudtrail", "stop-logging", "--name", "main"],
		["gcloud", "logging", "sinks", "delete", "s"],
		["history", "-c"],
		["Set-MpPreference", "-DisableRealtimeMonitoring", "$true"],
	] {
		_shell(_shell_facts(argv, {})) == {_control}
	}
}

test_allow_shell_commands_that_only_look_like_disabling if {
	every argv in [
		["systemctl", "status", "auditd"],
		["systemctl", "stop", "nginx"],
		["auditctl", "-l"],
		["echo", "systemctl", "stop", "auditd"],
		["aws", "cloudtrail", "describe-trails"],
	] {
		_shell(_shell_facts(argv, {})) == set()
	}
}

test_deny_reason_shape if {
	some reason in forbidden.reasons with input as testing.analysed("database.drop", {"database": "production"}, {}, {})
	reason.code == "forbidden"
	reason.rule_id == _drop
	contains(reason.message, "production")
}

test_allow_odd_parameters_do_not_fire if {
	_rules("shell.exec", {"command": ["rm", "-rf", "/"]}) == set()
	_rules("shell.exec", "rm -rf /") == set()
	_rules("db.execute", {"sql": 7}) == set()
}

# --- operator tools: the protections come from the declaration alone -----------------

_acme := {"acme": {"catalogue": {"tools": {
	"warehouse.destroy": {
		"category": "destructive", "risk_tier": "high", "output_trust": "trusted",
		"parameters": {"target_db": {"type": "string", "semantic": "database", "analysis": "name"}},
	},
	"warehouse.purge_rows": {
		"category": "destructive", "risk_tier": "high", "output_trust": "trusted",
		"parameters": {
			"target_db": {"type": "string", "semantic": "database", "analysis": "name"},
			"dataset": {"type": "string", "semantic": "identifier"},
		},
	},
	"storage.remove": {
		"category": "destructive", "risk_tier": "high", "output_trust": "trusted",
		"parameters": {
			"location": {"type": "string", "semantic": "path", "analysis": "path"},
			"tree": {"type": "boolean", "semantic": "flag"},
		},
	},
	"storage.browse": {
		"category": "read", "risk_tier": "low", "output_trust": "trusted",
		"parameters": {"location": {"type": "string", "semantic": "path", "analysis": "path"}},
	},
	"sentinel.mute_sensor": {
		"category": "security_control", "risk_tier": "high", "output_trust": "trusted",
		"parameters": {"sensor": {"type": "string", "semantic": "identifier"}},
	},
	"audit.export_report": {
		"category": "read", "risk_tier": "low", "output_trust": "trusted",
		"parameters": {},
	},
}}}}

_acme_fired(name, parameters, facts) := {r.rule_id | some r in reasons} if {
	reasons := forbidden.reasons with input as object.union(testing.input_with(name, parameters, {"analysis": testing.analysis(facts)}), {"action": {"operation": split(name, ".")[1]}})
		with data.aarm.overlays as _acme
}

test_operator_tool_gets_drop_database_from_its_database_parameter if {
	not data.aarm.catalogue.tools["warehouse.destroy"]
	_acme_fired("warehouse.destroy", {"target_db": "prod"}, {"target_db": testing.name_facts("prod")}) == {_drop}
	_acme_fired("warehouse.destroy", {"target_db": "staging"}, {"target_db": testing.name_facts("staging")}) == set()

	# A destructive tool that names something inside the database deletes that, not the database.
	_acme_fired("warehouse.purge_rows", {"target_db": "prod", "dataset": "t"}, {"target_db": testing.name_facts("prod")}) == set()
}

test_operator_tool_gets_protected_path_delete_from_its_path_parameter if {
	not data.aarm.catalogue.tools["storage.remove"]
	_acme_fired("storage.remove", {"location": "/etc/..", "tree": true}, {"location": testing.path_facts("/", {"protected": true, "system": true})}) == {_wipe}
	_acme_fired("storage.remove", {"location": "/etc/passwd"}, {"location": testing.path_facts("/etc/passwd", {"system": true})}) == {_system}
	_acme_fired("storage.remove", {"location": "/srv/a.txt"}, {"location": testing.path_facts("/srv/a.txt", {})}) == set()

	# Reading a system path deletes nothing.
	_acme_fired("storage.browse", {"location": "/etc/passwd"}, {"location": testing.path_facts("/etc/passwd", {"system": true})}) == set()
}

test_operator_tool_gets_security_control_protection_from_its_category if {
	not data.aarm.catalogue.tools["sentinel.mute_sensor"]
	_acme_fired("sentinel.mute_sensor", {"sensor": "s1"}, {}) == {_control}

	# A catalogued tool is judged by its category, not by a namespace that sounds like security.
	_acme_fired("audit.export_report", {}, {}) == set()
}

# --- explanations -------------------------------------------------------------------

test_explain_forbidden_reasons_name_the_parameter_and_that_nothing_lifts_them if {
	some r in forbidden.reasons with input as testing.analysed("database.drop", {"database": "production"}, {}, {})
	r.param == "database"
	r.message == `database.drop of database "production" (parameter "database") is forbidden: production databases are never dropped by an agent, whatever the request context claims`
	r.provenance == null
	r.would_change == {"kind": "none", "text": "nothing: no fact, approval or request context lifts a forbidden action"}

	root := {"/etc/..": testing.path_facts("/", {"protected": true, "system": true, "traversal": true})}
	some p in forbidden.reasons with input as testing.analysed("file.delete", {"path": "/etc/.."}, {}, root)
	p.param == "path"
	contains(p.message, `(parameter "path", resolves to /)`)

	wipe := _shell_facts(["rm", "-rf", "/"], {"recursive_delete": true, "root_wipe": true})
	some s in forbidden.reasons with input as testing.analysed("shell.exec", {"command": "cmd"}, {}, {"cmd": wipe})
	s.param == "command"
	s.would_change.kind == "none"
}

test_explain_a_security_control_turned_off_is_about_the_tool if {
	some r in forbidden.reasons with input as testing.input_for("siem.disable_alerts", {})
	r.rule_id == _control
	r.param == null
	r.would_change.kind == "none"
}
