package aarm.main

# Defined only for one tool: every other action gets an undefined decision.
decision := {
	"decision": "ALLOW",
	"reasons": [{"code": "catalogued", "rule_id": "t.only", "message": "only this tool"}],
	"matched_rules": ["t.only"],
	"risk": {"level": "LOW", "score": 0},
} if input.action.name == "only.this"
