package aarm.risk_test

import data.aarm.risk

test_allow_low_tier_catalogued_is_low_risk if {
	risk.assess("low", {"catalogued"}) == {"level": "LOW", "score": 0.1}
}

test_deny_forbidden_is_critical_whatever_the_tier if {
	risk.assess("low", {"forbidden"}) == {"level": "CRITICAL", "score": 0.99}
	risk.assess("unknown", ["forbidden"]) == {"level": "CRITICAL", "score": 0.99}
}

test_step_up_high_impact_is_high_risk if {
	risk.assess("high", {"high_impact"}) == {"level": "HIGH", "score": 0.7}
	risk.assess("critical", {"high_impact"}) == {"level": "HIGH", "score": 0.8}
}

test_modify_is_medium_risk if {
	risk.assess("low", {"parameter_modified"}) == {"level": "MEDIUM", "score": 0.4}
}

test_deny_default_posture_uses_unknown_tier if {
	risk.assess("unknown", {"default_posture"}) == {"level": "HIGH", "score": 0.7}
}

test_allow_unlisted_tier_and_code_fall_back if {
	risk.assess("galactic", {"new_code"}) == {"level": "MEDIUM", "score": 0.5}
}

test_risk_level_boundaries if {
	risk.level(0) == "LOW"
	risk.level(0.39) == "LOW"
	risk.level(0.4) == "MEDIUM"
	risk.level(0.7) == "HIGH"
	risk.level(0.9) == "CRITICAL"
	risk.level(1) == "CRITICAL"
}

test_deny_session_risk_codes_are_critical_or_high if {
	risk.assess("medium", {"exfiltration_risk"}) == {"level": "CRITICAL", "score": 0.95}
	risk.assess("low", {"injection_risk"}).level == "CRITICAL"
	risk.assess("low", {"rate_limited"}) == {"level": "HIGH", "score": 0.8}
	risk.assess("low", {"drift"}) == {"level": "HIGH", "score": 0.7}
	risk.assess("low", {"low_confidence"}) == {"level": "MEDIUM", "score": 0.6}
}

test_every_reason_code_has_a_floor if {
	codes := {
		"forbidden", "parameter_invalid", "parameter_blocked", "parameter_unparsed", "exfiltration_risk", "rate_limited",
		"chain_length_exceeded", "untrusted_argument", "untrusted_context", "injection_risk",
		"delegation_scope_exceeded", "dependency_denied", "defer_depth_exceeded", "missing_context",
		"dependency", "conflict", "low_confidence", "context_denied", "context_rule_denied",
		"intent_violation", "classification_escalation", "drift", "context_supported", "memory_trust",
		"privileged_scope", "high_impact", "parameter_modified", "catalogued", "default_posture",
	}
	every code in codes {
		is_number(data.aarm.config.risk.code_floors[code])
	}
}
