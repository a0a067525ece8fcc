"""Deterministic drift and intent-alignment scores. PURE.

Per action, five components in [0, 1]:

- ``scope``: 1 when the action's tool, ``tool.operation`` and category are all outside
  the session's scope: the expected scope StartSession declared, else the scope derived
  from the original request's text (:mod:`aarm_pdp.drift.scope`); 0 without either;
- ``expansion``: for an out-of-scope action, how many distinct categories outside
  the scope the session has now entered (this action's included) beyond the first,
  over ``expansion_limit``, capped at 1: one out-of-scope action can be a request put
  loosely, a second kind of action nobody asked for is a session leaving its request;
- ``classification``: how far the session's highest data classification (including
  the level this action is predicted to touch) exceeds the declared maximum,
  as a fraction of the scale (one level = 1/3);
- ``novelty``: 1 when this tool.operation was not used earlier in the session;
- ``chain``: action count over the chain-length limit, capped at 1.

``action`` = the weighted sum (weights in :class:`DriftWeights`), capped at 1. With the
default weights and no declared maximum classification, one out-of-scope action scores
at most 0.5 + 0.1 + 0.1 (novelty, chain), not above the default threshold 0.7; a second
category outside the scope adds 0.2 and passes it.
Cumulative drift is reported two ways, both documented for policy authors:
``max`` (running maximum) and ``ema`` (exponential moving average, ``alpha``).
``alignment`` = 1 - ``action``. Thresholds live in policy data, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aarm_pdp.model.levels import TOP_LEVEL


@dataclass(frozen=True, slots=True)
class DriftWeights:
    """Weights of the drift components and the EMA factor."""

    scope: float = 0.5
    classification: float = 0.3
    novelty: float = 0.1
    chain: float = 0.1
    expansion: float = 0.2
    alpha: float = 0.5
    chain_limit: int = 30
    expansion_limit: int = 1


def in_scope(scope: tuple[str, ...], tool: str, name: str, category: str) -> bool:
    """True when the scope is empty or names the tool, the tool.operation or the category."""
    return not scope or tool in scope or name in scope or (bool(category) and category in scope)


def score(
    *,
    tool: str,
    name: str,
    category: str,
    expected_scope: tuple[str, ...],
    derived_scope: tuple[str, ...] = (),
    outside: tuple[str, ...] = (),
    max_classification: int | None,
    highest_seen: int,
    predicted: int,
    tools_used: frozenset[str] | set[str],
    action_count: int,
    previous_max: float,
    previous_ema: float,
    weights: DriftWeights,
) -> dict[str, Any]:
    """``input.drift`` for one action.

    ``derived_scope`` counts only when ``expected_scope`` is empty; ``outside`` holds
    the distinct categories (names when uncategorised) of the session's earlier
    out-of-scope actions.
    """
    declared = bool(expected_scope)
    effective = expected_scope if declared else derived_scope
    scope = 0.0 if in_scope(effective, tool, name, category) else 1.0
    expansion = 0.0
    if scope and weights.expansion_limit:
        beyond = len({*outside, category or name}) - 1
        expansion = min(1.0, beyond / weights.expansion_limit)
    top = max(highest_seen, predicted)
    over = 0 if max_classification is None else max(0, top - max_classification)
    classification = over / TOP_LEVEL
    novelty = 0.0 if (action_count == 0 or name in tools_used) else 1.0
    chain = min(1.0, action_count / weights.chain_limit) if weights.chain_limit else 0.0
    action = min(
        1.0,
        weights.scope * scope
        + weights.classification * classification
        + weights.novelty * novelty
        + weights.chain * chain
        + weights.expansion * expansion,
    )
    a = weights.alpha
    ema = action if action_count == 0 else a * action + (1 - a) * previous_ema
    return {
        "action": round(action, 6),
        "alignment": round(1.0 - action, 6),
        "max": round(max(previous_max, action), 6),
        "ema": round(ema, 6),
        "components": {
            "scope": scope,
            "classification": round(classification, 6),
            "novelty": novelty,
            "chain": round(chain, 6),
            "expansion": round(expansion, 6),
        },
        "scope_source": "declared" if declared else ("derived" if derived_scope else "none"),
        "scope_expansion": scope > 0,
        "classification_escalation": over > 0,
    }
