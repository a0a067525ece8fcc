# METADATA
# title: AARM decision entrypoint
# description: |
#   Combines the tiers of the reference pack into exactly one decision document, in
#   the AARM precedence order of docs/opa-contract.md: forbidden DENY, parameter DENY
#   (validation, egress, unparseable values),
#   compositional-risk DENY, DEFER, context-dependent DENY, context STEP_UP, baseline
#   high-impact STEP_UP, parameter MODIFY, catalogued ALLOW, and the default posture for
#   tools not in the catalogue. The first tier with a finding decides; lower tiers never
#   override it. Reads are annotated with their predicted data_classification and data_labels.
# related_resources:
#   - ref: docs/policies/main.md
#     description: main policy page
#   - ref: docs/opa-contract.md
#     description: the input and decision document contract
# schemas:
#   - input: schema.input
package aarm.main

import data.aarm.layers

import data.aarm.analysis
import data.aarm.catalogue
import data.aarm.classification
import data.aarm.composition
import data.aarm.context
import data.aarm.deferral
import data.aarm.egress
import data.aarm.explain
import data.aarm.forbidden
import data.aarm.intent
import data.aarm.params
import data.aarm.provenance
import data.aarm.risk
import data.aarm.signals
import data.aarm.stepup

# METADATA
# title: decision
# description: |
#   The decision document: decision, reasons, matched_rules and risk always;
#   modified_parameters only for MODIFY, approval only for STEP_UP, deferral only for
#   DEFER; data_classification (and data_labels when known) for actions that read data.
# entrypoint: true
decision := object.union_n([
	{
		"decision": _winner.decision,
		"reasons": _sorted(_winner.reasons),
		"matched_rules": _matched_rules,
		"risk": risk.assess(catalogue.risk_tier, {reason.code | some reason in _winner.reasons}),
	},
	_verdict_part(_winner.decision),
	_classification_part,
])

_context_stepups := ((((intent.stepup_findings | context.stepup_findings) | provenance.stepup_findings) | signals.stepup_findings) | layers.stepup_findings) | egress.stepup_findings

# The finding tiers in precedence order. The first tier with a reason decides.
_finding_tiers := [
	{"decision": "DENY", "reasons": forbidden.reasons},
	{"decision": "DENY", "reasons": ((params.deny_reasons | egress.deny_reasons) | analysis.deny_reasons)},
	{"decision": "DENY", "reasons": ((((composition.deny_reasons | provenance.deny_reasons) | signals.deny_reasons) | deferral.dependency_deny_reasons) | layers.deny_reasons)},
	{"decision": "DENY", "reasons": _unknown_tool},
	{"decision": "DEFER", "reasons": deferral.reasons},
	{"decision": "DENY", "reasons": ((deferral.deny_reasons | context.deny_reasons) | intent.deny_reasons)},
	{
		"decision": "STEP_UP",
		"reasons": {finding.reason | some finding in _context_stepups},
		"groups": {finding.group | some finding in _context_stepups},
	},
	{"decision": "STEP_UP", "reasons": stepup.reasons, "groups": stepup.groups},
	{"decision": "MODIFY", "reasons": params.modify_reasons},
]

# The two fallback tiers only speak when no finding tier did.
_tiers := array.concat(_finding_tiers, [
	{"decision": "ALLOW", "reasons": _catalogued},
	{"decision": _default_posture, "reasons": _default},
])

_no_findings if {
	every tier in _finding_tiers {
		count(tier.reasons) == 0
	}
}

_winner := [tier | some tier in _tiers; count(tier.reasons) > 0][0]

# Every rule that fired in any tier, not only in the winning one, so an audit shows
# what a higher tier overrode (for example a STEP_UP finding under a forbidden DENY).
_matched_rules := sort({reason.rule_id | some tier in _tiers; some reason in tier.reasons})

_verdict_part("MODIFY") := {"modified_parameters": params.modified_parameters}

_verdict_part("STEP_UP") := {"approval": stepup.approval_for(_winner.groups)}

_verdict_part("DEFER") := {"deferral": deferral.deferral}

_verdict_part(verdict) := {} if not verdict in {"MODIFY", "STEP_UP", "DEFER"}

_classification_part := object.union(
	{"data_classification": classification.data_classification},
	_labels_part(classification.data_labels),
) if {
	classification.applies
} else := {}

_labels_part(labels) := {"data_labels": labels} if count(labels) > 0

else := {}

# Reasons ordered by rule id, then message, then code (then the explanation), each with
# exactly the six members of a reason (aarm.explain: an overlay's reason gets null ones).
_sorted(reasons) := [key[3] |
	some key in sort([[r.rule_id, r.message, r.code, r] | some reason in reasons; r := explain.normalized(reason)])
]

# Only ALLOW and DENY are valid postures (the others need an approval or deferral
# part); anything else configured falls back to DENY.
_default_posture := layers.config.default_posture if layers.config.default_posture in {"ALLOW", "DENY"}

else := "DENY"

# METADATA
# custom:
#   rule_id: aarm.main.catalogued
#   code: catalogued
_catalogued contains _reason(rego.metadata.rule(), null, sprintf(
	"%s is a catalogued %s tool (risk tier %s) and no policy finding applies",
	[input.action.name, catalogue.category, catalogue.risk_tier],
)) if {
	_no_findings
	catalogue.known
}

# A tool not in the catalogue is denied (under a DENY posture) before any DEFER or
# STEP_UP could open a ticket for it: nothing is suspended for an action nobody
# declared.
# METADATA
# custom:
#   rule_id: aarm.main.default_posture
#   code: default_posture
_unknown_tool contains _reason(rego.metadata.rule(), _catalogue_entry, sprintf(
	"%v is not in the tool catalogue; the default posture DENY applies",
	[object.get(input, ["action", "name"], "<no action name>")],
)) if {
	not catalogue.known
	_default_posture == "DENY"
}

# METADATA
# custom:
#   rule_id: aarm.main.default_posture
#   code: default_posture
_default contains _reason(rego.metadata.rule(), _posture_change, sprintf(
	"%v is not in the tool catalogue; the default posture %s applies",
	[object.get(input, ["action", "name"], "<no action name>"), _default_posture],
)) if {
	_no_findings
	not catalogue.known
}

_catalogue_entry := explain.change("catalogue", sprintf(
	"a catalogue entry for %v (an overlay's catalogue.tools)",
	[object.get(input, ["action", "name"], "<no action name>")],
))

_posture_change := _catalogue_entry if _default_posture == "DENY"

else := null

# About the tool as a whole: no parameter.
_reason(meta, would_change, message) := explain.reason(meta, message, null, null, would_change)
