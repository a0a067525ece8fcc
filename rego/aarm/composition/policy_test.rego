package aarm.composition_test

import data.aarm.composition
import data.aarm.testing

# The session, by default a known one after its first action.
_session(overrides) := {"session": object.union_n([testing.session, {"action_count": 1}, overrides])}

_codes(name, parameters, session) := {reason.code | some reason in reasons} if {
	reasons := composition.deny_reasons with input as testing.analysed(name, parameters, _session(session), _canned)
}

_external(name, parameters) if composition.external with input as testing.analysed(name, parameters, _session({}), _canned)

_canned := {
	"https://hooks.slack.com/x": testing.url_facts("https", "hooks.slack.com"),
	"https://api.acme.example/v1/x": testing.url_facts("https", "api.acme.example"),
}

_confidential := {"highest_classification": "CONFIDENTIAL"}

test_external_destinations if {
	_external("email.send", {"to": "x@partner.com"})
	_external("email.send", {"to": ["bob@acme.example", "x@gmail.example"]})
	_external("email.send", {"to": "bob@acme.example", "bcc": "x@gmail.example"})
	_external("email.forward", {"message_id": "m", "to": "x@partner.example"})
	_external("http.post", {"url": "https://hooks.slack.com/x"})
	_external("slack.post", {"channel": "#public-updates", "text": "x"})
	_external("slack.post", {"channel": "partners-shared", "text": "x"})
	_external("external_analytics.process", {"data": "x"})
	not _external("email.send", {"body": "no recipient"})
}

test_internal_destinations if {
	not _external("email.send", {"to": "bob@acme.example"})
	not _external("email.send", {"to": ["bob@acme.example", "carol@eng.acme.example"], "cc": "dan@acme.example"})
	not _external("http.post", {"url": "https://api.acme.example/v1/x"})
	not _external("slack.post", {"channel": "engineering", "text": "x"})
	not _external("slack.post", {"channel": "#Incidents", "text": "x"})
	not _external("db.query", {"table": "customers"})
}

test_deny_exfiltration_after_confidential_read if {
	_codes("email.send", {"to": "x@partner.com"}, _confidential) == {"exfiltration_risk"}
	_codes("external_analytics.process", {"data": "x"}, {"highest_classification": "RESTRICTED"}) == {"exfiltration_risk"}
}

test_deny_exfiltration_after_sensitive_labels_only if {
	# A tool that declares no parameter semantics: sensitive labels alone taint the session.
	_codes("external_analytics.process", {"data": "x"}, {"highest_classification": "INTERNAL", "labels": ["PII"]}) == {"exfiltration_risk"}
}

test_deny_exfiltration_of_tainted_artifact if {
	_codes("http.post", {"url": "https://partner.example/in"}, {"artifact_classification": "CONFIDENTIAL"}) == {"exfiltration_risk"}
}

test_deny_exfiltration_message_names_targets_and_taint if {
	reasons := composition.deny_reasons with input as testing.analysed("email.send", {"to": ["bob@acme.example", "x@partner.com"]}, _session({"highest_classification": "RESTRICTED", "labels": ["PII", "OTHER"]}), _canned)
	some reason in reasons
	reason.message == `email.send parameter "to" sends to x@partner.com after the session accessed RESTRICTED data and labels PII; data may not leave at the first external hop to a destination the user did not name`
	reason.param == "to"
	reason.would_change.kind == "provenance"
	reasons2 := composition.deny_reasons with input as testing.input_with("external_analytics.process", {"data": "x"}, _session(_confidential))
	some reason2 in reasons2
	contains(reason2.message, "to a destination outside the organisation")
	reason2.param == null
}

test_allow_send_after_public_or_internal_reads if {
	_codes("email.send", {"to": "x@partner.com"}, {"highest_classification": "INTERNAL"}) == set()
	_codes("email.send", {"to": "x@partner.com"}, {"highest_classification": "NONE"}) == set()
	_codes("email.send", {"to": "bob@acme.example"}, {"highest_classification": "RESTRICTED", "labels": ["PII"]}) == set()
	_codes("db.query", {"table": "customers"}, _confidential) == set()
}

test_deny_exfiltration_threshold_comes_from_config if {
	codes := {reason.code | some reason in composition.deny_reasons} with input as testing.analysed("email.send", {"to": "x@partner.com"}, _session({"highest_classification": "INTERNAL"}), _canned)
		with data.aarm.config.composition.exfiltration.min_level as "INTERNAL"
	codes == {"exfiltration_risk"}
}

test_deny_rate_limit if {
	_codes("email.send", {"to": "x@partner.example"}, {"counts": {"3600": {"external_communication": 10}}}) == {"rate_limited"}
	_codes("slack.post", {"channel": "#eng", "text": "x"}, {"counts": {"3600": {"external_communication": 12}}}) == {"rate_limited"}
}

test_allow_below_rate_limit if {
	_codes("email.send", {"to": "x@partner.example"}, {"counts": {"3600": {"external_communication": 9}}}) == set()
	_codes("db.query", {"table": "orders"}, {"counts": {"3600": {"external_communication": 50}}}) == set()
	_codes("email.send", {"to": "x@partner.example"}, {"counts": {"60": {"external_communication": 10}}}) == set()
}

test_deny_chain_length if {
	_codes("crm.query", {"query": "x"}, {"action_count": 30}) == {"chain_length_exceeded"}
	_codes("crm.query", {"query": "x"}, {"action_count": 29}) == set()
}

test_deny_intent_chain_length if {
	request := testing.original_request("prep", "meeting_prep", "INTERNAL")
	reasons := composition.deny_reasons with input as testing.input_with("crm.query", {"query": "x"}, _session({"action_count": 8, "original_request": request}))
	{r.rule_id | some r in reasons} == {"aarm.composition.intent_chain_length"}
	_codes("crm.query", {"query": "x"}, {"action_count": 7, "original_request": request}) == set()
}

test_allow_without_session if {
	i := {"version": "aarm.v1", "action": {"tool": "email", "operation": "send", "name": "email.send", "parameters": {"to": "x@partner.com"}}, "identity": {}, "facts": {}, "risk_signals": {}}
	count(composition.deny_reasons) == 0 with input as i
	composition.session_level == -1 with input as i
}

# --- explanations -------------------------------------------------------------------

_deny_reasons(name, parameters, session) := reasons if {
	reasons := composition.deny_reasons with input as testing.analysed(name, parameters, _session(session), _canned)
}

test_explain_an_exfiltration_names_each_destination_parameter if {
	reasons := _deny_reasons("email.send", {"to": "x@partner.com", "cc": "y@other.example"}, {"highest_classification": "CONFIDENTIAL"})
	{r.param | some r in reasons} == {"to", "cc"}
	every r in reasons {
		r.would_change.kind == "provenance"
		contains(r.would_change.text, "CONFIDENTIAL data")
	}
}

test_explain_rate_and_chain_limits_name_the_limit_and_the_count if {
	some rate in _deny_reasons("email.send", {"to": "x@partner.example"}, {"counts": {"3600": {"external_communication": 12}}})
	rate.param == null
	rate.would_change == {"kind": "session", "text": "fewer than 10 earlier external_communication actions within 3600 s", "threshold": 10, "value": 12}
	some chain in _deny_reasons("crm.query", {"query": "x"}, {"action_count": 31})
	chain.would_change.threshold == 30
	chain.would_change.value == 31
}
