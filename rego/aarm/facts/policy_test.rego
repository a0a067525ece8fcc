package aarm.facts_test

import data.aarm.facts
import data.aarm.testing

_with(f) := testing.input_with("credentials.rotate", {"target": "t"}, {"facts": f})

test_authoritative_by_the_star_list_or_the_facts_own if {
	i := _with({
		"maintenance_window": testing.fact(true, "change-calendar"),
		"change_ticket": testing.fact("approved", " Ticketing "),
		"backup_verified": testing.fact(true, "ticketing"),
	})
	object.keys(facts.authoritative) == {"maintenance_window", "change_ticket"} with input as i
	object.keys(facts.asserted) == {"backup_verified"} with input as i
	j := _with({"backup_verified": testing.fact(true, "backup-service")})
	object.keys(facts.authoritative) == {"backup_verified"} with input as j
}

test_self_asserted_sources_are_never_authoritative if {
	every source in ["agent", "Agent", "enforcement_point", "llm", ""] {
		i := _with({"maintenance_window": testing.fact(true, source)})
		count(facts.authoritative) == 0 with input as i
			with data.aarm.config.facts as {"authoritative_sources": {"*": [source]}, "self_asserted_sources": data.aarm.config.facts.self_asserted_sources}
	}
	count(facts.authoritative) == 0 with input as _with({"maintenance_window": {"value": true}})
	count(facts.authoritative) == 0 with input as _with({"maintenance_window": {"value": true, "source": 7}})
}

test_no_star_list_trusts_only_named_facts if {
	i := _with({"maintenance_window": testing.fact(true, "ticketing")})
	count(facts.authoritative) == 0 with input as i
		with data.aarm.config.facts as {"authoritative_sources": {"*": [], "backup_verified": ["backup-service"]}, "self_asserted_sources": []}
}

test_source_names_who_asserts_it if {
	i := _with({"a": testing.fact(true, "agent"), "b": {"value": true}, "c": testing.fact(true, "")})
	facts.source("a") == "agent" with input as i
	facts.source("b") == "the request" with input as i
	facts.source("c") == "the request" with input as i
	facts.source("z") == "the request" with input as i
}

test_authoritative_sources_of_a_fact if {
	facts.authoritative_sources("backup_verified") == ["backup-service"]
	"ticketing" in facts.authoritative_sources("maintenance_window")
}
