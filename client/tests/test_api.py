"""The public API: what `aarm_pdp_client` exports (the MCP gateway and users build on it)."""

from __future__ import annotations

import aarm_pdp_client
from aarm_pdp_client import (
    AarmClientError,
    ActionDeferred,
    ActionDenied,
    OutcomeNotRecorded,
)

API = {
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
}


def test_all_is_the_public_api() -> None:
    assert set(aarm_pdp_client.__all__) == API
    assert all(hasattr(aarm_pdp_client, name) for name in API)


def test_the_error_hierarchy() -> None:
    assert issubclass(ActionDeferred, ActionDenied)
    assert issubclass(ActionDenied, AarmClientError)
    assert issubclass(OutcomeNotRecorded, AarmClientError)
    assert not issubclass(OutcomeNotRecorded, ActionDenied)
