# METADATA
# title: DEFER triggers and the denies that bound deferral
# description: |
#   Tier 4 (DEFER): no confident decision is possible yet. Each finding names its trigger
#   (AARM R3, docs/opa-contract.md): missing_context (a fact the tool requires is absent,
#   not a boolean, or true only by the word of a source that is not authoritative for
#   it: aarm.facts), dependency (the action consumes the output of a still-deferred
#   action; context_needed names resolution:<decision_id>), conflict (the facts report an
#   environment-state conflict, or top-priority context rules disagree), low_confidence
#   (risk_signals.intent_confidence below the threshold). The deferral part names the
#   first trigger in the configured order and every context item needed.
#   Tier 3 (DENY): a dependency that was denied (dependency_denied) or a deferral cascade
#   deeper than the limit (defer_depth_exceeded): no further context could help.
#   Tier 5 (context-dependent DENY): a required fact is present and false (context_denied),
#   whoever asserts it: a fact may always tighten.
# related_resources:
#   - ref: docs/policies/deferral.md
#     description: deferral policy page
# schemas:
#   - input: schema.input
package aarm.deferral

import data.aarm.layers

import data.aarm.catalogue
import data.aarm.context
import data.aarm.explain
import data.aarm.facts

_cfg := layers.config.deferral

_name := input.action.name

_required contains fact if some fact in catalogue.entry.requires_facts

# Absent, present without a boolean value, or true only by an unauthoritative word: the
# requirement is not met and cannot be refused either, so the action waits for it.
_missing contains fact if {
	some fact in _required
	not _satisfied(fact)
	not fact in _refused
}

_satisfied(fact) if facts.authoritative[fact].value == true

_unauthoritative contains fact if {
	some fact in _missing
	facts.asserted[fact].value == true
}

_refused contains fact if {
	some fact in _required
	input.facts[fact].value == false
}

# METADATA
# title: reasons
# description: DEFER reasons (tier 4); the reason code is the trigger.
reasons contains finding.reason if some finding in _findings

# METADATA
# custom:
#   rule_id: aarm.deferral.missing_context
#   code: missing_context
_findings contains _finding(rego.metadata.rule(), [fact], _fact_true(fact), sprintf(
	"%s needs context fact %q (a boolean) before it can be decided, and the request does not carry it",
	[_name, fact],
)) if {
	some fact in _missing
	not fact in _unauthoritative
}

# METADATA
# custom:
#   rule_id: aarm.deferral.missing_context
#   code: missing_context
_findings contains _finding(rego.metadata.rule(), [fact], _fact_true(fact), sprintf(
	"%s needs context fact %q from an authoritative source; %q asserts it, and only the sources configured for it in config.facts can lower a tier",
	[_name, fact, facts.source(fact)],
)) if {
	some fact in _unauthoritative
}

# METADATA
# custom:
#   rule_id: aarm.deferral.dependency
#   code: dependency
_findings contains _finding(
	rego.metadata.rule(), [concat("", ["resolution:", id])], {
		"kind": "resolution",
		"text": sprintf("decision %s resolved (ResolveDeferral), or the action not consuming its output", [id]),
		"context_needed": [concat("", ["resolution:", id])],
	},
	sprintf(
		"%s consumes the output of deferred decision %s; it waits for that resolution",
		[_name, id],
	),
) if {
	some id in input.dependencies.deferred
}

# METADATA
# custom:
#   rule_id: aarm.deferral.conflict
#   code: conflict
_findings contains _finding(rego.metadata.rule(), [fact], explain.fact(fact, sprintf("fact %q false: the environment signals reconciled", [fact])), sprintf(
	"fact %q from %v reports that environment signals disagree (for example an approved ticket and a frozen monitor); %s waits until they are reconciled",
	[fact, facts.source(fact), _name],
)) if {
	fact := _cfg.conflict_fact
	input.facts[fact].value == true
}

# METADATA
# custom:
#   rule_id: aarm.deferral.conflict
#   code: conflict
_findings contains _finding(
	rego.metadata.rule(), sort(context.conflict_context_needed), {
		"kind": "context",
		"text": "the top-priority context rules agreeing once the context they read is refreshed",
		"context_needed": sort(context.conflict_context_needed),
	},
	sprintf(
		"%s: %s",
		[_name, context.conflict_message],
	),
) if {
	context.conflict
}

# METADATA
# custom:
#   rule_id: aarm.deferral.low_confidence
#   code: low_confidence
_findings contains _finding(
	rego.metadata.rule(), _cfg.low_confidence_context_needed, object.union(
		explain.compared("signal", sprintf("an intent confidence of at least %v, or the context %s", [_cfg.low_confidence_threshold, concat(", ", _cfg.low_confidence_context_needed)]), _cfg.low_confidence_threshold, confidence),
		{"context_needed": _cfg.low_confidence_context_needed},
	),
	sprintf(
		"the intent behind %s was inferred with confidence %v, below the threshold %v",
		[_name, confidence, _cfg.low_confidence_threshold],
	),
) if {
	confidence := input.risk_signals.intent_confidence
	is_number(confidence)
	confidence < _cfg.low_confidence_threshold
}

# METADATA
# title: dependency_deny_reasons
# description: Tier 3 DENY reasons for dependencies that can no longer resolve usefully.
# custom:
#   rule_id: aarm.deferral.dependency_denied
#   code: dependency_denied
dependency_deny_reasons contains _reason(rego.metadata.rule(), explain.nothing(sprintf("nothing while it consumes the output of denied decision %s", [id])), sprintf(
	"%s consumes the output of decision %s, which was denied",
	[_name, id],
)) if {
	some id in input.dependencies.denied
}

# METADATA
# custom:
#   rule_id: aarm.deferral.depth_exceeded
#   code: defer_depth_exceeded
dependency_deny_reasons contains _reason(rego.metadata.rule(), explain.compared("resolution", sprintf("the deferred decisions it depends on resolved first (a cascade depth of at most %v)", [_cfg.max_depth]), _cfg.max_depth, depth), sprintf(
	"%s would be deferred at cascade depth %v, above the limit %v",
	[_name, depth, _cfg.max_depth],
)) if {
	depth := input.dependencies.depth
	is_number(depth)
	depth > _cfg.max_depth
}

# METADATA
# title: deny_reasons
# description: Context-dependent DENY reasons (tier 5), one per required fact that is false.
# custom:
#   rule_id: aarm.deferral.context_denied
#   code: context_denied
deny_reasons contains _reason(rego.metadata.rule(), explain.fact(fact, sprintf("fact %q true (%v reports false)", [fact, facts.source(fact)])), sprintf(
	"%s requires context fact %q to be true; %v reports false",
	[_name, fact, facts.source(fact)],
)) if {
	some fact in _refused
}

# METADATA
# title: trigger
# description: |
#   The trigger recorded in the deferral part: the first configured trigger that has a
#   finding (dependency, conflict, missing_context, low_confidence by default).
trigger := ordered[0] if {
	ordered := [t | some t in _cfg.trigger_order; t in _triggers]
	count(ordered) > 0
} else := sort(_triggers)[0]

_triggers := {finding.trigger | some finding in _findings}

# METADATA
# title: deferral
# description: The deferral part of a DEFER decision.
deferral := {
	"trigger": trigger,
	"context_needed": sort({needed | some finding in _findings; some needed in finding.needed}),
	"timeout_seconds": _cfg.timeout_seconds,
}

_finding(meta, needed, would_change, message) := {
	"trigger": meta.custom.code,
	"needed": needed,
	"reason": _reason(meta, would_change, message),
}

# What a missing fact needs: true, from a source configured as authoritative for it.
_fact_true(fact) := explain.fact(fact, sprintf(
	"fact %q true from an authoritative source (%s)",
	[fact, concat(", ", facts.authoritative_sources(fact))],
))

# About the action's context (facts, dependencies, signals): no parameter.
_reason(meta, would_change, message) := explain.reason(meta, message, null, null, would_change)
