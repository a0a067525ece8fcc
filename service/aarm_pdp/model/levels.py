"""Data classification levels, lowest first. PURE.

One scale for the session, the policy input, receipts and the proto
``Classification`` enum (whose value ``i + 1`` is ``LEVELS[i]``; 0 is unspecified).
"No classification" is spelled :data:`NO_CLASSIFICATION` everywhere.
"""

from __future__ import annotations

LEVELS = ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED")
LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
TOP_LEVEL = len(LEVELS) - 1
NO_CLASSIFICATION = "NONE"
"""The one spelling of "no classification seen or declared" (below ``PUBLIC``)."""


def level(name: str | None) -> int:
    """Index of a classification name; unknown or missing names count as the top level."""
    if name is None:
        return TOP_LEVEL
    return LEVEL_INDEX.get(name.upper(), TOP_LEVEL)
