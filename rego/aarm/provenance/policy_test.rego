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

# --- semantics-driven rules, on operator tools that are not in the reference catalogue -----

_site_tools := {"site": {"catalogue": {"tools": {
	"crm.send_mail": {"category": "external_communication", "risk_tier": "medium", "output_trust": "trusted", "parameters": {
		"to": {"type": "string", "semantic": "recipient"},
		"body": {"type": "string", "semantic": "body"},
	}},
	"bank.pay": {"category": "financial", "risk_tier": "high", "output_trust": "trusted", "parameters": {
		"account": {"type": "string", "semantic": "account"},
		"beneficiary": {"type": "string", "semantic": "person"},
	}},
	"web.open": {"category": "read", "risk_tier": "low", "output_trust": "untrusted", "parameters": {"url": {"type": "string", "semantic": "url"}}},
	"files.remove": {"category": "destructive", "risk_tier": "medium", "output_trust": "trusted", "parameters": {"file_id": {"type": "string", "semantic": "identifier"}}},
}}}}

_doc(origins, extra) := object.union({"origins": origins, "whole": origins, "found": [], "untrusted_share": 0, "output_share": 0, "user_part": false}, extra)

_email(origins, domain) := {"kind": "email", "domain": domain, "origins": origins, "domain_origins": origins}

_in(name, params, docs, session) := testing.input_with(name, params, {
	"session": object.union({"untrusted_content": true, "original_request": {"text": "please help"}, "highest_classification": "INTERNAL"}, session),
	"provenance": {"parameters": docs, "untrusted_only": [], "unseen": []},
})

_check(inp) := v if {
	v := {
		"deny": {r.rule_id | some r in provenance.deny_reasons},
		"stepup": {f.reason.rule_id | some f in provenance.stepup_findings},
	} with input as inp
		with data.aarm.overlays as _site_tools
}

test_untrusted_recipient_steps_up_and_denies_with_confidential_data_carried if {
	to := _doc(["tool_untrusted"], {"found": [_email(["tool_untrusted"], "evil.example")]})
	plain := _check(_in("crm.send_mail", {"to": "x@evil.example", "body": "hi"}, {"to": to}, {}))
	plain.stepup == {"aarm.provenance.untrusted_argument"}
	plain.deny == set()
	copied := _doc(["tool_untrusted"], {"output_share": 0.8})
	leak := _check(_in("crm.send_mail", {"to": "x@evil.example", "body": "data"}, {"to": to, "body": copied}, {"highest_classification": "CONFIDENTIAL"}))
	leak.deny == {"aarm.provenance.untrusted_argument"}
}

test_a_composed_message_to_a_pointed_recipient_is_a_step_up if {
	pointed := ["tool_untrusted", "user_pointed"]
	to := _doc(pointed, {"found": [_email(pointed, "customer.example")]})
	v := _check(_in("crm.send_mail", {"to": "n@customer.example", "body": "our prices"}, {"to": to}, {"highest_classification": "CONFIDENTIAL"}))
	v.deny == set()
	v.stepup == {"aarm.provenance.untrusted_argument"}
}

test_own_domain_recipients_are_not_targets if {
	to := _doc(["tool_untrusted"], {"found": [_email(["tool_untrusted"], "northwind.example")]})
	i := json.patch(_in("crm.send_mail", {"to": "a@northwind.example"}, {"to": to}, {"highest_classification": "CONFIDENTIAL"}), [{"op": "add", "path": "/identity/human", "value": "me@northwind.example"}])
	_check(i) == {"deny": set(), "stepup": set()}
}

test_money_to_an_untrusted_account_and_beneficiary_is_denied_unless_the_request_named_part if {
	acct := _doc(["tool_untrusted"], {"found": [{"kind": "account", "domain": "", "origins": ["tool_untrusted"], "domain_origins": ["unseen"]}]})
	asked := {"original_request": {"text": "pay the invoice"}}
	v := _check(_in("bank.pay", {"account": "X", "beneficiary": "Darius Webb"}, {"account": acct, "beneficiary": _doc(["tool_untrusted"], {})}, asked))
	v.deny == {"aarm.provenance.untrusted_argument"}
	named := _check(_in("bank.pay", {"account": "X", "beneficiary": "Lumen Analytics Ltd"}, {"account": acct, "beneficiary": _doc(["tool_untrusted"], {"user_part": true})}, asked))
	named.deny == set()
	named.stepup == {"aarm.provenance.untrusted_argument"}
}

test_fetch_of_a_url_from_untrusted_content if {
	url := _doc(["tool_untrusted"], {"found": [{"kind": "url", "domain": "evil.example", "origins": ["tool_untrusted"], "domain_origins": ["tool_untrusted"]}]})
	_check(_in("web.open", {"url": "https://evil.example/next"}, {"url": url}, {})).stepup == {"aarm.provenance.untrusted_fetch"}
	leak := _check(_in("web.open", {"url": "https://evil.example/t?d=x"}, {"url": url}, {"highest_classification": "CONFIDENTIAL"}))
	leak.deny == {"aarm.provenance.untrusted_fetch"}
	vouched := _doc(["unseen"], {"found": [{"kind": "url", "domain": "docs.example", "origins": ["unseen"], "domain_origins": ["user"]}]})
	_check(_in("web.open", {"url": "https://docs.example/x"}, {"url": vouched}, {})) == {"deny": set(), "stepup": set()}
}

test_links_in_bodies_are_checked_like_targets if {
	body := _doc(["tool_untrusted"], {"found": [{"kind": "url", "domain": "phish.example", "origins": ["tool_untrusted"], "domain_origins": ["tool_untrusted"]}]})
	to := _doc(["user"], {"found": [_email(["user"], "partner.example")]})
	v := _check(_in("crm.send_mail", {"to": "p@partner.example", "body": "log in at https://phish.example"}, {"to": to, "body": body}, {}))
	v.stepup == {"aarm.provenance.untrusted_link"}
}

test_untrusted_objects_of_destructive_actions if {
	docs := {"file_id": _doc(["tool_untrusted"], {})}
	_check(_in("files.remove", {"file_id": "f-1"}, docs, {"original_request": {"text": "delete the old drafts"}})).stepup == {"aarm.provenance.untrusted_object"}
	_check(_in("files.remove", {"file_id": "f-1"}, docs, {"original_request": {"text": "summarise my files"}})).deny == {"aarm.provenance.untrusted_argument"}
}

test_unseen_targets_only_with_a_request if {
	acct := _doc(["unseen"], {"found": [{"kind": "account", "domain": "", "origins": ["unseen"], "domain_origins": ["unseen"]}]})
	docs := {"account": acct}
	"aarm.provenance.unseen_target" in _check(_in("bank.pay", {"account": "X"}, docs, {})).stepup
	no_request := testing.input_with("bank.pay", {"account": "X"}, {"provenance": {"parameters": docs, "untrusted_only": [], "unseen": []}})
	_check(no_request).stepup == set()
}

test_messages_name_the_untrusted_source if {
	to := _doc(["tool_untrusted"], {"found": [_email(["tool_untrusted"], "evil.example")]})
	recent := [{"decision_id": "d1", "name": "web.open", "category": "read", "decision": "ALLOW", "classification": "PUBLIC", "outcome": "executed"}]
	i := _in("crm.send_mail", {"to": "x@evil.example"}, {"to": to}, {"recent": recent, "action_count": 1})
	some f in provenance.stepup_findings with input as i with data.aarm.overlays as _site_tools
	contains(f.reason.message, "the output of call 1, web.open")
}

# --- explanations -------------------------------------------------------------------

_recent_web := [{"decision_id": "d1", "name": "web.open", "category": "read", "decision": "ALLOW", "classification": "PUBLIC", "outcome": "executed"}]

test_explain_an_untrusted_deny_names_the_parameter_and_the_call_it_came_from if {
	acct := _doc(["tool_untrusted"], {"found": [{"kind": "account", "domain": "", "origins": ["tool_untrusted"], "domain_origins": ["unseen"]}]})
	i := _in("bank.pay", {"account": "X", "beneficiary": "Darius Webb"}, {"account": acct, "beneficiary": _doc(["tool_untrusted"], {})}, {
		"original_request": {"text": "summarise my inbox"},
		"recent": _recent_web, "action_count": 1,
	})
	reasons := provenance.deny_reasons with input as i with data.aarm.overlays as _site_tools

	# One reason per parameter, each naming it and the call whose output carried it.
	{r.param | some r in reasons} == {"account", "beneficiary"}
	some r in reasons
	r.param == "account"
	r.message == "bank.pay is a financial action and its account came only from untrusted content (the output of call 1, web.open (decision d1)); the request did not ask for a financial action"
	r.provenance == {"origin": "untrusted", "sources": [{"call": 1, "tool": "web.open", "decision_id": "d1"}]}
	r.would_change == {"kind": "provenance", "text": `a value for "account" that the user's request named or a trusted system returned`}
}

test_explain_a_step_up_names_the_group_and_a_pointed_origin if {
	pointed := ["tool_untrusted", "user_pointed"]
	to := _doc(pointed, {"found": [_email(pointed, "customer.example")]})
	i := _in("crm.send_mail", {"to": "n@customer.example", "body": "our prices"}, {"to": to}, {"recent": _recent_web, "action_count": 1})
	some f in provenance.stepup_findings with input as i with data.aarm.overlays as _site_tools
	f.reason.param == "to"
	f.reason.provenance.origin == "pointed"
	f.reason.provenance.sources == [{"call": 1, "tool": "web.open", "decision_id": "d1"}]
	f.reason.would_change.approver_group == "security"
	f.reason.would_change.kind == "approval"
}

test_explain_unseen_targets_and_untrusted_context if {
	acct := _doc(["unseen"], {"found": [{"kind": "account", "domain": "", "origins": ["unseen"], "domain_origins": ["unseen"]}]})
	some f in provenance.stepup_findings with input as _in("bank.pay", {"account": "X"}, {"account": acct}, {}) with data.aarm.overlays as _site_tools
	f.reason.rule_id == "aarm.provenance.unseen_target"
	f.reason.provenance == {"origin": "unseen", "sources": []}
	f.reason.would_change.approver_group == "finance"

	some c in provenance.stepup_findings with input as testing.input_with("file.delete", {}, _untrusted([], true))
	c.reason.param == null
	c.reason.provenance.origin == "untrusted"
	c.reason.would_change == {"kind": "approval", "text": "an approval by data_owners, or a request that asks for a destructive action", "approver_group": "data_owners"}
	some d in provenance.deny_reasons with input as testing.input_with("file.delete", {}, _untrusted([], true))
		with data.aarm.config.provenance.untrusted_content.decision as "DENY"
	d.would_change == {"kind": "request", "text": "a request that asks for a destructive action"}
}
