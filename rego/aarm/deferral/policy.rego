# METADATA
# title: Context facts a tool needs before it can be decided
# description: |
#   A catalogue entry may list requires_facts: boolean context facts that must hold
#   before the tool may run (credentials.rotate needs maintenance_window, a database
#   drop needs backup_verified). Rego's "undefined" would silently fold a missing fact
#   into "no rule matched", so this package makes the three cases explicit:
#   fact absent (or not a boolean) -> DEFER with trigger missing_context (tier 4);
#   fact false -> context-dependent DENY, code context_denied (tier 5);
#   fact true -> no finding here, later tiers decide.
# related_resources:
#   - ref: docs/policies/deferral.md
#     description: deferral policy page
# schemas:
#   - input: schema.input
package aarm.deferral

import data.aarm.catalogue

_cfg := data.aarm.config.deferral

_name := input.action.name

_required contains fact if some fact in catalogue.entry.requires_facts

# Absent, or present without a boolean value: the rule cannot be evaluated.
_missing contains fact if {
	some fact in _required
	not _decidable(fact)
}

_decidable(fact) if is_boolean(input.facts[fact].value)

_refused contains fact if {
	some fact in _required
	input.facts[fact].value == false
}

# METADATA
# title: reasons
# description: DEFER reasons, one per required fact that is absent or not a boolean.
# custom:
#   rule_id: aarm.deferral.missing_context
#   code: missing_context
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s needs context fact %q (a boolean) before it can be decided, and the request does not carry it",
	[_name, fact],
)) if {
	some fact in _missing
}

# METADATA
# title: deny_reasons
# description: Context-dependent DENY reasons, one per required fact that is false.
# custom:
#   rule_id: aarm.deferral.context_denied
#   code: context_denied
deny_reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s requires context fact %q to be true; %v reports false",
	[_name, fact, object.get(input.facts[fact], "source", "the request")],
)) if {
	some fact in _refused
}

# METADATA
# title: deferral
# description: The deferral part of a DEFER decision.
deferral := {
	"trigger": _cfg.trigger,
	"context_needed": sort(_missing),
	"timeout_seconds": _cfg.timeout_seconds,
}

_reason(meta, message) := {
	"code": meta.custom.code,
	"rule_id": meta.custom.rule_id,
	"message": message,
}
