# METADATA
# title: Compositional (session) risk
# description: |
#   Tier 3 of the AARM precedence: DENY findings that come from the sequence of actions,
#   not from the action alone (risk(C) is not the sum of risk(a)). "Tag at read, enforce
#   at send": an external send after the session read CONFIDENTIAL or higher data, or
#   data labelled PII / FINANCIAL / SECRET (code exfiltration_risk); more sends in a
#   window than the rate limit allows (code rate_limited); a session or intent chain
#   longer than its limit (code chain_length_exceeded). Also decides whether the action
#   is an external communication (used by aarm.signals).
# related_resources:
#   - ref: docs/policies/composition.md
#     description: composition policy page
# schemas:
#   - input: schema.input
package aarm.composition

import data.aarm.layers

import data.aarm.catalogue
import data.aarm.classification
import data.aarm.egress
import data.aarm.explain
import data.aarm.intent
import data.aarm.params
import data.aarm.provenance

_cfg := layers.config.composition

_name := input.action.name

# METADATA
# title: destinations
# description: |
#   Where the action sends to: one {param, value, internal} object per e-mail address or
#   URL in a parameter with an egress spec (aarm.egress: decided on the host a client
#   contacts), and per channel in a configured channel parameter.
destinations contains {"param": d.param, "value": d.value, "internal": _internal(d)} if {
	some d in egress.destinations
	d.source == "parameter"
}

# A channel parameter declared "channel_scope": "listed" (a chat shared with other
# organisations) is internal only for the channels in external.internal_channels.
destinations contains {"param": param, "value": text, "internal": _internal_channel(text)} if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	_listed_channel(spec)
	some text in params.strings(input.action.parameters[param])
}

_listed_channel(spec) if {
	spec.semantic == "channel"
	spec.channel_scope == "listed"
}

_internal(d) if egress.internal(d)

else := false

_internal_channel(text) if {
	_channel(text) in {_channel(c) | some c in _cfg.external.internal_channels}
} else := false

_channel(text) := concat("", ["#", trim_left(lower(trim_space(text)), "#")])

# Values of parameters the catalogue declares as a chat channel or a workspace
# handle (a recipient that is no e-mail address) stay inside the organisation's
# own workspace.
destinations contains {"param": param, "value": text, "internal": true} if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	spec.semantic in {"channel", "recipient"}
	not spec.egress
	not _listed_channel(spec)
	some text in params.strings(input.action.parameters[param])
	not _email_like(text)
}

_email_like(text) if regex.match(`^[^@\s]+@[^@\s]+\.[^@\s]+$`, text)

else := false

# METADATA
# title: external
# description: |
#   True for an action of an external-communication category that names a destination
#   outside the organisation, or whose tool declares no destination parameter at all
#   (it could send anywhere). An action whose destinations are all internal, or that
#   has none (a calendar block without participants), is not an external send.
external if {
	catalogue.category in _cfg.external.categories
	some d in destinations
	not d.internal
}

# A tool that declares no destination parameter at all could send anywhere, unless
# it answers an existing object (a reply to a ticket or message goes to its thread).
external if {
	catalogue.category in _cfg.external.categories
	not _declares_destinations
	not _replies
}

_replies if {
	some _, spec in object.get(catalogue.entry, "parameters", {})
	spec.semantic in _cfg.external.reply_semantics
}

# A tool whose parameters declare their semantic types but no destination has none.
_replies if {
	some _, spec in object.get(catalogue.entry, "parameters", {})
	is_string(spec.semantic)
}

# A destination parameter that is given but yielded no checkable destination (it did
# not parse) gets its most dangerous reading: outside the organisation.
external if {
	catalogue.category in _cfg.external.categories
	some param, spec in object.get(catalogue.entry, "parameters", {})
	_destination_param(param, spec)
	input.action.parameters[param]
	not _destination_from(param)
}

_destination_from(param) if {
	some d in destinations
	d.param == param
}

_unvouched_external if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	_destination_param(param, spec)
	input.action.parameters[param]
	not _destination_from(param)
	not _vouched(param)
}

_declares_destinations if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	_destination_param(param, spec)
}

_destination_param(_, spec) if spec.egress

_destination_param(_, spec) if spec.semantic in _cfg.external.destination_semantics

# A destination the user's request named, a trusted system of record returned, or the
# document the user pointed at holds (provenance then still asks a human). A
# request that itself reads like an injection (T1 direct: "ignore previous
# instructions...") vouches for nothing.
_vouched(param) if {
	not egress.direct_injection
	docs := [doc | some path, doc in input.provenance.parameters; regex.split(`[.\[]`, path)[0] == param]
	count(docs) > 0
	every doc in docs {
		_vouching(doc.origins)
	}
}

_vouching(origins) if {
	some origin in origins
	origin in {"user", "tool_trusted"}
}

_vouching(origins) if {
	"user_pointed" in origins
	not provenance.carries_data
}

_unvouched_external if {
	some d in destinations
	not d.internal
	not _vouched(d.param)
}

_unvouched_external if {
	not _declares_destinations
	not _replies
}

_external_targets := concat(", ", sort({d.value | some d in destinations; not d.internal; not _vouched(d.param)}))

_describe_targets := sprintf("to %s", [_external_targets]) if _external_targets != ""

else := "to a destination outside the organisation"

# The destination parameters that make the send an unvouched external one (for the
# explanation: the reason names each): a destination parameter given that yielded no
# checkable destination, and the parameters of external destinations nobody vouched for.
_exfiltration_params contains param if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	_destination_param(param, spec)
	input.action.parameters[param]
	not _destination_from(param)
	not _vouched(param)
}

_exfiltration_params contains d.param if {
	some d in destinations
	not d.internal
	not _vouched(d.param)
}

_targets_of(param) := sprintf("to %s", [targets]) if {
	targets := concat(", ", sort({d.value | some d in destinations; d.param == param; not d.internal}))
	targets != ""
} else := "to a destination outside the organisation"

# METADATA
# title: session_level
# description: |
#   Index of the highest level the session has seen: the larger of
#   session.highest_classification and session.artifact_classification (-1 when none).
session_level := max({
	classification.level(object.get(input, ["session", "highest_classification"], "NONE")),
	classification.level(object.get(input, ["session", "artifact_classification"], "NONE")),
})

_sensitive_labels := {label |
	some label in input.session.labels
	label in _cfg.exfiltration.labels
}

_taint contains sprintf("%s data", [classification.name(session_level)]) if {
	session_level >= classification.level(_cfg.exfiltration.min_level)
}

_taint contains sprintf("labels %s", [concat(", ", sort(_sensitive_labels))]) if {
	count(_sensitive_labels) > 0
	_level_taint
}

_level_taint if session_level >= classification.level(_cfg.exfiltration.min_level)

_level_taint if not _declares_semantics

_declares_semantics if {
	some _, spec in object.get(catalogue.entry, "parameters", {})
	is_string(spec.semantic)
}

# METADATA
# title: deny_reasons
# description: Compositional DENY reasons (tier 3).
# custom:
#   rule_id: aarm.composition.exfiltration
#   code: exfiltration_risk
deny_reasons contains _reason(rego.metadata.rule(), param, explain.of_param(param), _exfiltration_change, sprintf(
	"%s parameter %q sends %s after the session accessed %s; data may not leave at the first external hop to a destination the user did not name",
	[_name, param, _targets_of(param), concat(" and ", sort(_taint))],
)) if {
	external
	_unvouched_external
	count(_taint) > 0
	some param in _exfiltration_params
}

# A tool that declares no destination parameter: the send as a whole.
# METADATA
# custom:
#   rule_id: aarm.composition.exfiltration
#   code: exfiltration_risk
deny_reasons contains _reason(rego.metadata.rule(), null, null, _exfiltration_change, sprintf(
	"%s sends %s after the session accessed %s; data may not leave at the first external hop to a destination the user did not name",
	[_name, _describe_targets, concat(" and ", sort(_taint))],
)) if {
	external
	_unvouched_external
	count(_taint) > 0
	count(_exfiltration_params) == 0
}

_exfiltration_change := explain.change("provenance", sprintf(
	"a destination inside the organisation or one the user's request named; the session's %s may not leave otherwise",
	[concat(" and ", sort(_taint))],
))

# METADATA
# custom:
#   rule_id: aarm.composition.rate_limit
#   code: rate_limited
deny_reasons contains _reason(rego.metadata.rule(), null, null, explain.compared("session", sprintf("fewer than %d earlier %s actions within %s s", [rule.limit, rule.category, rule.window]), rule.limit, n), sprintf(
	"%s would be %s action number %d within %s s; the limit is %d",
	[_name, rule.category, n + 1, rule.window, rule.limit],
)) if {
	some rule in _cfg.rate_limits
	catalogue.category == rule.category
	n := input.session.counts[rule.window][rule.category]
	n >= rule.limit
}

# METADATA
# custom:
#   rule_id: aarm.composition.chain_length
#   code: chain_length_exceeded
deny_reasons contains _reason(rego.metadata.rule(), null, null, explain.compared("session", sprintf("a session that has run fewer than %d actions", [_cfg.chain_length_limit]), _cfg.chain_length_limit, input.session.action_count), sprintf(
	"the session already ran %d actions; the chain length limit is %d",
	[input.session.action_count, _cfg.chain_length_limit],
)) if {
	input.session.action_count >= _cfg.chain_length_limit
}

# METADATA
# custom:
#   rule_id: aarm.composition.intent_chain_length
#   code: chain_length_exceeded
deny_reasons contains _reason(rego.metadata.rule(), null, null, explain.compared("session", sprintf("a session that has run fewer than %d actions (intent %q)", [limit, intent.intent_class]), limit, input.session.action_count), sprintf(
	"the session already ran %d actions; intent %q allows at most %d",
	[input.session.action_count, intent.intent_class, limit],
)) if {
	intent.bounded
	limit := intent.profile.max_chain_length
	input.session.action_count >= limit
}

_reason(meta, param, provenance, would_change, message) := explain.reason(meta, message, param, provenance, would_change)
