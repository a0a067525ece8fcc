"""LangChain / LangGraph: an aarm-pdp decision in front of a tool.

::

    from langchain_core.tools import tool
    from aarm_pdp_client import AsyncClient, Identity
    from aarm_pdp_client.adapters.langchain import aarm_tool

    @tool
    def query(table: str, limit: int) -> str:
        "Query a table."

    session = await AsyncClient(target, token=token).start_session(me, user_request)
    tools = [aarm_tool(query, session, action="db.query")]   # e.g. to create_react_agent

:func:`aarm_tool` returns a ``StructuredTool`` with the same name, description and
argument schema. Each invocation is decided first (STEP_UP waits for the approver,
DEFER asks the ``context_provider``), the wrapped tool runs with the decided
parameters (MODIFY applied, in the tool's argument types), and its output is reported
with its trust. A refusal is a ``ToolException``: the agent reads its reason as the
tool's output (``handle_tool_error=True``), or it propagates with
``raise_on_deny=True``. A ``Session`` gives a blocking tool (``invoke``), an
``AsyncSession`` an asyncio one (``ainvoke``, what LangGraph's ToolNode awaits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException

from aarm_pdp_client._aio import AsyncSession
from aarm_pdp_client._client import Session
from aarm_pdp_client._flow import ContextProvider, StepUpHook
from aarm_pdp_client._types import ActionDenied, Classification, OutcomeNotRecorded, Trust
from aarm_pdp_client.adapters import split_action

__all__ = ["aarm_tool", "denial_message"]


def denial_message(exc: ActionDenied) -> str:
    """What the agent reads when a call was not allowed."""
    why = "; ".join(f"{r.code}: {r.message}" if r.message else r.code for r in exc.reasons)
    return f"Not run: the action was refused by policy ({exc.decision}). {why}".strip()


def aarm_tool(
    tool: BaseTool,
    session: Session | AsyncSession,
    *,
    action: str | None = None,
    trust: Trust = Trust.UNSPECIFIED,
    classification: Classification = Classification.UNSPECIFIED,
    context_provider: ContextProvider | None = None,
    on_step_up: StepUpHook | None = None,
    approval_wait: float | None = None,
    raise_on_deny: bool = False,
) -> StructuredTool:
    """``tool`` behind aarm-pdp: decided before each call, its outcome reported after."""
    aarm, operation = split_action(action, tool.name)
    schema: Mapping[str, Any] = tool.get_input_jsonschema()
    decide: dict[str, Any] = {
        "schema": schema,
        "trust": trust,
        "classification": classification,
        "context_provider": context_provider,
        "on_step_up": on_step_up,
    }
    if approval_wait is not None:
        decide["approval_wait"] = approval_wait

    def refused(exc: Exception) -> ToolException:
        if isinstance(exc, ActionDenied):
            return ToolException(denial_message(exc))
        return ToolException(f"Output withheld: {exc}")

    def run(**params: Any) -> Any:
        assert isinstance(session, Session)
        try:
            return session.run(aarm, operation, params, lambda **p: tool.invoke(p), **decide)
        except (ActionDenied, OutcomeNotRecorded) as exc:
            raise refused(exc) from exc

    async def arun(**params: Any) -> Any:
        assert isinstance(session, AsyncSession)

        async def call(**p: Any) -> Any:
            return await tool.ainvoke(p)

        try:
            return await session.run(aarm, operation, params, call, **decide)
        except (ActionDenied, OutcomeNotRecorded) as exc:
            raise refused(exc) from exc

    blocking = isinstance(session, Session)
    return StructuredTool.from_function(
        func=run if blocking else None,
        coroutine=None if blocking else arun,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        handle_tool_error=not raise_on_deny,
    )
