"""The byte bound of every in-process cache and store (model/bounds.py): property-style.

For any sequence of writes, rewrites, removals and reads, with any eviction policy,
the bytes and entries charged never exceed the budget, per tenant or in all; a refused
write changes nothing; only entries the policy allows are ever evicted.
"""

from __future__ import annotations

import pytest
from aarm_pdp.model.bounds import BoundedMap, Budget, BudgetFull
from hypothesis import given, settings
from hypothesis import strategies as st

BUDGET = Budget(tenant_bytes=1000, total_bytes=2500, tenant_entries=8, total_entries=20)
TENANTS = ("a", "b", "c", "d")

_op = st.one_of(
    st.tuples(
        st.just("put"),
        st.integers(0, 40),  # key
        st.sampled_from(TENANTS),
        st.integers(0, 1200),  # size (some bigger than a tenant's budget)
        st.sampled_from(["all", "none", "even"]),  # eviction policy
    ),
    st.tuples(st.just("pop"), st.integers(0, 40)),
    st.tuples(st.just("touch"), st.integers(0, 40)),
)

_POLICIES = {
    "all": lambda k, v: True,
    "none": None,
    "even": lambda k, v: k % 2 == 0,  # e.g. "settled tickets only"
}


def _charged(m: BoundedMap[int, str]) -> tuple[dict[str, tuple[int, int]], int, int]:
    per: dict[str, tuple[int, int]] = {}
    total = 0
    for key, _ in m.items():
        tenant, size = m.tenant_of(key) or "", m.size_of(key)
        b, n = per.get(tenant, (0, 0))
        per[tenant] = (b + size, n + 1)
        total += size
    return per, total, len(m)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=120))
def test_the_budget_is_never_exceeded(ops: list[tuple[object, ...]]) -> None:
    m: BoundedMap[int, str] = BoundedMap("test", BUDGET)
    for op in ops:
        if op[0] == "put":
            _, key, tenant, size, policy = op
            assert isinstance(key, int) and isinstance(size, int)
            before = dict(m.items())
            usage = m.usage()
            evictable = _POLICIES[str(policy)]
            refused: BudgetFull | None = None
            evicted: list[tuple[int, str]] = []
            try:
                evicted = m.put(key, str(tenant), f"v{key}", size, evictable=evictable)
            except BudgetFull as exc:
                refused = exc
            if refused is not None:
                assert refused.scope in ("tenant", "total", "entry")
                assert dict(m.items()) == before and m.usage() == usage  # nothing changed
            else:
                assert m.get(key) == f"v{key}"
                for gone, _ in evicted:
                    assert gone != key and gone not in m
                    assert evictable is not None and evictable(gone, "")
        elif op[0] == "pop":
            m.pop(int(op[1]))  # type: ignore[call-overload]
        else:
            m.touch(int(op[1]))  # type: ignore[call-overload]
        per, total, count = _charged(m)
        assert total == m.usage().bytes <= BUDGET.total_bytes
        assert count == m.usage().entries <= BUDGET.total_entries
        for tenant, (b, n) in per.items():
            assert (b, n) == (m.usage(tenant).bytes, m.usage(tenant).entries)
            assert b <= BUDGET.tenant_bytes and n <= BUDGET.tenant_entries


def test_eviction_is_oldest_first_within_the_tenant_then_overall() -> None:
    m: BoundedMap[str, int] = BoundedMap("t", Budget(tenant_bytes=300, total_bytes=500))
    for i, tenant in enumerate("aabbb"):
        m.put(f"{tenant}{i}", tenant, i, 100, evictable=lambda k, v: True)
    assert [k for k, _ in m.items()] == ["a0", "a1", "b2", "b3", "b4"]
    # b is at its 300: its own oldest goes, not a's.
    evicted = m.put("b5", "b", 5, 100, evictable=lambda k, v: True)
    assert [k for k, _ in evicted] == ["b2"]
    # the map is at its 500: a new tenant takes the oldest of anyone.
    evicted = m.put("c6", "c", 6, 100, evictable=lambda k, v: True)
    assert [k for k, _ in evicted] == ["a0"]
    assert m.stats().evictions == {"budget": 2}
    assert m.stats().largest_tenant_bytes == 300


def test_unevictable_entries_make_the_put_refuse_not_drop() -> None:
    m: BoundedMap[str, bool] = BoundedMap("tickets", Budget(tenant_bytes=200, total_bytes=1000))
    m.put("open-1", "a", True, 100)
    m.put("open-2", "a", True, 100)
    with pytest.raises(BudgetFull) as exc:
        m.put("open-3", "a", True, 1, evictable=lambda k, open_: not open_)
    assert exc.value.scope == "tenant"
    assert [k for k, _ in m.items()] == ["open-1", "open-2"]
    assert m.stats().refusals == {"tenant": 1}
    m.put("open-2", "a", False, 100)  # settled: a rewrite at its own size fits
    m.put("open-3", "a", True, 100, evictable=lambda k, open_: not open_)
    assert [k for k, _ in m.items()] == ["open-1", "open-3"]


def test_a_rewrite_is_charged_its_new_size() -> None:
    m: BoundedMap[str, str] = BoundedMap("s", Budget(tenant_bytes=100, total_bytes=100))
    m.put("k", "a", "x", 90)
    m.put("k", "a", "y", 100)
    assert m.usage("a").bytes == 100 and len(m) == 1
    with pytest.raises(BudgetFull) as exc:
        m.put("k", "a", "z", 101)
    assert exc.value.scope == "entry"
    assert m.get("k") == "y"


def test_budgets_are_checked() -> None:
    with pytest.raises(ValueError, match="tenant_bytes"):
        Budget(tenant_bytes=10, total_bytes=5)
