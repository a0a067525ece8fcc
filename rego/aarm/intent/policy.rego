# METADATA
# title: Intent boundaries, classification escalation and drift
# description: |
#   AARM R3 intent-aware predicates and R7 drift, checked symbolically against the
#   session's original request (input.session.original_request) and the intent-class
#   profiles in layers.config.intents.classes.
#   Tier 5 (context-dependent DENY, code intent_violation): a sensitive tool (secrets,
#   credentials, identity, admin, package changes) outside the intent's allowed tools.
#   Tier 6 (context STEP_UP): a read predicted above the request's maximum
#   classification (code classification_escalation); cumulative drift (input.drift.max
#   or .ema) above the intent's threshold (code drift).
# related_resources:
#   - ref: docs/policies/intent.md
#     description: intent policy page
# schemas:
#   - input: schema.input
package aarm.intent

import data.aarm.layers

import data.aarm.catalogue
import data.aarm.classification
import data.aarm.explain

_cfg := layers.config.intents

_name := input.action.name

_request := input.session.original_request

# METADATA
# title: intent_class
# description: The session's declared intent class; undefined when there is none.
intent_class := c if {
	c := _request.intent_class
	is_string(c)
	c != ""
}

# METADATA
# title: profile
# description: The configured profile of the intent class, else the default profile.
profile := p if p := _cfg.classes[intent_class]

else := _cfg.default

# METADATA
# title: bounded
# description: True when the session's intent class has a configured profile (allowed tools, limits).
bounded if _cfg.classes[intent_class]

# METADATA
# title: max_classification
# description: |
#   The highest level the request may read: the original request's own
#   max_classification when it names a level, else the intent profile's.
max_classification := m if {
	m := _request.max_classification
	classification.level(m) >= 0
} else := m if {
	m := profile.max_classification
	classification.level(m) >= 0
}

# METADATA
# title: drift_threshold
# description: The intent profile's drift threshold, else the default profile's.
drift_threshold := object.get(profile, "drift_threshold", _cfg.default.drift_threshold)

# METADATA
# title: deny_reasons
# description: Context-dependent DENY reasons (tier 5).
# custom:
#   rule_id: aarm.intent.sensitive_tool_outside_intent
#   code: intent_violation
deny_reasons contains _reason(rego.metadata.rule(), explain.change("intent", sprintf("a session whose intent allows it (intent %q allows %s)", [intent_class, concat(", ", _allowed_list)])), sprintf(
	"%s is a sensitive %s tool outside what intent %q allows (%s); the original request %q does not call for it",
	[_name, catalogue.category, intent_class, concat(", ", _allowed_list), _request_field("text", "")],
)) if {
	bounded
	not _allowed
	_sensitive
}

_allowed_list := array.concat(object.get(profile, "allowed_tools", []), object.get(profile, "allowed_categories", []))

_allowed if _name in profile.allowed_tools

_allowed if input.action.tool in profile.allowed_tools

_allowed if catalogue.category in profile.allowed_categories

# Sensitive by what the catalogue declares: its category, or a parameter of a sensitive
# semantic type (an artifact to install or run, a secret).
_sensitive if catalogue.category in _cfg.sensitive.categories

_sensitive if catalogue.declares({t | some t in _cfg.sensitive.semantics})

# A tool nobody catalogued is judged by its namespace (it has no declaration to go by).
_sensitive if {
	not catalogue.known
	input.action.tool in _cfg.sensitive.namespaces
}

# METADATA
# title: stepup_findings
# description: Context STEP_UP findings (tier 6), each {group, reason}.
# custom:
#   rule_id: aarm.intent.classification_escalation
#   code: classification_escalation
stepup_findings contains _finding(rego.metadata.rule(), _cfg.approver_group, explain.approval(_cfg.approver_group, sprintf("a request that allows %s data (it allows %s)", [classification.data_classification, max_classification])), sprintf(
	"%s is predicted to read %s data, above the %s the request allows (intent %v)",
	[_name, classification.data_classification, max_classification, _request_field("intent_class", "")],
)) if {
	classification.applies
	classification.predicted_level > classification.level(max_classification)
}

# METADATA
# custom:
#   rule_id: aarm.intent.drift
#   code: drift
stepup_findings contains _finding(rego.metadata.rule(), _cfg.approver_group, explain.approval_compared(_cfg.approver_group, sprintf("session drift of at most %v", [drift_threshold]), drift_threshold, score), sprintf(
	"session drift from the original request is %v (%s, scope %v), above the threshold %v of intent %v",
	[score, measure, object.get(input.drift, "scope_source", "declared"), drift_threshold, _intent_label],
)) if {
	some measure in ["max", "ema"]
	score := input.drift[measure]
	is_number(score)
	score > drift_threshold
}

_intent_label := c if c := intent_class

else := "default"

_request_field(key, fallback) := object.get(input, ["session", "original_request", key], fallback)

_finding(meta, group, would_change, message) := {"group": group, "reason": _reason(meta, would_change, message)}

# About the session and its intent as a whole: no parameter.
_reason(meta, would_change, message) := explain.reason(meta, message, null, null, would_change)
