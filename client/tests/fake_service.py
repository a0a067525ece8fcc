"""A scripted aarm.v1 service on loopback, built on the client's own stubs (no server
package needed): each RPC answers from a script and keeps what it was asked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format

from aarm_pdp_client._gen.aarm.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    decision_pb2,
    decision_pb2_grpc,
    deferral_pb2,
    deferral_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
)

D = decision_pb2
TOKEN = "fake-enforcer-token"


def response(decision: int, **fields: Any) -> decision_pb2.DecideResponse:
    """A DecideResponse from JSON-ish fields (camelCase or snake_case)."""
    resp = json_format.ParseDict(fields, D.DecideResponse())
    resp.decision = decision  # type: ignore[assignment]
    return resp


@dataclass
class Script:
    """What the fake answers; what it was asked."""

    decide: list[Any] = field(default_factory=list)
    """One entry per Decide call: a DecideResponse, a grpc.StatusCode (abort with it), or
    "hang" (never answer); on a stream also "break" (end the stream UNAVAILABLE)."""
    provide: list[decision_pb2.DecideResponse] = field(default_factory=list)
    watch_final: approval_pb2.WatchApprovalResponse | None = None
    decide_requests: list[decision_pb2.DecideRequest] = field(default_factory=list)
    outcomes: list[session_pb2.RecordOutcomeRequest] = field(default_factory=list)
    provided: list[deferral_pb2.ProvideContextRequest] = field(default_factory=list)
    watched: list[approval_pb2.WatchApprovalRequest] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    release_watch: asyncio.Event = field(default_factory=asyncio.Event)
    watch_open: asyncio.Event = field(default_factory=asyncio.Event)
    stream: bool = False
    """Serve DecideStream (each message answered from ``decide`` like a Decide call; a
    StatusCode is that message's error); False: UNIMPLEMENTED, as an older server."""
    delays: dict[str, float] = field(default_factory=dict)
    """Seconds a streamed message for a tool waits before it is answered."""
    tokens: tuple[str, ...] = (TOKEN,)
    streams: list[dict[str, str]] = field(default_factory=list)
    """The metadata of each DecideStream opened."""
    stream_messages: list[decision_pb2.DecideStreamRequest] = field(default_factory=list)


def _auth(context: Any, script: Script) -> bool:
    md = {k: v for k, v in (context.invocation_metadata() or ())}
    script.metadata.append(md)
    return md.get("authorization") in {f"Bearer {t}" for t in script.tokens}


class _Decide(decision_pb2_grpc.DecisionServiceServicer):
    def __init__(self, script: Script) -> None:
        self.s = script

    async def Decide(self, request: Any, context: Any) -> Any:
        if not _auth(context, self.s):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
        self.s.decide_requests.append(request)
        step = self.s.decide.pop(0)
        if step == "hang":
            await asyncio.Event().wait()
        if isinstance(step, grpc.StatusCode):
            await context.abort(step, f"scripted {step.name}")
        out = D.DecideResponse()
        out.CopyFrom(step)
        out.request_id = request.request_id
        return out

    async def DecideStream(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        if not self.s.stream:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        md = {k: v for k, v in (context.invocation_metadata() or ())}
        self.s.streams.append(md)
        if md.get("authorization") not in {f"Bearer {t}" for t in self.s.tokens}:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")
        answers: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(msg: Any, step: Any) -> None:
            await asyncio.sleep(self.s.delays.get(msg.request.action.tool, 0))
            if step == "hang":
                return
            if step == "break":  # the whole stream fails
                await answers.put(step)
                return
            out = D.DecideStreamResponse(message_id=msg.message_id)
            if isinstance(step, grpc.StatusCode):
                out.error.status = step.value[0]
                out.error.code = step.name.lower()
                out.error.message = f"scripted {step.name}"
                out.response.decision = D.DECISION_DENY
            else:
                out.response.CopyFrom(step)
                out.response.request_id = msg.request.request_id
            await answers.put(out)

        async def read() -> None:
            async for msg in request_iterator:
                self.s.stream_messages.append(msg)
                self.s.decide_requests.append(msg.request)
                task = asyncio.create_task(answer(msg, self.s.decide.pop(0)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (out := await answers.get()) is not None:
                if out == "break":
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted break")
                yield out
        finally:
            reader.cancel()


class _Sessions(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, script: Script) -> None:
        self.s = script

    async def StartSession(self, request: Any, context: Any) -> Any:
        self.s.sessions.append(f"start:{request.identity.session_id}:{request.original_request}")
        return session_pb2.StartSessionResponse(
            session_id=request.identity.session_id, context_hash="h0"
        )

    async def RecordOutcome(self, request: Any, context: Any) -> Any:
        self.s.outcomes.append(request)
        return session_pb2.RecordOutcomeResponse(context_hash="h1")

    async def EndSession(self, request: Any, context: Any) -> Any:
        self.s.sessions.append(f"end:{request.identity.session_id}")
        return session_pb2.EndSessionResponse(context_hash="h2", action_count=1)


class _Approvals(approval_pb2_grpc.ApprovalServiceServicer):
    def __init__(self, script: Script) -> None:
        self.s = script

    async def WatchApproval(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.s.watched.append(request)
        yield approval_pb2.WatchApprovalResponse(status=approval_pb2.APPROVAL_STATUS_PENDING)
        self.s.watch_open.set()
        await self.s.release_watch.wait()
        if self.s.watch_final is not None:
            yield self.s.watch_final


class _Deferrals(deferral_pb2_grpc.DeferralServiceServicer):
    def __init__(self, script: Script) -> None:
        self.s = script

    async def ProvideContext(self, request: Any, context: Any) -> Any:
        self.s.provided.append(request)
        return deferral_pb2.ProvideContextResponse(
            status=deferral_pb2.DEFERRAL_STATUS_RESOLVED, decision=self.s.provide.pop(0)
        )


@contextlib.asynccontextmanager
async def fake_service(script: Script) -> AsyncIterator[str]:
    """The fake on a kernel-chosen loopback port; yields ``host:port``."""
    server = grpc.aio.server()
    decision_pb2_grpc.add_DecisionServiceServicer_to_server(_Decide(script), server)
    session_pb2_grpc.add_SessionServiceServicer_to_server(_Sessions(script), server)
    approval_pb2_grpc.add_ApprovalServiceServicer_to_server(_Approvals(script), server)
    deferral_pb2_grpc.add_DeferralServiceServicer_to_server(_Deferrals(script), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def on(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    """Run ``fn`` on ``loop`` from another thread (a blocking client's hook)."""
    loop.call_soon_threadsafe(fn)
