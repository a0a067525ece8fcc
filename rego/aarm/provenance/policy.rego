# METADATA
# title: Argument provenance and untrusted content
# description: |
#   Decides from what the catalogue declares about each parameter (its "semantic" type)
#   and from input.provenance (where each value was seen: the user's request, trusted
#   tool output, untrusted content, or nowhere). No rule names a tool.
#   - A target (recipient, url, channel, account, person, place, host...) seen only in
#     untrusted content was probably put there by injected text (T1/T2/T11). DENY when
#     the evidence is strong: the session holds confidential data and the target is a
#     destination it can leave by; money or an identity/security change the user's
#     request did not ask for; code to run. STEP_UP otherwise: a human can judge.
#   - A target seen nowhere at all in a high-impact action is a STEP_UP.
#   - A fetch of a URL that came only from untrusted content is a STEP_UP.
#   - Links and addresses inside a body or content parameter are checked like targets;
#     inside shell or SQL text, an external one from untrusted content (or from nowhere)
#     is a DENY.
#   - An object id, role or value seen only in untrusted content in a destructive,
#     security or identity action is a STEP_UP.
#   - A destructive action after the session ingested untrusted content is a STEP_UP
#     (or DENY, configurable), code untrusted_context (S05).
#   Addresses on the organisation's domains (config egress.internal_domains plus the
#   human principal's own domain) are not external targets.
# related_resources:
#   - ref: docs/policies/provenance.md
#     description: provenance policy page
# schemas:
#   - input: schema.input
package aarm.provenance

import data.aarm.catalogue
import data.aarm.egress
import data.aarm.explain
import data.aarm.layers

_cfg := layers.config.provenance

_name := input.action.name

_category := catalogue.category

_params := object.get(catalogue.entry, "parameters", {})

# The semantic type a parameter path has, from the catalogue (top-level parameter).
_semantic(path) := _params[_top(path)].semantic

_top(path) := explain.top(path)

# METADATA
# title: org_domains
# description: The organisation's own domains, as egress.internal_domains names them (configured, the tenant's, the human principal's).
org_domains contains lower(d) if some d in egress.internal_domains

_internal(domain) if domain in org_domains

_internal(domain) if {
	some org in org_domains
	endswith(domain, concat("", [".", org]))
}

# One judged value per (path, indicator): {path, semantic, kind, origin} where origin
# is "user", "trusted", "untrusted" or "unseen". A path with structured indicators is
# judged by each external one; a path without is judged as a whole value.
_judged contains {"path": path, "semantic": sem, "kind": item.kind, "origin": _untrusted_or(_origin(item.origins)), "user_part": false, "pointed": _origin(item.origins) == "pointed"} if {
	some path, doc in input.provenance.parameters
	sem := _semantic(path)
	some item in doc.found
	not _internal(item.domain)
}

_judged contains {"path": path, "semantic": sem, "kind": "value", "origin": _untrusted_or(_origin(doc.origins)), "user_part": object.get(doc, "user_part", false), "pointed": _origin(doc.origins) == "pointed"} if {
	some path, doc in input.provenance.parameters
	sem := _semantic(path)
	count(doc.found) == 0
}

# The request named part of the value ("Lumen Analytics" for "Lumen Analytics Ltd",
# "David" for @david.cho): a human can judge it, so it is never a DENY on its own.
# A value from the document the user pointed at (the output of a read whose arguments
# the request named) is untrusted content the user asked the agent to work from: a
# finding for a human to judge, and a DENY only when the action also carries session
# data (the injected-exfiltration shape), never on its own.
_untrusted_or(origin) := "untrusted" if origin == "pointed"

else := origin

_origin(origins) := explain.origin(origins)

_untrusted_targets contains j if {
	some j in _judged
	j.semantic in _cfg.target_semantics
	j.origin == "untrusted"
}

# "Seen nowhere" means something only in a session that has a request to compare with.
_has_request if is_string(input.session.original_request.text)

_unseen_targets contains j if {
	_has_request
	some j in _judged
	j.semantic in _cfg.target_semantics
	j.origin == "unseen"
	j.kind != "value"
}

_unseen_targets contains j if {
	_has_request
	some j in _judged
	j.semantic in _cfg.unseen_target_semantics
	j.origin == "unseen"
	j.kind == "value"
}

_embedded contains j if {
	some j in _judged
	j.semantic in _cfg.text_semantics
	j.kind in _cfg.embedded_kinds
	j.origin in {"untrusted", "unseen"}
}

_code contains j if {
	some j in _judged
	j.semantic in _cfg.code_semantics
	j.kind in _cfg.embedded_kinds
	j.origin == "untrusted"
}

_code contains j if {
	_has_request
	some j in _judged
	j.semantic in _cfg.code_semantics
	j.kind in _cfg.embedded_kinds
	j.origin == "unseen"
}

# A command or statement copied whole from untrusted content.
_code contains j if {
	some j in _judged
	j.semantic in _cfg.code_semantics
	j.kind == "value"
	j.origin == "untrusted"
}

_objects contains j if {
	some j in _judged
	j.semantic in object.get(_cfg.object_semantics_by_category, _category, [])
	j.origin == "untrusted"
}

_side_effect if not _category in {"read", "unknown"}

_confidential if input.session.highest_classification in _cfg.confidential_levels

# The action's category is one the user's request asks for (its verbs, by the
# config's intents.request_scope patterns); no request at all asks for nothing.
_requested if {
	text := input.session.original_request.text
	pattern := layers.config.intents.request_scope[_category]
	regex.match(pattern, text)
}

_paths(js) := concat(", ", sort({j.path | some j in js}))

# Explanations: each reason is about one top-level parameter (its judged values: "to"
# of "to[0]" and "to[2]"), with where they came from.
_params_of(js) := {_top(j.path) | some j in js}

_of(js, param) := {j | some j in js; _top(j.path) == param}

# The origin of a parameter's judged values: untrusted when one came only from
# untrusted content, pointed when those all came from the document the user pointed at,
# else unseen.
_origin_of(js) := "untrusted" if {
	some j in js
	j.origin == "untrusted"
	not j.pointed
} else := "pointed" if {
	some j in js
	j.origin == "untrusted"
} else := "unseen"

_provenance(js) := explain.provenance(_origin_of(js))

# Where untrusted content entered the session: the recent actions that ran and whose
# tool's output the catalogue does not trust, numbered in the session (aarm.explain).
_sources := explain.sources_text

# --- DENY: strong evidence --------------------------------------------------------

_deny_targets contains j if {
	_side_effect
	some j in _strong_targets
	_confidential
	j.semantic in _cfg.egress_semantics
	carries_data
}

# Untrusted targets the request named no part of.
_strong_targets contains j if {
	some j in _untrusted_targets
	not j.user_part
	not j.pointed
}

_strong_targets contains j if {
	some j in _untrusted_targets
	not j.user_part
	j.pointed
	carries_data
}

# METADATA
# title: carries_data
# description: |
#   The action carries session data: text copied from tool outputs (a share of its
#   shingles, or addresses, accounts and links found in outputs), or a reference to an
#   existing object (a message forwarded, a file shared). A message the agent composed
#   from the request alone carries no evidence of data leaving.
carries_data if {
	some path, doc in input.provenance.parameters
	_semantic(path) in _cfg.payload_semantics
	doc.output_share >= _cfg.payload_output_share
}

carries_data if {
	some path, doc in input.provenance.parameters
	_semantic(path) in _cfg.payload_semantics
	some item in doc.found
	some origin in item.origins
	origin in {"tool_trusted", "tool_untrusted"}
}

carries_data if {
	some name, spec in _params
	spec.semantic in _cfg.payload_reference_semantics
	_given(input.action.parameters[name])
}

_given(value) if not value in {null, "", [], {}}

# Money to an account and a beneficiary that both came only from untrusted content,
# neither named by the request.
_deny_targets contains j if {
	_side_effect
	_category in _cfg.beneficiary_categories
	some j in _strong_targets
	j.semantic == "person"
	some k in _strong_targets
	k.semantic == "account"
}

_deny_targets contains j if {
	_side_effect
	some j in _strong_targets
	_category in _cfg.deny_categories
}

_deny_targets contains j if {
	_side_effect
	some j in _strong_targets
	_category in _cfg.deny_unrequested_categories
	not _requested
}

# A role, value, host or range of a security or identity change, or any object of
# money or a deletion the request did not ask for.
_deny_targets contains j if {
	some j in _objects
	_category in _cfg.deny_categories
	j.semantic in _cfg.deny_object_semantics
}

_deny_targets contains j if {
	some j in _objects
	_category in _cfg.deny_unrequested_categories
	not _requested
}

# METADATA
# title: deny_reasons
# description: DENY reasons from argument provenance and the session's untrusted content.
# custom:
#   rule_id: aarm.provenance.untrusted_argument
#   code: untrusted_argument
deny_reasons contains _reason(rego.metadata.rule(), param, _provenance(js), explain.change("provenance", sprintf("a value for %q that the user's request named or a trusted system returned", [param])), sprintf(
	"%s is a %s action and its %s came only from untrusted content (%s)%s",
	[_name, _category, _paths(js), _sources, _why_deny],
)) if {
	some param in _params_of(_deny_targets)
	js := _of(_deny_targets, param)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_code
#   code: untrusted_argument
deny_reasons contains _reason(rego.metadata.rule(), param, _provenance(js), explain.change("provenance", "code whose addresses and links the user's request named"), sprintf(
	"%s runs code whose %s carries an address or link that came only from untrusted content or from nowhere",
	[_name, _paths(js)],
)) if {
	_side_effect
	some param in _params_of(_code)
	js := _of(_code, param)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_fetch
#   code: untrusted_argument
deny_reasons contains _reason(rego.metadata.rule(), param, _provenance(js), explain.change("provenance", "a URL whose host the user's request or a trusted output named, or one without a query string"), sprintf(
	"%s fetches %s, whose host came only from untrusted content, with a query string, after the session accessed %s data: the query can carry the data out",
	[_name, _paths(js), input.session.highest_classification],
)) if {
	not _side_effect
	_confidential
	some param in _params_of(_leaky_fetches)
	js := _of(_leaky_fetches, param)
}

_leaky_fetches contains j if {
	some j in _fetches
	value := input.action.parameters[j.path]
	is_string(value)
	contains(value, "?")
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_context
#   code: untrusted_context
deny_reasons contains _reason(rego.metadata.rule(), null, explain.provenance("untrusted"), _context_change, _context_message) if {
	_after_untrusted_content
	_cfg.untrusted_content.decision == "DENY"
}

_why_deny := "; the session holds confidential data" if _confidential

else := sprintf("; the request did not ask for a %s action", [_category]) if not _requested

else := ""

# --- STEP_UP: a human can judge ---------------------------------------------------

_group := object.get(_cfg.approver_group_by_category, _category, _cfg.default_approver_group)

# METADATA
# title: stepup_findings
# description: STEP_UP findings, each {group, reason}.
# custom:
#   rule_id: aarm.provenance.untrusted_argument
#   code: untrusted_argument
stepup_findings contains _finding(rego.metadata.rule(), _group, param, _provenance(js), sprintf("a value for %q that the user's request named or a trusted system returned", [param]), sprintf(
	"%s is a %s action and its %s came only from untrusted content (%s); a human must confirm the target",
	[_name, _category, _paths(js), _sources],
)) if {
	_side_effect
	some param in _params_of(_untrusted_targets)
	js := _of(_untrusted_targets, param)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.unseen_target
#   code: unseen_argument
stepup_findings contains _finding(rego.metadata.rule(), _group, param, explain.provenance("unseen"), sprintf("a value for %q that the user's request or an earlier output named", [param]), sprintf(
	"%s is a %s action and its %s appeared nowhere before (not in the request, not in any tool output); a human must confirm the target",
	[_name, _category, _paths(_of(_unseen_targets, param))],
)) if {
	_side_effect
	catalogue.risk_tier in _cfg.unseen_target_tiers
	some param in _params_of(_unseen_targets)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_fetch
#   code: untrusted_argument
stepup_findings contains _finding(rego.metadata.rule(), _group, param, _provenance(js), "a URL whose host the user's request or a trusted output named", sprintf(
	"%s fetches %s, which came only from untrusted content; a human must confirm it",
	[_name, _paths(js)],
)) if {
	not _side_effect
	some param in _params_of(_fetches)
	js := _of(_fetches, param)
}

_fetches contains j if {
	some j in _judged
	j.semantic in _cfg.fetch_semantics
	j.origin in {"untrusted", "unseen"}
	j.kind == "url"
	not _vouched_host(j)
}

_vouched_host(j) if {
	some item in input.provenance.parameters[j.path].found
	some origin in item.domain_origins
	origin in {"user", "tool_trusted"}
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_link
#   code: untrusted_argument
stepup_findings contains _finding(rego.metadata.rule(), _group, param, _provenance(js), "links and addresses the user's request named", sprintf(
	"%s carries in %s a link or address that came only from untrusted content or from nowhere; its readers would follow it",
	[_name, _paths(js)],
)) if {
	_side_effect
	some param in _params_of(_embedded)
	js := _of(_embedded, param)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_object
#   code: untrusted_argument
stepup_findings contains _finding(rego.metadata.rule(), _group, param, _provenance(js), sprintf("a value for %q that the user's request named or a trusted system returned", [param]), sprintf(
	"%s is a %s action on %s, which came only from untrusted content; a human must confirm it",
	[_name, _category, _paths(js)],
)) if {
	some param in _params_of(_objects)
	js := _of(_objects, param)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_context
#   code: untrusted_context
stepup_findings contains {"group": _cfg.untrusted_content.approver_group, "reason": _reason(
	rego.metadata.rule(), null, explain.provenance("untrusted"),
	explain.approval(_cfg.untrusted_content.approver_group, _request_alternative),
	_context_message,
)} if {
	_after_untrusted_content
	_cfg.untrusted_content.decision == "STEP_UP"
}

_after_untrusted_content if {
	input.session.untrusted_content == true
	_category in _cfg.untrusted_content.categories
	not _requested
}

_context_message := sprintf(
	"%s is a %s action and the session has ingested untrusted content (web, e-mail, documents: %s) that may carry injected instructions",
	[_name, _category, _sources],
)

_request_alternative := sprintf("a request that asks for a %s action", [_category])

_context_change := explain.change("request", _request_alternative)

# A STEP_UP finding about a parameter: an approval by the group, or the alternative.
_finding(meta, group, param, provenance, alternative, message) := {
	"group": group,
	"reason": _reason(meta, param, provenance, explain.approval(group, alternative), message),
}

_reason(meta, param, provenance, would_change, message) := explain.reason(meta, message, param, provenance, would_change)
