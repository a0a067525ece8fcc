"""The gateway's enforcement port, backed by the project's client (``aarm_pdp_client``).

The proxy talks to the decision service only through :class:`Enforcer`: start a
session, decide (seeing a STEP_UP through), record an outcome, end the session.
:class:`ClientEnforcer` implements it on :class:`aarm_pdp_client.AsyncClient`, the
same enforcement flow every Python agent uses: Decide, a MODIFY's parameters coerced
to the tool's input schema, STEP_UP held on ``WatchApproval`` and re-submitted with the
granted token, a service that does not answer a denial. :meth:`Enforcer.decide` never
raises: whatever does not run comes back as a :class:`~.verdicts.Verdict` that says
why. The session calls raise :class:`EnforcerError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from aarm_pdp.gateway.config import DecisionServiceConfig
from aarm_pdp.gateway.verdicts import Outcome, Reason, SessionIdentity, Verdict, fail_closed

log = logging.getLogger("aarm_pdp.gateway")

STEP_UP_RULE = "aarm.gateway.step_up"
"""The rule id of the gateway's own last word on a STEP_UP that did not end in a grant."""


class EnforcerError(RuntimeError):
    """A session call (start, outcome, end) failed; the message says why."""


class Enforcer(Protocol):
    """What the proxy needs of the decision service."""

    async def start_session(self, who: SessionIdentity, original_request: str) -> None: ...

    async def decide(
        self,
        who: SessionIdentity,
        tool: str,
        operation: str,
        arguments: dict[str, Any],
        *,
        schema: Mapping[str, Any] | None,
        approval_wait: float,
    ) -> Verdict:
        """The final verdict: ALLOW/MODIFY (with the arguments to run), or why not."""
        ...

    async def record_outcome(
        self, who: SessionIdentity, decision_id: str, outcome: Outcome
    ) -> None: ...

    async def end_session(self, who: SessionIdentity) -> None: ...

    async def close(self) -> None: ...


class ClientEnforcer:
    """:class:`Enforcer` on the aarm-pdp client (grpc.aio, one channel per gateway)."""

    def __init__(self, cfg: DecisionServiceConfig) -> None:
        import aarm_pdp_client as aarm

        self._aarm = aarm
        token = cfg.token_file.read_text().strip() if cfg.token_file is not None else None
        tls = (
            aarm.Tls.from_files(cfg.ca_file, cfg.client_cert, cfg.client_key)
            if cfg.ca_file is not None
            else None
        )
        self._client = aarm.AsyncClient(
            cfg.target, token=token or None, tls=tls, timeout=cfg.timeout_seconds
        )

    def _identity(self, who: SessionIdentity) -> Any:
        return self._aarm.Identity(
            tenant=who.tenant,
            human=who.human,
            service=who.service,
            agent=who.agent,
            session_id=who.session_id,
        )

    async def close(self) -> None:
        await self._client.close()

    async def start_session(self, who: SessionIdentity, original_request: str) -> None:
        try:
            await self._client.start_session(self._identity(who), original_request)
        except self._aarm.AarmClientError as exc:
            raise EnforcerError(str(exc)) from exc

    async def end_session(self, who: SessionIdentity) -> None:
        try:
            await self._client.end_session(self._identity(who))
        except self._aarm.AarmClientError as exc:
            raise EnforcerError(str(exc)) from exc

    async def decide(
        self,
        who: SessionIdentity,
        tool: str,
        operation: str,
        arguments: dict[str, Any],
        *,
        schema: Mapping[str, Any] | None,
        approval_wait: float,
    ) -> Verdict:
        aarm = self._aarm
        held: list[Any] = []

        def on_step_up(info: Any) -> None:
            held.append(info)
            log.info(
                "%s.%s: STEP_UP, holding the call up to %.0f s for approval %s (%s)",
                tool,
                operation,
                min(approval_wait, info.timeout_seconds or approval_wait),
                info.approval_id,
                ", ".join(info.approvers),
            )

        try:
            v = await self._client.decide(
                self._identity(who),
                tool,
                operation,
                arguments,
                schema=schema,
                on_step_up=on_step_up,
                approval_wait=approval_wait,
            )
        except aarm.ActionDeferred as exc:
            d = exc.deferral
            return Verdict(
                "DEFER",
                exc.decision_id or d.decision_id,
                _reasons(d.reasons or exc.reasons),
                deferral_id=d.deferral_id,
                deferral_trigger=d.trigger,
                context_needed=tuple(d.context_needed),
                deferral_timeout_seconds=float(d.timeout_seconds),
            )
        except aarm.ActionDenied as exc:
            if held and (exc.decision == "STEP_UP" or not exc.decision_id):
                info = held[-1]
                return Verdict(
                    "STEP_UP",
                    info.decision_id,
                    (*_reasons(info.reasons), _step_up_end(exc, approval_wait)),
                    approval_id=info.approval_id,
                    approvers=tuple(info.approvers),
                )
            reasons = _reasons(exc.reasons)
            if not exc.decision_id:  # no verdict at all: the service did not decide
                return fail_closed(reasons[0].code if reasons else "pdp_error", str(exc))
            return Verdict(exc.decision or "DENY", exc.decision_id, reasons)
        return Verdict(
            v.decision,
            v.outcome_decision_id or v.decision_id,
            _reasons(v.reasons),
            arguments=dict(v.parameters),
        )

    async def record_outcome(
        self, who: SessionIdentity, decision_id: str, outcome: Outcome
    ) -> None:
        aarm = self._aarm
        try:
            await self._client.record_outcome(
                self._identity(who),
                decision_id,
                output=outcome.output_text or None,
                error=None if outcome.executed else (outcome.error or "the tool call failed"),
                trust=aarm.Trust.UNTRUSTED
                if outcome.source_trust == "untrusted"
                else aarm.Trust.UNSPECIFIED,
                classification=_classification(aarm, outcome.classification),
                labels=outcome.labels,
                started_at=outcome.started_ns / 1e9,
            )
        except aarm.AarmClientError as exc:
            raise EnforcerError(str(exc)) from exc


def _reasons(reasons: Any) -> tuple[Reason, ...]:
    return tuple(Reason(r.code, r.rule_id, r.message) for r in reasons)


def _classification(aarm: Any, name: str) -> Any:
    return getattr(aarm.Classification, name.upper()) if name else aarm.Classification.UNSPECIFIED


def _step_up_end(exc: Any, wait: float) -> Reason:
    """The gateway's reason for a STEP_UP that ended without a grant."""
    code = exc.reasons[0].code if exc.reasons else ""
    why = (exc.reasons[0].message if exc.reasons else "") or str(exc)
    if code in {"approval_rejected", "approval_expired", "approval_used"}:
        text = {
            "approval_rejected": "an approver rejected the call",
            "approval_expired": "the approval expired before anyone resolved it",
            "approval_used": "the approval was already used",
        }[code]
        return Reason(code, STEP_UP_RULE, f"{text}: {why}" if why else text)
    if code == "pdp_timeout":
        return Reason("step_up_timeout", STEP_UP_RULE, f"no approval within {wait:g} s: denied")
    return Reason("approval_unavailable", STEP_UP_RULE, f"the approval could not be seen: {why}")


def now_ns() -> int:
    """Wall-clock time for outcome timestamps."""
    return time.time_ns()
