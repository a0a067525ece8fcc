package aarm.main

# A verdict outside the five, and an ALLOW missing its reasons.
decision := {"decision": "PERMIT", "reasons": [], "matched_rules": [], "risk": {"level": "LOW", "score": 0}} if {
	input.action.tool == "permit"
}

decision := {"decision": "ALLOW"} if input.action.tool == "bare"
