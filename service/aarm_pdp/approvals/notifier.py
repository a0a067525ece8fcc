"""Tell approvers a request is waiting: POST it to a webhook, off the decision path."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from aarm_pdp.approvals.tickets import Ticket

log = logging.getLogger("aarm_pdp.approvals.webhook")


def payload(ticket: Ticket) -> dict[str, Any]:
    """What the webhook receives: enough to route and show the request, no tokens."""
    return {
        "type": "aarm.approval.requested",
        "approval_id": ticket.ticket_id,
        "decision_id": ticket.decision_id,
        "tenant": ticket.tenant,
        "approvers": ticket.approvers,
        "risk_level": ticket.risk_level,
        "reasons": ticket.reasons,
        "created_ns": ticket.created_ns,
        "deadline_ns": ticket.deadline_ns,
        "source": ticket.context.get("source", "step_up"),
        "context": ticket.context,
    }


class WebhookNotifier:
    """Fire-and-forget POSTs with a few retries; failures are logged, never block."""

    def __init__(self, url: str, *, attempts: int = 3, timeout: float = 2.0) -> None:
        self._url = url
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def __call__(self, ticket: Ticket) -> None:
        task = asyncio.get_running_loop().create_task(self._send(payload(ticket)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=self._timeout)
        for attempt in range(self._attempts):
            try:
                async with self._client.post(
                    self._url, data=data, headers={"content-type": "application/json"}
                ) as resp:
                    if resp.status < 300:
                        self.delivered += 1
                        return
                    log.warning("approval webhook answered %s", resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("approval webhook failed: %s", type(exc).__name__)
            await asyncio.sleep(0.2 * 2**attempt)
        self.failed += 1

    async def aclose(self) -> None:
        """Let in-flight deliveries finish briefly, then close."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        if self._client is not None:
            await self._client.close()
