# METADATA
# title: Risk signals and identity scope
# description: |
#   Findings from input.risk_signals and the identity's roles and delegation chain.
#   Tier 3 DENY: injection_score above the threshold on a destructive, external,
#   financial, identity or code-execution tool (code injection_risk, S07); a delegation
#   chain in which a delegatee holds a scope its delegator does not (code
#   delegation_scope_exceeded, S25).
#   Tier 6 STEP_UP: an external send while the memory the agent relies on has a trust
#   score below the threshold (code memory_trust, S20); an external send by an identity
#   with an admin-like role or effective scope (code privileged_scope, S22).
# related_resources:
#   - ref: docs/policies/signals.md
#     description: signals policy page
# schemas:
#   - input: schema.input
package aarm.signals

import data.aarm.layers

import data.aarm.catalogue
import data.aarm.composition
import data.aarm.explain

_cfg := layers.config.signals

_name := input.action.name

# METADATA
# title: deny_reasons
# description: Tier 3 DENY reasons.
# custom:
#   rule_id: aarm.signals.injection
#   code: injection_risk
deny_reasons contains _reason(rego.metadata.rule(), explain.compared("signal", sprintf("a prompt-injection score of at most %v", [_cfg.injection.threshold]), _cfg.injection.threshold, score), sprintf(
	"%s is a %s action and the prompt-injection score is %v (threshold %v)",
	[_name, catalogue.category, score, _cfg.injection.threshold],
)) if {
	score := input.risk_signals.injection_score
	is_number(score)
	score > _cfg.injection.threshold
	catalogue.category in _cfg.injection.categories
}

# METADATA
# custom:
#   rule_id: aarm.signals.delegation_scope
#   code: delegation_scope_exceeded
deny_reasons contains _reason(rego.metadata.rule(), explain.change("identity", sprintf("a delegation chain in which %v was delegated scope %q before passing it on", [link.delegator, scope])), sprintf(
	"delegation from %v to %v grants scope %q, which %v itself was not delegated",
	[link.delegator, link.delegatee, scope, link.delegator],
)) if {
	some link in input.identity.delegation_chain
	some parent in input.identity.delegation_chain
	parent.delegatee == link.delegator
	some scope in link.scopes
	not _covered(scope, object.get(parent, "scopes", []))
}

_covered(scope, scopes) if scope in scopes

_covered(_, scopes) if _cfg.delegation.wildcard_scope in scopes

# A parent scope "email" covers "email.send" and "email:send".
_covered(scope, scopes) if {
	some parent in scopes
	strings.any_prefix_match(scope, {concat("", [parent, "."]), concat("", [parent, ":"])})
}

# METADATA
# title: stepup_findings
# description: Tier 6 STEP_UP findings, each {group, reason}.
# custom:
#   rule_id: aarm.signals.memory_trust
#   code: memory_trust
stepup_findings contains _finding(rego.metadata.rule(), _cfg.memory_trust.approver_group, explain.approval_compared(_cfg.memory_trust.approver_group, sprintf("memory trust of at least %v", [_cfg.memory_trust.threshold]), _cfg.memory_trust.threshold, trust), sprintf(
	"%s sends outside the organisation while the memory it relies on has trust %v (threshold %v)",
	[_name, trust, _cfg.memory_trust.threshold],
)) if {
	trust := input.risk_signals.memory_source_trust
	is_number(trust)
	trust < _cfg.memory_trust.threshold
	composition.external
}

# METADATA
# custom:
#   rule_id: aarm.signals.privileged_scope
#   code: privileged_scope
stepup_findings contains _finding(rego.metadata.rule(), _cfg.privileged_scope.approver_group, explain.approval(_cfg.privileged_scope.approver_group, "an identity without admin-like roles or scopes"), sprintf(
	"%s is a %s action by an identity holding admin-like scope %q; over-privileged agents need a human for it",
	[_name, catalogue.category, scope],
)) if {
	catalogue.category in _cfg.privileged_scope.categories
	some scope in _scopes
	regex.match(_cfg.privileged_scope.role_pattern, scope)
}

_scopes contains role if some role in input.identity.roles

_scopes contains scope if {
	some scope in object.get(input.identity, "effective_scope", [])
	is_string(scope)
}

_finding(meta, group, would_change, message) := {"group": group, "reason": _reason(meta, would_change, message)}

# About the identity or the session's signals as a whole: no parameter.
_reason(meta, would_change, message) := explain.reason(meta, message, null, null, would_change)
