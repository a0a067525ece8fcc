# METADATA
# title: Fact sources (which facts may lower a tier)
# description: |
#   Every fact in input.facts carries the source that asserts it. A fact may always
#   tighten a decision (a false requirement denies, a freeze denies, a conflict defers,
#   whoever says so), but it may only lower one (satisfy a required fact, make an ALLOW
#   or STEP_UP context rule apply) when its source is configured as authoritative for
#   it: layers.config.facts.authoritative_sources[<fact name>], else its "*" list.
#   The agent or the enforcement point asserting something about itself
#   (self_asserted_sources: agent, enforcement_point, ...) is never authoritative,
#   whatever the lists say. No rule here produces a reason; aarm.deferral and
#   aarm.context ask it.
# related_resources:
#   - ref: docs/policies/facts.md
#     description: facts policy page
# schemas:
#   - input: schema.input
package aarm.facts

import data.aarm.layers

_cfg := layers.config.facts

# METADATA
# title: authoritative
# description: The facts whose source is authoritative for them, by name.
authoritative[name] := fact if {
	some name, fact in input.facts
	_trusted(name, fact)
}

# METADATA
# title: asserted
# description: The facts whose source is not authoritative for them, by name (they can only tighten).
asserted[name] := fact if {
	some name, fact in input.facts
	not _trusted(name, fact)
}

# METADATA
# title: source
# description: The source a fact names, "the request" when it names none.
source(name) := src if {
	src := input.facts[name].source
	is_string(src)
	src != ""
} else := "the request"

# METADATA
# title: authoritative_sources
# description: |
#   The sources configured as authoritative for a fact (its own list, else the "*"
#   list), for the explanation of what a deferral waits for.
authoritative_sources(name) := _sources(name)

_trusted(name, fact) if {
	is_string(fact.source)
	src := _norm(fact.source)
	not src in {_norm(s) | some s in _cfg.self_asserted_sources}
	src in {_norm(s) | some s in _sources(name)}
}

_sources(name) := _cfg.authoritative_sources[name]

_sources(name) := object.get(_cfg.authoritative_sources, "*", []) if not _cfg.authoritative_sources[name]

_norm(s) := lower(trim_space(s))
