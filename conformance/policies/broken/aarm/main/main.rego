package aarm.main

# A deliberately broken policy for the fail-closed checks of the conformance suite:
# "only.this" gets a valid ALLOW (proves the service works with this policy),
# "permit" gets a verdict outside the five, "bare" an ALLOW without its required parts,
# and every other action has no decision at all (undefined).

decision := {
	"decision": "ALLOW",
	"reasons": [{"code": "catalogued", "rule_id": "conformance.only", "message": "only this tool"}],
	"matched_rules": ["conformance.only"],
	"risk": {"level": "LOW", "score": 0},
} if input.action.name == "only.this"

decision := {"decision": "PERMIT", "reasons": [], "matched_rules": [], "risk": {"level": "LOW", "score": 0}} if {
	input.action.tool == "permit"
}

decision := {"decision": "ALLOW"} if input.action.tool == "bare"
