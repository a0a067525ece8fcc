"""Replay's examples: the first changes per transition in store order, whatever order the
concurrent evaluations finish in (``aarm-pdp policy replay --examples N``)."""

from __future__ import annotations

from aarm_pdp.decision.replay import _Examples


def _fill(keep: int, orders: list[int]) -> dict[str, list[int]]:
    kept = _Examples(keep)
    for order in orders:
        key = "ALLOW->DENY" if order % 2 == 0 else "DENY->ALLOW"
        kept.add(order, key, {"order": order})
    return {key: [ex["order"] for ex in exs] for key, exs in kept.lists().items()}


def test_the_first_in_store_order_are_kept() -> None:
    finished = [9, 4, 7, 0, 12, 3, 8, 1, 10, 6, 5, 2, 11]
    assert _fill(2, finished) == {"ALLOW->DENY": [0, 2], "DENY->ALLOW": [1, 3]}


def test_zero_or_less_keeps_every_one_in_order() -> None:
    finished = [5, 3, 0, 4, 1, 2]
    want = {"DENY->ALLOW": [1, 3, 5], "ALLOW->DENY": [0, 2, 4]}
    assert _fill(0, finished) == want
    assert _fill(-1, finished) == want
