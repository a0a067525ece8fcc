package aarm.intent_test

import data.aarm.intent
import data.aarm.testing

# A known session whose request has this intent class and maximum classification, at this drift.
_intent(intent_class, max_classification, drift) := {
	"session": {
		"known": true,
		"original_request": testing.original_request("do the thing", intent_class, max_classification),
		"artifact_classification": "NONE",
	},
	"drift": {"max": drift, "ema": drift},
}

_deny(name, parameters, intent_class) := {r.code | some r in reasons} if {
	reasons := intent.deny_reasons with input as testing.input_with(name, parameters, _intent(intent_class, "NONE", 0))
}

_stepup(name, parameters, intent_class, max_classification, drift) := {f.reason.code | some f in findings} if {
	findings := intent.stepup_findings with input as testing.input_with(name, parameters, _intent(intent_class, max_classification, drift))
}

test_deny_secret_read_in_questionnaire_review if {
	_deny("secrets.read", {"path": "x"}, "questionnaire_review") == {"intent_violation"}
}

test_deny_package_update_in_bug_fix if {
	_deny("package.update", {"package": "cryptography"}, "bug_fix") == {"intent_violation"}
	_deny("package.install", {"package": "leftpad"}, "bug_fix") == {"intent_violation"}
}

test_deny_privilege_tools_in_profile_update if {
	_deny("secrets.search", {"query": "admin"}, "profile_update") == {"intent_violation"}
	_deny("auth.use", {"principal": "svc"}, "profile_update") == {"intent_violation"}
	_deny("admin.update", {"target": "t", "setting": "s"}, "profile_update") == {"intent_violation"}
	_deny("iam.grant_role", {"principal": "p", "role": "viewer"}, "meeting_prep") == {"intent_violation"}
}

test_allow_tools_inside_the_intent if {
	_deny("code.write", {"path": "login.py", "content": "x"}, "bug_fix") == set()
	_deny("profile.update", {"field": "picture", "value": "x"}, "profile_update") == set()
	_deny("crm.query", {"query": "x"}, "meeting_prep") == set()
}

test_allow_non_sensitive_tools_outside_the_intent if {
	_deny("email.send", {"to": "bob@acme.example"}, "meeting_prep") == set()
}

test_allow_sensitive_tools_without_a_bounded_intent if {
	_deny("secrets.read", {"path": "x"}, "") == set()
	_deny("secrets.read", {"path": "x"}, "unconfigured_intent") == set()
	count(intent.deny_reasons) == 0 with input as {"action": {"tool": "secrets", "operation": "read", "name": "secrets.read", "parameters": {}}, "session": {"original_request": null}}
}

_acme := {"acme": {"catalogue": {"tools": {
	"registry.deploy_image": {
		"category": "write", "risk_tier": "medium", "output_trust": "trusted",
		"parameters": {"image": {"type": "string", "semantic": "artifact"}},
	},
	"vault.store": {
		"category": "write", "risk_tier": "medium", "output_trust": "trusted",
		"parameters": {"token": {"type": "string", "semantic": "secret"}},
	},
	"notes.append": {
		"category": "write", "risk_tier": "low", "output_trust": "trusted",
		"parameters": {"text": {"type": "string", "semantic": "content"}},
	},
}}}}

_acme_deny(name, parameters, intent_class) := {r.code | some r in reasons} if {
	reasons := intent.deny_reasons with input as testing.input_with(name, parameters, _intent(intent_class, "NONE", 0))
		with data.aarm.overlays as _acme
}

test_deny_operator_tool_sensitive_by_its_declaration if {
	not data.aarm.catalogue.tools["registry.deploy_image"]
	_acme_deny("registry.deploy_image", {"image": "ghcr.io/x/y:1"}, "meeting_prep") == {"intent_violation"}
	_acme_deny("vault.store", {"token": "t"}, "meeting_prep") == {"intent_violation"}
	_acme_deny("notes.append", {"text": "t"}, "meeting_prep") == set()
}

test_deny_uncatalogued_tool_in_a_sensitive_namespace if {
	_deny("iam.mystery_op", {}, "meeting_prep") == {"intent_violation"}
}

test_step_up_classification_escalation if {
	_stepup("file.read", {"path": "/strategy/plan.docx"}, "meeting_prep", "INTERNAL", 0) == {"classification_escalation"}
	_stepup("file.read", {"path": "/strategy/plan.docx"}, "meeting_prep", "NONE", 0) == {"classification_escalation"}
	_stepup("file.read", {"path": "/strategy/plan.docx"}, "", "INTERNAL", 0) == {"classification_escalation"}
}

test_allow_read_within_max_classification if {
	_stepup("crm.query", {"query": "x"}, "meeting_prep", "INTERNAL", 0) == set()
	_stepup("file.read", {"path": "/strategy/plan.docx"}, "bug_fix", "NONE", 0) == set()
	_stepup("file.read", {"path": "/strategy/plan.docx"}, "", "NONE", 0) == set()
	_stepup("email.send", {"to": "x"}, "meeting_prep", "PUBLIC", 0) == set()
}

test_max_classification_prefers_the_request if {
	intent.max_classification == "CONFIDENTIAL" with input as testing.input_with("crm.query", {}, _intent("meeting_prep", "CONFIDENTIAL", 0))
	intent.max_classification == "INTERNAL" with input as testing.input_with("crm.query", {}, _intent("meeting_prep", "NONE", 0))
	not intent.max_classification with input as testing.input_with("crm.query", {}, _intent("", "NONE", 0))
}

test_step_up_drift_above_default_threshold if {
	_stepup("crm.query", {"query": "x"}, "", "NONE", 0.71) == {"drift"}
	_stepup("crm.query", {"query": "x"}, "", "NONE", 0.7) == set()
}

test_drift_thresholds_per_intent if {
	intent.drift_threshold == 0.7 with input as testing.input_with("crm.query", {}, _intent("", "NONE", 0))
	intent.drift_threshold == 0.9 with input as testing.input_with("crm.query", {}, _intent("bug_fix", "NONE", 0))
	intent.drift_threshold == 0.8 with input as testing.input_with("crm.query", {}, _intent("meeting_prep", "NONE", 0))
	_stepup("code.read", {"path": "a.py"}, "bug_fix", "NONE", 0.85) == set()
	_stepup("code.read", {"path": "a.py"}, "bug_fix", "NONE", 0.95) == {"drift"}
	t := intent.drift_threshold with input as testing.input_with("crm.query", {}, _intent("no_drift_profile", "NONE", 0))
		with data.aarm.config.intents.classes.no_drift_profile as {"allowed_tools": []}
	t == 0.7
}

test_step_up_drift_on_ema_alone if {
	i := object.union(testing.input_with("crm.query", {"query": "x"}, _intent("", "NONE", 0)), {"drift": {"max": 0.5, "ema": 0.75}})
	findings := intent.stepup_findings with input as i
	count(findings) == 1
}

test_allow_sensitive_tool_whose_category_the_intent_allows if {
	reasons := intent.deny_reasons with input as testing.input_with("secrets.read", {"path": "x"}, _intent("vault_audit", "NONE", 0))
		with data.aarm.config.intents.classes.vault_audit as {"allowed_tools": [], "allowed_categories": ["identity"]}
	count(reasons) == 0
}

# --- explanations -------------------------------------------------------------------

test_explain_drift_names_the_threshold_and_the_score if {
	findings := intent.stepup_findings with input as testing.input_with("crm.query", {"query": "x"}, _intent("meeting_prep", "INTERNAL", 0.9))
	some f in findings
	f.reason.code == "drift"
	f.reason.param == null
	f.reason.would_change == {"kind": "approval", "text": "an approval by data_owners, or session drift of at most 0.8", "approver_group": "data_owners", "threshold": 0.8, "value": 0.9}
}

test_explain_an_escalation_and_a_tool_outside_the_intent if {
	some f in intent.stepup_findings with input as testing.input_with("file.read", {"path": "/strategy/plan.docx"}, _intent("meeting_prep", "INTERNAL", 0))
	f.reason.would_change.approver_group == "data_owners"
	contains(f.reason.would_change.text, "(it allows INTERNAL)")
	some d in intent.deny_reasons with input as testing.input_with("secrets.read", {"path": "x"}, _intent("questionnaire_review", "NONE", 0))
	d.would_change.kind == "intent"
	startswith(d.would_change.text, `a session whose intent allows it (intent "questionnaire_review" allows `)
}
