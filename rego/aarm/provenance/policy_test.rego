package aarm.provenance_test

import data.aarm.provenance
import data.aarm.testing

# The parameters traced only to untrusted content, and whether the session ingested any.
_untrusted(untrusted_only, untrusted_content) := {
	"session": {"untrusted_content": untrusted_content},
	"provenance": testing.untrusted_provenance(untrusted_only),
}

_deny(name, untrusted_only, untrusted_content) := {r.code | some r in reasons} if {
	reasons := provenance.deny_reasons with input as testing.input_with(name, {}, _untrusted(untrusted_only, untrusted_content))
}

_stepup(name, untrusted_only, untrusted_content) := {[f.group, f.reason.code] | some f in findings} if {
	findings := provenance.stepup_findings with input as testing.input_with(name, {}, _untrusted(untrusted_only, untrusted_content))
}

test_deny_destructive_and_code_tools_with_untrusted_targets if {
	_deny("file.delete", ["path"], false) == {"untrusted_argument"}
	_deny("shell.exec", ["command"], false) == {"untrusted_argument"}
	_deny("db.delete", ["where"], false) == {"untrusted_argument"}
}

test_step_up_financial_identity_and_sends_with_untrusted_targets if {
	_stepup("payments.transfer", ["to_account"], false) == {["finance", "untrusted_argument"]}
	_stepup("iam.grant_role", ["principal"], false) == {["security", "untrusted_argument"]}
	_stepup("email.send", ["to[0]"], false) == {["security", "untrusted_argument"]}
}

# Money or an identity change the request did not ask for, to a target from untrusted
# content, is a DENY; the same with a request that asks for it is a STEP_UP.
test_deny_unrequested_money_and_identity_changes if {
	_deny("payments.transfer", ["to_account"], false) == {"untrusted_argument"}
	_deny("iam.grant_role", ["principal"], false) == {"untrusted_argument"}
	asked := object.union(_untrusted(["to_account"], false), {"session": {"original_request": {"text": "pay the vendor invoice"}}})
	reasons := provenance.deny_reasons with input as testing.input_with("payments.transfer", {}, asked)
	count(reasons) == 0
}

test_allow_trusted_or_non_key_arguments if {
	_deny("file.delete", ["recursive"], false) == set()
	_stepup("payments.transfer", ["memo"], false) == set()
	_stepup("payments.transfer", [], false) == set()
	_deny("db.query", ["table"], false) == set()
	_stepup("db.query", ["table"], false) == set()
}

test_step_up_destructive_after_untrusted_content if {
	_stepup("file.delete", [], true) == {["data_owners", "untrusted_context"]}
	_deny("file.delete", [], true) == set()
	_stepup("file.delete", [], false) == set()
	_stepup("email.send", [], true) == set()
}

test_deny_destructive_after_untrusted_content_when_configured if {
	reasons := provenance.deny_reasons with input as testing.input_with("file.delete", {}, _untrusted([], true))
		with data.aarm.config.provenance.untrusted_content.decision as "DENY"
	{r.code | some r in reasons} == {"untrusted_context"}
	findings := provenance.stepup_findings with input as testing.input_with("file.delete", {}, _untrusted([], true))
		with data.aarm.config.provenance.untrusted_content.decision as "DENY"
	count(findings) == 0
}

test_step_up_uses_default_group_for_unmapped_category if {
	findings := provenance.stepup_findings with input as testing.input_with("email.send", {}, _untrusted(["to[0]"], false))
		with data.aarm.config.provenance.approver_group_by_category as {"financial": "finance"}
	{f.group | some f in findings} == {"security"}
}
