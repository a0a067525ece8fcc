package aarm.forbidden_test

import data.aarm.forbidden
import data.aarm.testing

_rules(name, params) := rules if {
	reasons := forbidden.reasons with input as testing.input_for(name, params)
	rules := {reason.rule_id | some reason in reasons}
}

_shell(command) := _rules("shell.exec", {"command": command})

test_deny_drop_production_database_by_tool if {
	_rules("database.drop", {"database": "production"}) == {"aarm.forbidden.drop_production_database"}
	_rules("db.drop_database", {"database": "prod-payments"}) == {"aarm.forbidden.drop_production_database"}
	_rules("db.drop_database", {"database": "customers_prd"}) == {"aarm.forbidden.drop_production_database"}
}

test_allow_drop_non_production_database_is_not_forbidden if {
	_rules("database.drop", {"database": "staging"}) == set()
	_rules("db.drop_database", {"database": "products"}) == set()
}

test_deny_drop_sql_against_production if {
	_rules("db.execute", {"sql": "DROP DATABASE production"}) == {"aarm.forbidden.drop_production_database"}
	_rules("db.execute", {"sql": "drop table users", "database": "prod"}) == {"aarm.forbidden.drop_production_database"}
	_rules("db.execute", {"sql": "DROP TABLE users", "environment": "production"}) == {"aarm.forbidden.drop_production_database"}
	_rules("db.query", {"sql": "DROP SCHEMA public CASCADE"}) == {"aarm.forbidden.drop_production_database"}
}

test_deny_drop_sql_without_target_is_treated_as_production if {
	_rules("db.execute", {"sql": "DROP TABLE users"}) == {"aarm.forbidden.drop_production_database"}
}

test_allow_drop_sql_on_staging_is_not_forbidden if {
	_rules("db.execute", {"sql": "DROP TABLE users", "database": "staging"}) == set()
	_rules("db.execute", {"sql": "SELECT * FROM dropped_items"}) == set()
}

test_allow_drop_sql_without_target_when_assumption_disabled if {
	rules := {reason.rule_id | some reason in forbidden.reasons} with input as testing.input_for("db.execute", {"sql": "DROP TABLE users"})
		with data.aarm.config.forbidden.assume_production_when_unspecified as false
	rules == set()
}

test_deny_drop_sql_through_the_shell if {
	_shell("psql -h db.internal -c 'DROP DATABASE customers'") == {"aarm.forbidden.drop_production_database"}
	_shell(`mysql -e "drop table orders"`) == {"aarm.forbidden.drop_production_database"}
}

test_deny_rm_rf_root_and_variants if {
	every command in [
		"rm -rf /",
		"rm -fr /",
		"rm -r -f /",
		"rm --recursive --force /",
		"rm -Rf /*",
		"sudo rm -rf /",
		"/bin/rm -rf /etc/",
		"cd /tmp && rm -rf ~",
		`rm -rf "/"`,
		"echo ok; rm -rf $HOME",
		"rm -rf /usr/*",
		"rm --no-preserve-root /",
		"find / -name '*.log' -delete",
		"mkfs.ext4 /dev/sda1",
	] {
		_shell(command) == {"aarm.forbidden.recursive_root_delete"}
	}
}

test_allow_scoped_rm_is_not_forbidden if {
	every command in ["rm -rf /tmp/build", "rm /etc", "rm -f ./out.txt", "ls -la /", "echo rm -rf"] {
		_shell(command) == set()
	}
}

test_deny_file_delete_of_protected_path if {
	_rules("file.delete", {"path": "/", "recursive": true}) == {"aarm.forbidden.recursive_root_delete"}
	_rules("file.delete", {"path": "/etc/*"}) == {"aarm.forbidden.recursive_root_delete"}
	_rules("file.delete", {"path": "/home/alice/tmp.txt"}) == set()
}

test_deny_disable_security_control_tools if {
	_rules("security.disable_logging", {"target": "cloudtrail"}) == {"aarm.forbidden.disable_security_control"}
	_rules("logging.disable", {"target": "audit"}) == {"aarm.forbidden.disable_security_control"}
	_rules("audit.delete_logs", {"target": "all"}) == {"aarm.forbidden.disable_security_control"}
}

test_deny_disable_security_control_uncatalogued_namespace if {
	_rules("edr.stop_agent", {}) == {"aarm.forbidden.disable_security_control"}
}

test_allow_security_change_that_does_not_disable if {
	_rules("security.update_firewall_rule", {"rule_name": "r", "action": "deny"}) == set()
}

test_deny_disable_security_control_through_the_shell if {
	every command in [
		"sudo systemctl stop auditd",
		"auditctl -e 0",
		"setenforce 0",
		"aws cloudtrail stop-logging --name main",
		"history -c",
	] {
		_shell(command) == {"aarm.forbidden.disable_security_control"}
	}
}

test_deny_reason_shape if {
	some reason in forbidden.reasons with input as testing.input_for("database.drop", {"database": "production"})
	reason.code == "forbidden"
	reason.rule_id == "aarm.forbidden.drop_production_database"
	contains(reason.message, "production")
}

test_allow_odd_parameters_do_not_fire if {
	_rules("database.drop", {"database": 42}) == set()
	_rules("shell.exec", {"command": ["rm", "-rf", "/"]}) == set()
	_rules("shell.exec", "rm -rf /") == set()
}
