package aarm.stepup_test

import data.aarm.stepup
import data.aarm.testing

_rules(name, parameters) := rules if {
	reasons := stepup.reasons with input as testing.input_for(name, parameters)
	rules := {reason.rule_id | some reason in reasons}
}

_approval(name, parameters) := approval if {
	approval := stepup.approval with input as testing.input_for(name, parameters)
}

_transfer(amount) := {"amount": amount, "currency": "USD", "to_account": "DE89370400440532"}

test_step_up_large_payment if {
	_rules("payments.transfer", _transfer(25000)) == {"aarm.stepup.large_payment"}
	_approval("payments.transfer", _transfer(25000)) == {"approvers": ["finance-approvers"], "timeout_seconds": 3600}
	_rules("payments.refund", {"payment_id": "pay_1234", "amount": 10000.01, "currency": "EUR"}) == {"aarm.stepup.large_payment"}
}

test_allow_payment_at_threshold if {
	_rules("payments.transfer", _transfer(10000)) == set()
	_rules("payments.transfer", _transfer("25000")) == set()
}

test_step_up_threshold_comes_from_config if {
	rules := {reason.rule_id | some reason in stepup.reasons} with input as testing.input_for("payments.transfer", _transfer(600))
		with data.aarm.config.stepup.large_payment.amount_threshold as 500
	rules == {"aarm.stepup.large_payment"}
}

test_step_up_privileged_role_grant if {
	grant := {"principal": "attacker@external.com", "role": "admin"}
	_rules("iam.grant_role", grant) == {"aarm.stepup.privileged_role_grant"}
	_approval("iam.grant_role", grant) == {"approvers": ["security-approvers"], "timeout_seconds": 1800}
	_rules("iam.grant_role", {"principal": "bob@acme.example", "role": "roles/owner"}) == {"aarm.stepup.privileged_role_grant"}
}

test_allow_plain_role_grant if {
	_rules("iam.grant_role", {"principal": "bob@acme.example", "role": "viewer"}) == set()
}

test_step_up_unfiltered_table_delete if {
	_rules("db.delete", {"table": "users"}) == {"aarm.stepup.bulk_delete"}
	_rules("database.delete", {"table": "test_records", "where": "  "}) == {"aarm.stepup.bulk_delete"}
	_rules("db.delete", {"table": "users", "where": "1=1"}) == {"aarm.stepup.bulk_delete"}
	_rules("db.delete", {"table": "users", "where": null}) == {"aarm.stepup.bulk_delete"}
	_approval("db.delete", {"table": "users"}) == {"approvers": ["data-owners"], "timeout_seconds": 3600}
}

test_step_up_large_row_count_delete if {
	_rules("db.delete", {"table": "users", "where": "created_at < '2020-01-01'", "limit": 5000}) == {"aarm.stepup.bulk_delete"}
}

test_allow_filtered_small_delete if {
	_rules("db.delete", {"table": "users", "where": "id = 42", "limit": 1}) == set()
	_rules("database.delete", {"table": "test_records", "where": "created_by = 'alice'"}) == set()
}

test_step_up_wildcard_or_recursive_file_delete if {
	_rules("file.delete", {"path": "/tmp/*"}) == {"aarm.stepup.bulk_delete"}
	_rules("file.delete", {"path": "/srv/app/cache", "recursive": true}) == {"aarm.stepup.bulk_delete"}
}

test_allow_single_file_delete if {
	_rules("file.delete", {"path": "/tmp/report.csv"}) == set()
	_rules("file.delete", {"path": "/tmp/report.csv", "recursive": false}) == set()
}

test_step_up_destructive_sql if {
	every sql in [
		"DROP TABLE users",
		"truncate orders",
		"DELETE FROM sessions;",
		"ALTER TABLE users DROP COLUMN email",
	] {
		_rules("db.execute", {"sql": sql, "database": "staging"}) == {"aarm.stepup.destructive_sql"}
	}
}

test_allow_ordinary_sql if {
	_rules("db.execute", {"sql": "UPDATE users SET name = 'x' WHERE id = 2", "database": "staging"}) == set()
	_rules("db.execute", {"sql": "DELETE FROM sessions WHERE expired", "database": "staging"}) == set()
}

test_step_up_critical_tier_tool if {
	_rules("secrets.read", {"path": "prod/payments/api-key"}) == {"aarm.stepup.high_impact_tool"}
	_approval("secrets.read", {"path": "prod/payments/api-key"}) == {"approvers": ["security-approvers"], "timeout_seconds": 1800}
	_approval("database.drop", {"database": "staging"}) == {"approvers": ["data-owners"], "timeout_seconds": 3600}
}

test_step_up_critical_tier_default_approver_group if {
	approval := stepup.approval with input as testing.input_for("secrets.read", {"path": "x"})
		with data.aarm.catalogue.tools["secrets.read"].category as "read"
	approval == {"approvers": ["platform-oncall"], "timeout_seconds": 900}
}

test_step_up_approval_unions_approvers_and_takes_shortest_timeout if {
	approval := stepup.approval with input as testing.input_for("payments.transfer", _transfer(50000))
		with data.aarm.config.stepup.high_impact_tier.tiers as ["high"]
		with data.aarm.config.stepup.high_impact_tier.approver_group_by_category as {"financial": "security"}
	approval == {"approvers": ["finance-approvers", "security-approvers"], "timeout_seconds": 1800}
}

test_step_up_unknown_approver_group_falls_back if {
	approval := stepup.approval with input as testing.input_for("payments.transfer", _transfer(50000))
		with data.aarm.config.stepup.large_payment.approver_group as "no_such_group"
	approval == {"approvers": ["platform-oncall"], "timeout_seconds": 900}
}

test_step_up_config_names_only_defined_groups if {
	groups := data.aarm.config.stepup.approver_groups
	referenced := {
		data.aarm.config.stepup.fallback_approver_group,
		data.aarm.config.stepup.large_payment.approver_group,
		data.aarm.config.stepup.privileged_role.approver_group,
		data.aarm.config.stepup.bulk_delete.approver_group,
		data.aarm.config.stepup.destructive_sql.approver_group,
		data.aarm.config.stepup.high_impact_tier.default_approver_group,
	} | {group | some group in data.aarm.config.stepup.high_impact_tier.approver_group_by_category}
	every group in referenced {
		count(groups[group].approvers) > 0
		groups[group].timeout_seconds > 0
	}
}

test_allow_low_impact_tools_have_no_findings if {
	_rules("db.query", {"table": "customers", "limit": 10}) == set()
	_rules("mcp.mystery", {}) == set()
}

test_step_up_approval_for_no_groups_uses_the_fallback if {
	stepup.approval_for(set()) == {"approvers": ["platform-oncall"], "timeout_seconds": 900}
	stepup.approval_for({"security", "finance"}) == {"approvers": ["finance-approvers", "security-approvers"], "timeout_seconds": 1800}
}
