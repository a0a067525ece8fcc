"""OpenAI Agents SDK: an aarm-pdp decision in front of a ``FunctionTool``.

::

    from agents import Agent, function_tool
    from aarm_pdp_client import AsyncClient, Identity
    from aarm_pdp_client.adapters.openai_agents import aarm_guarded

    @function_tool
    def query(table: str, limit: int) -> str: ...

    session = await AsyncClient(target, token=token).start_session(me, user_request)
    agent = Agent(name="ops", tools=[aarm_guarded(query, session, action="db.query")])

:func:`aarm_guarded` returns a copy of the tool with a tool input guardrail (Decide:
DENY, an unanswered DEFER, a refused approval or an unreachable service reject the
call, the model gets the reason as the tool's output; STEP_UP waits for the approver),
its invoker running the tool with the decided parameters (MODIFY applied, in the
tool's JSON schema types), and a tool output guardrail reporting the output with its
trust. A call the input guardrail did not allow never runs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from agents import (
    FunctionTool,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrailData,
    ToolOutputGuardrailData,
    tool_input_guardrail,
    tool_output_guardrail,
)
from agents.tool_context import ToolContext

from aarm_pdp_client._aio import AsyncGuard, AsyncSession
from aarm_pdp_client._flow import ContextProvider, StepUpHook
from aarm_pdp_client._types import ActionDenied, Classification, OutcomeNotRecorded, Trust
from aarm_pdp_client.adapters import split_action

__all__ = ["aarm_guarded", "aarm_guarded_all", "denial_message"]


def denial_message(exc: ActionDenied) -> str:
    """What the model reads when a call was not allowed."""
    why = "; ".join(f"{r.code}: {r.message}" if r.message else r.code for r in exc.reasons)
    return f"Not run: the action was refused by policy ({exc.decision}). {why}".strip()


def aarm_guarded(
    tool: FunctionTool,
    session: AsyncSession,
    *,
    action: str | None = None,
    trust: Trust = Trust.UNSPECIFIED,
    classification: Classification = Classification.UNSPECIFIED,
    context_provider: ContextProvider | None = None,
    on_step_up: StepUpHook | None = None,
    approval_wait: float | None = None,
) -> FunctionTool:
    """``tool`` behind aarm-pdp: decided before it runs, its outcome reported after."""
    aarm_tool, operation = split_action(action, tool.name)
    inner = tool.on_invoke_tool
    schema: Mapping[str, Any] = tool.params_json_schema
    allowed: dict[str, AsyncGuard] = {}
    decide: dict[str, Any] = {
        "schema": schema,
        "context_provider": context_provider,
        "on_step_up": on_step_up,
    }
    if approval_wait is not None:
        decide["approval_wait"] = approval_wait

    @tool_input_guardrail(name="aarm_pdp_decide")
    async def decide_first(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        try:
            params = json.loads(ctx.tool_arguments or "{}")
        except json.JSONDecodeError:
            return ToolGuardrailFunctionOutput.reject_content("Not run: arguments are not JSON")
        if not isinstance(params, dict):
            return ToolGuardrailFunctionOutput.reject_content("Not run: arguments not an object")
        guard = session.guard(
            aarm_tool, operation, params, trust=trust, classification=classification, **decide
        )
        try:
            await guard.__aenter__()
        except ActionDenied as exc:
            return ToolGuardrailFunctionOutput.reject_content(
                denial_message(exc),
                output_info={"decision": exc.decision, "codes": list(exc.codes)},
            )
        assert guard.verdict is not None
        allowed[ctx.tool_call_id] = guard
        return ToolGuardrailFunctionOutput.allow(
            output_info={
                "decision": guard.verdict.decision,
                "decision_id": guard.verdict.decision_id,
            }
        )

    async def invoke(ctx: ToolContext[Any], arguments: str) -> Any:
        guard = allowed.get(ctx.tool_call_id)
        if guard is None:  # the input guardrail did not allow this call: never run it
            return "Not run: no aarm-pdp decision for this call"
        try:
            return await inner(ctx, json.dumps(guard.parameters))
        except BaseException as exc:
            allowed.pop(ctx.tool_call_id, None)
            await guard.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    @tool_output_guardrail(name="aarm_pdp_outcome")
    async def report_after(data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        guard = allowed.pop(data.context.tool_call_id, None)
        if guard is None:
            return ToolGuardrailFunctionOutput.allow()
        try:
            await guard.record(data.output)
        except OutcomeNotRecorded as exc:
            # The service has not seen this output: it does not reach the model.
            return ToolGuardrailFunctionOutput.reject_content(f"Output withheld: {exc}")
        return ToolGuardrailFunctionOutput.allow()

    guarded = copy.copy(tool)
    guarded.on_invoke_tool = invoke
    guarded.tool_input_guardrails = [decide_first, *(tool.tool_input_guardrails or [])]
    guarded.tool_output_guardrails = [*(tool.tool_output_guardrails or []), report_after]
    return guarded


def aarm_guarded_all(
    tools: Iterable[FunctionTool],
    session: AsyncSession,
    actions: Mapping[str, str] | None = None,
    **kw: Any,
) -> list[FunctionTool]:
    """:func:`aarm_guarded` for each tool; ``actions`` maps a tool name to its action."""
    names = actions or {}
    return [aarm_guarded(t, session, action=names.get(t.name), **kw) for t in tools]
