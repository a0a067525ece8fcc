# METADATA
# title: Argument provenance and untrusted content
# description: |
#   Uses input.provenance (where each parameter's values were seen) and
#   input.session.untrusted_content. A high-impact action whose key target parameter
#   (recipient account, principal, url, path, command, to) was seen only in untrusted
#   content (web pages, e-mails, documents, search results) was probably steered by
#   injected text (T1/T2/T11): DENY for destructive and code-execution tools (tier 3),
#   STEP_UP for financial, identity and external-communication tools (tier 6); code
#   untrusted_argument. A destructive action after the session ingested untrusted
#   content is a STEP_UP (or DENY, configurable), code untrusted_context (S05).
# related_resources:
#   - ref: docs/policies/provenance.md
#     description: provenance policy page
# schemas:
#   - input: schema.input
package aarm.provenance

import data.aarm.layers

import data.aarm.catalogue

_cfg := layers.config.provenance

_name := input.action.name

# METADATA
# title: untrusted_key_params
# description: The key parameter paths of this tool whose values came only from untrusted content.
untrusted_key_params contains path if {
	some path in input.provenance.untrusted_only
	some key in _cfg.key_params[_name]
	_under(path, key)
}

_under(path, key) if path == key

_under(path, key) if startswith(path, concat("", [key, "["]))

_under(path, key) if startswith(path, concat("", [key, "."]))

_paths := concat(", ", sort(untrusted_key_params))

# METADATA
# title: deny_reasons
# description: Tier 3 DENY reasons for destructive or code-execution tools steered by untrusted content.
# custom:
#   rule_id: aarm.provenance.untrusted_argument
#   code: untrusted_argument
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s is a %s action and its %s came only from untrusted content",
	[_name, catalogue.category, _paths],
)) if {
	catalogue.category in _cfg.deny_categories
	count(untrusted_key_params) > 0
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_context
#   code: untrusted_context
deny_reasons contains _reason(rego.metadata.rule(), _context_message) if {
	_after_untrusted_content
	_cfg.untrusted_content.decision == "DENY"
}

# METADATA
# title: stepup_findings
# description: Tier 6 STEP_UP findings, each {group, reason}.
# custom:
#   rule_id: aarm.provenance.untrusted_argument
#   code: untrusted_argument
stepup_findings contains _finding(rego.metadata.rule(), group, sprintf(
	"%s is a %s action and its %s came only from untrusted content; a human must confirm the target",
	[_name, catalogue.category, _paths],
)) if {
	catalogue.category in _cfg.step_up_categories
	count(untrusted_key_params) > 0
	group := object.get(_cfg.approver_group_by_category, catalogue.category, _cfg.default_approver_group)
}

# METADATA
# custom:
#   rule_id: aarm.provenance.untrusted_context
#   code: untrusted_context
stepup_findings contains _finding(rego.metadata.rule(), _cfg.untrusted_content.approver_group, _context_message) if {
	_after_untrusted_content
	_cfg.untrusted_content.decision == "STEP_UP"
}

_after_untrusted_content if {
	input.session.untrusted_content == true
	catalogue.category in _cfg.untrusted_content.categories
}

_context_message := sprintf(
	"%s is a %s action and the session has ingested untrusted content (web, e-mail, documents) that may carry injected instructions",
	[_name, catalogue.category],
)

_finding(meta, group, message) := {"group": group, "reason": _reason(meta, message)}

_reason(meta, message) := {
	"code": meta.custom.code,
	"rule_id": meta.custom.rule_id,
	"message": message,
}
