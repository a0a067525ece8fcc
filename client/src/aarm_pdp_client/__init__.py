"""aarm-pdp-client: put an aarm-pdp decision in front of every tool call.

::

    from aarm_pdp_client import Client, Identity, Trust

    client = Client("127.0.0.1:50051", token=open("var/dev-token").read().strip())
    me = Identity(tenant="default", human="alice@example.com", agent="agent-1",
                  service="my-agent", session_id="s-1")
    with client.start_session(me, "summarise the open tickets") as session:
        with session.guard("tickets", "list", {"limit": 10}) as g:
            rows = list_tickets(**g.parameters)  # MODIFY applied, in the tool's types
            g.record(rows, trust=Trust.TRUSTED)

DENY (and anything that is not a decision: the service down, a timeout) raises
:class:`ActionDenied`; STEP_UP waits for the approver (WatchApproval) and re-submits
with the granted token; DEFER asks the ``context_provider`` given, or raises
:class:`ActionDeferred`.
"""

from aarm_pdp_client._aio import AsyncClient, AsyncGuard, AsyncSession
from aarm_pdp_client._client import Client, Guard, Session
from aarm_pdp_client._coerce import CoercionError, coerce_like, coerce_to_schema
from aarm_pdp_client._flow import ContextProvider, StepUpHook
from aarm_pdp_client._types import (
    AarmClientError,
    ActionDeferred,
    ActionDenied,
    ApprovalInfo,
    Classification,
    DeferralInfo,
    Fact,
    Identity,
    OutcomeNotRecorded,
    Reason,
    Tls,
    Trust,
    Verdict,
)

__all__ = [
    "AarmClientError",
    "ActionDeferred",
    "ActionDenied",
    "ApprovalInfo",
    "AsyncClient",
    "AsyncGuard",
    "AsyncSession",
    "Classification",
    "Client",
    "CoercionError",
    "ContextProvider",
    "DeferralInfo",
    "Fact",
    "Guard",
    "Identity",
    "OutcomeNotRecorded",
    "Reason",
    "Session",
    "StepUpHook",
    "Tls",
    "Trust",
    "Verdict",
    "coerce_like",
    "coerce_to_schema",
]
__version__ = "0.1.0"
