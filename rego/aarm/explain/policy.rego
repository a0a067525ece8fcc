# METADATA
# title: Explanations (the structured part of every reason)
# description: |
#   Builders for the reasons every package of the pack gives. A reason is
#   {code, rule_id, message, param, provenance, would_change}:
#   param, the top-level parameter the rule decided on (null when the rule is about the
#   tool, the session or the identity as a whole); provenance, where that value came
#   from when the rule decided on it ({origin, sources}: origin user, trusted,
#   untrusted, pointed or unseen; sources, the session's earlier calls whose untrusted
#   output could have carried it, each {call, tool, decision_id}); would_change, what
#   would change the verdict where the policy can say it ({kind, text} and, as they
#   apply, approver_group, fact, threshold with the value compared, context_needed).
#   A reason is only built for a rule that fired, from values the rule already holds:
#   explanations add no work to the rules that do not fire. No rule here decides.
# related_resources:
#   - ref: docs/policies/explain.md
#     description: explain policy page
# schemas:
#   - input: schema.input
package aarm.explain

import data.aarm.layers

# METADATA
# title: reason
# description: The reason of the rule whose METADATA is meta, with its explanation.
reason(meta, message, param, provenance, would_change) := {
	"code": meta.custom.code,
	"rule_id": meta.custom.rule_id,
	"message": message,
	"param": param,
	"provenance": provenance,
	"would_change": would_change,
}

# METADATA
# title: normalized
# description: |
#   A reason as the decision document carries it: exactly the six members, the
#   explanation members a reason lacks (an overlay's {code, rule_id, message}) null.
normalized(r) := {
	"code": r.code,
	"rule_id": r.rule_id,
	"message": r.message,
	"param": object.get(r, "param", null),
	"provenance": object.get(r, "provenance", null),
	"would_change": object.get(r, "would_change", null),
}

# METADATA
# title: top
# description: The top-level parameter of a provenance path ("to" of "to[0]", "recipient" of "recipient.iban").
top(path) := regex.split(`[.\[]`, path)[0]

# --- provenance -------------------------------------------------------------------

# METADATA
# title: untrusted_calls
# description: |
#   The session's recent calls that ran and whose tool's output the catalogue does not
#   trust, in order, each {call, tool, decision_id}: call is its number in the session
#   (from 1). These are where untrusted content entered the session's window.
untrusted_calls := [{"call": ((input.session.action_count - count(input.session.recent)) + i) + 1, "tool": r.name, "decision_id": object.get(r, "decision_id", "")} |
	some i, r in input.session.recent
	r.outcome == "executed"
	not _trusted_output(r.name)
]

_trusted_output(name) if layers.tool(name).output_trust == "trusted"

# METADATA
# title: sources_text
# description: |
#   The untrusted calls as a reason names them: "the output of call 3, web.open
#   (decision d-3)", "the outputs of call 1, ...; call 4, ...", or "content the session
#   ingested earlier" when the window holds none.
sources_text := sprintf("the output of %s", [_call_text(untrusted_calls[0])]) if {
	count(untrusted_calls) == 1
} else := sprintf("the outputs of %s", [concat("; ", [_call_text(c) | some c in untrusted_calls])]) if {
	count(untrusted_calls) > 1
} else := "content the session ingested earlier"

_call_text(c) := sprintf("call %d, %s (decision %s)", [c.call, c.tool, c.decision_id]) if c.decision_id != ""

else := sprintf("call %d, %s", [c.call, c.tool])

# METADATA
# title: provenance
# description: |
#   The provenance part for an origin: the untrusted calls as its sources for content
#   that came only from untrusted outputs (untrusted, pointed), none otherwise.
provenance(origin) := {"origin": origin, "sources": untrusted_calls} if {
	origin in {"untrusted", "pointed"}
} else := {"origin": origin, "sources": []}

# METADATA
# title: origin
# description: |
#   One value's origin from its provenance origins: unseen (nowhere before), untrusted
#   (only untrusted content), pointed (only untrusted content of the document the user's
#   request pointed at), user (the request named it), trusted (a trusted output).
origin(origins) := "unseen" if {
	origins == ["unseen"]
} else := "untrusted" if {
	origins == ["tool_untrusted"]
} else := "pointed" if {
	origins == ["tool_untrusted", "user_pointed"]
} else := "user" if {
	"user" in origins
} else := "trusted"

# METADATA
# title: of_param
# description: |
#   The provenance part of a top-level parameter from input.provenance (null when it has
#   none): its least trusted value's origin (untrusted, pointed, unseen, trusted, user).
of_param(param) := provenance(o) if {
	origins := {origin(doc.origins) |
		some path, doc in input.provenance.parameters
		top(path) == param
	}
	o := [c | some c in _least_trusted_first; c in origins][0]
} else := null

_least_trusted_first := ["untrusted", "pointed", "unseen", "trusted", "user"]

# --- what would change the verdict ------------------------------------------------

# METADATA
# title: change
# description: A would_change part of a kind (none, value, provenance, fact, resolution, context, request, intent, session, identity, signal, catalogue).
change(kind, text) := {"kind": kind, "text": text}

# METADATA
# title: compared
# description: A would_change part that names the threshold and the value the rule compared with it.
compared(kind, text, threshold, value) := {"kind": kind, "text": text, "threshold": threshold, "value": value}

# METADATA
# title: nothing
# description: Nothing lifts the verdict (forbidden actions, denied dependencies).
nothing(text) := change("none", text)

# METADATA
# title: fact
# description: A context fact would change the verdict (its name also in context_needed).
fact(name, text) := {"kind": "fact", "text": text, "fact": name, "context_needed": [name]}

# METADATA
# title: approval
# description: |
#   A STEP_UP's change: an approval by the approver group (the fallback group when the
#   config defines none of that name, as aarm.stepup resolves it), or the alternative
#   ("" for none).
approval(group, alternative) := {
	"kind": "approval",
	"text": _approval_text(approver_group(group), alternative),
	"approver_group": approver_group(group),
}

# METADATA
# title: approval_compared
# description: approval with the threshold and the value the rule compared with it.
approval_compared(group, alternative, threshold, value) := object.union(approval(group, alternative), {"threshold": threshold, "value": value})

_approval_text(group, "") := sprintf("an approval by %s", [group])

_approval_text(group, alternative) := sprintf("an approval by %s, or %s", [group, alternative]) if alternative != ""

# METADATA
# title: approver_group
# description: The approver group a STEP_UP finding's group name resolves to.
approver_group(group) := group if {
	layers.config.stepup.approver_groups[group]
} else := layers.config.stepup.fallback_approver_group
