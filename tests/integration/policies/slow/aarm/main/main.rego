package aarm.main

# Burns CPU for well over any sane decision deadline, then allows.
decision := {
	"decision": "ALLOW",
	"reasons": [{"code": "catalogued", "rule_id": "t.slow", "message": "slow"}],
	"matched_rules": ["t.slow"],
	"risk": {"level": "LOW", "score": count(_burn) / 1e12},
}

_burn contains x if {
	some x in numbers.range(1, 30000000)
	x % 7 == 0
}
