"""A scripted OPA for the fault matrix: a proxy to a real OPA that misbehaves on cue.

In mode ``pass`` every request is forwarded to the real OPA (``upstream``) and its answer
returned as is, so the service pointed at it (``--opa-url``) decides normally. Every
other mode applies to policy queries only (``/v1/data/aarm/...``; health, bundle and
policy listings still pass, so the service stays "ready" and keeps asking):

- ``drip``: the real answer (an ALLOW when healthy), one byte every ``DRIP_SECONDS``:
  complete only long after any sane timeout;
- ``garbage``: 200 with a body that is not JSON;
- ``wrong_types``: 200 with JSON whose fields have the wrong types (one of
  :data:`WRONG_TYPES` in turn, each claiming ALLOW where a type allows it);
- ``http500``: 500 with an OPA error document;
- ``reset``: the connection is reset (RST) once the request is read.

One HTTP/1.1 exchange at a time per connection, keep-alive, Content-Length bodies (what
the service's client sends and accepts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct

import aiohttp

MODES = ("pass", "drip", "garbage", "wrong_types", "http500", "reset")
DRIP_SECONDS = 0.2
WRONG_TYPES: tuple[bytes, ...] = (
    b'{"result": {"decision": true}}',
    b'{"result": ["ALLOW"]}',
    b'{"result": {"decision": "ALLOW", "reasons": "catalogued", "risk": 7}}',
    b'{"result": {"decision": "ALLOW", "reasons": [{"code": 1}], "matched_rules": {}}}',
    b'{"result": "ALLOW"}',
    b'{"result": {"decision": ["ALLOW"], "reasons": [], "risk": {"level": 3, "score": "x"}}}',
)


class ScriptedOpa:
    """The proxy; :meth:`start` it, set :attr:`mode`, :meth:`stop` it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.port = 0
        self.faulted = 0
        """Policy queries answered badly so far."""
        self._server: asyncio.Server | None = None
        self._http: aiohttp.ClientSession | None = None
        self._wrong = itertools.cycle(WRONG_TYPES)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                mode = self.mode if target.startswith("/v1/data/aarm") else "pass"
                if mode == "reset":
                    self.faulted += 1
                    _reset(writer)
                    return
                status, payload = await self._answer(mode, method, target, headers, body)
                if mode != "pass":
                    self.faulted += 1
                head_out = (
                    f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n"
                ).encode()
                if mode == "drip":
                    writer.write(head_out)
                    for i in range(len(payload)):
                        writer.write(payload[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(DRIP_SECONDS)  # the fault itself: a slow peer
                else:
                    writer.write(head_out + payload)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(
        self, mode: str, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[str, bytes]:
        if mode == "garbage":
            return "200 OK", b"<html><body>502 Bad Gateway</body></html>\x00\xff"
        if mode == "wrong_types":
            return "200 OK", next(self._wrong)
        if mode == "http500":
            return "500 Internal Server Error", b'{"code": "internal_error", "message": "boom"}'
        assert self._http is not None
        forward = {k: v for k, v in headers.items() if k in ("content-type", "accept")}
        async with self._http.request(
            method, self.upstream + target, data=body or None, headers=forward
        ) as resp:
            payload = await resp.read()
            return f"{resp.status} {resp.reason or ''}".strip(), payload


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer sees ECONNRESET, not a clean EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
