"""A reason and its explanation as ``aarm.v1.Reason`` (docs/policies/explain.md).

One translation for every answer that carries reasons: Decide, DecideStream, the
approval requests an approver reads. The explanation members are set only when the
policy gave them, so a reason without one costs what it always did.
"""

from __future__ import annotations

from typing import Any

from aarm.v1 import decision_pb2

from aarm_pdp.model.decision import Reason

__all__ = ["fill_reason", "reason_pb"]


def fill_reason(msg: Any, r: Reason) -> None:
    """Write ``r`` into the empty ``aarm.v1.Reason`` message ``msg`` (in place)."""
    msg.code = r.code
    msg.rule_id = r.rule_id
    msg.message = r.message
    if r.param is not None:
        msg.param = r.param
    prov = r.provenance
    if prov is not None:
        msg.provenance.origin = prov.origin
        for s in prov.sources:
            msg.provenance.sources.add(call=s.call, tool=s.tool, decision_id=s.decision_id)
    change = r.would_change
    if change is not None:
        wc = msg.would_change
        wc.kind = change.kind
        wc.text = change.text
        wc.approver_group = change.approver_group
        wc.fact = change.fact
        if change.threshold is not None:
            wc.threshold = change.threshold
        if change.value is not None:
            wc.value = change.value
        wc.context_needed.extend(change.context_needed)


def reason_pb(r: Reason) -> Any:
    """``r`` as a new ``aarm.v1.Reason``."""
    msg = decision_pb2.Reason()
    fill_reason(msg, r)
    return msg
