# METADATA
# title: Risk level and score
# description: |
#   Derives the decision's risk {level, score} from the tool's catalogue risk tier and
#   the reason codes of the winning tier: the score is the highest of the tier score and
#   each code's floor, and the level is the highest level whose minimum the score
#   reaches. All numbers live in layers.config.risk.
# related_resources:
#   - ref: docs/policies/risk.md
#     description: risk policy page
package aarm.risk

import data.aarm.layers

_cfg := layers.config.risk

# METADATA
# title: assess
# description: Risk {level, score} for a catalogue tier and a collection of reason codes.
assess(tier, codes) := {"level": level(score), "score": score} if {
	score := max({_tier_score(tier)} | {object.get(_cfg.code_floors, code, 0) | some code in codes})
}

# METADATA
# title: level
# description: The highest configured level whose minimum score the score reaches.
level(score) := sort([name | some name, minimum in _cfg.levels; minimum == top])[0] if {
	top := max({m | some m in _cfg.levels; m <= score})
}

_tier_score(tier) := object.get(_cfg.tier_scores, tier, _cfg.tier_scores.unknown)
