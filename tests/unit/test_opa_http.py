"""The minimal OPA HTTP client against scripted servers on real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aarm_pdp.opa.http import HttpPool, HttpProtocolError, HttpTimeout, HttpUnavailable

Answer = Callable[[bytes], list[bytes] | None]
"""Given a request, the chunks to write (None: close without answering)."""


@contextlib.asynccontextmanager
async def server(
    answer: Answer, *, close_after: bool = False, tls: ssl.SSLContext | None = None
) -> AsyncIterator[list[int]]:
    """A loopback server (TLS with ``tls``); yields a list holding [port, connections accepted].

    Over TLS a connection counts once its handshake succeeded.
    """
    state = [0, 0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state[1] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                chunks = answer(request)
                if chunks is None:
                    break
                for chunk in chunks:
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0.001)
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    state[0] = srv.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        srv.close()
        await srv.wait_closed()


def fixed(*chunks: bytes) -> Answer:
    return lambda _req: list(chunks)


def pool_for(state: list[int], *, max_connections: int = 64, max_body: int = 4 << 20) -> HttpPool:
    return HttpPool(
        host="127.0.0.1", port=state[0], max_connections=max_connections, max_body=max_body
    )


async def post(
    pool: HttpPool, body: bytes = b'{"input":{}}', timeout: float = 2.0
) -> tuple[int, bytes]:
    return await pool.request(pool.head("POST", "/v1/data/x", len(body)), body, timeout)


async def test_content_length_answer_split_across_reads_and_kept_alive() -> None:
    ok = b'{"result":{"decision":"ALLOW"}}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
        ok
    )
    async with server(fixed(head[:7], head[7:], ok[:5], ok[5:])) as st:
        pool = pool_for(st)
        for _ in range(3):
            assert await post(pool) == (200, ok)
        assert st[1] == 1  # one connection, reused
        await pool.aclose()


async def test_chunked_answer_with_extensions_and_trailers() -> None:
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with server(fixed(head, body[:9], body[9:])) as st:
        pool = pool_for(st)
        assert await post(pool) == (200, b"hello world")
        assert await post(pool) == (200, b"hello world")
        assert st[1] == 1
        await pool.aclose()


async def test_request_bytes_are_exact() -> None:
    seen: list[bytes] = []

    def answer(req: bytes) -> list[bytes]:
        seen.append(req)
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]

    async with server(answer) as st:
        pool = pool_for(st)
        await post(pool, b'{"input":1}')
        await pool.request(pool.head("GET", "/health?bundles=true", None), b"", 1.0)
        await pool.aclose()
    assert seen[0] == (
        b"POST /v1/data/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"input":1}' % st[0]
    )
    assert seen[1] == b"GET /health?bundles=true HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % st[0]


async def test_connection_close_is_honoured() -> None:
    ans = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    async with server(fixed(ans), close_after=True) as st:
        pool = pool_for(st)
        assert await post(pool) == (200, b"{}")
        assert await post(pool) == (200, b"{}")
        assert st[1] == 2
        await pool.aclose()


async def test_body_until_close_when_no_length() -> None:
    async with server(fixed(b"HTTP/1.0 200 OK\r\n\r\n", b"{", b"}"), close_after=True) as st:
        pool = pool_for(st)
        assert await post(pool) == (200, b"{}")
        await pool.aclose()


async def test_idle_connection_closed_by_peer_is_retried_once() -> None:
    ans = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    calls = [0]

    def answer(_req: bytes) -> list[bytes] | None:
        calls[0] += 1
        return [ans] if calls[0] != 2 else None  # the 2nd request: close, no answer

    async with server(answer) as st:
        pool = pool_for(st)
        assert await post(pool) == (200, b"{}")
        assert await post(pool) == (200, b"{}")  # reused conn dies unanswered: resent
        assert st[1] == 2
        await pool.aclose()


async def test_fresh_connection_closed_without_answer_is_unavailable() -> None:
    async with server(lambda _req: None) as st:
        pool = pool_for(st)
        with pytest.raises(HttpUnavailable):
            await post(pool)
        await pool.aclose()


async def test_closed_mid_answer_is_unavailable_not_partial() -> None:
    async with server(
        fixed(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"result":'), close_after=True
    ) as st:
        pool = pool_for(st)
        with pytest.raises(HttpUnavailable):
            await post(pool)
        await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 101 Switching\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    ],
)
async def test_malformed_answers_are_protocol_errors(answer: bytes) -> None:
    async with server(fixed(answer)) as st:
        pool = pool_for(st, max_body=1024)
        with pytest.raises(HttpProtocolError):
            await post(pool)
        await pool.aclose()


async def test_chunked_body_over_the_limit_is_refused() -> None:
    chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
    async with server(
        fixed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk, chunk)
    ) as st:
        pool = pool_for(st, max_body=1500)
        with pytest.raises(HttpProtocolError):
            await post(pool)
        await pool.aclose()


async def test_timeout_drops_the_connection() -> None:
    calls = [0]

    def answer(_req: bytes) -> list[bytes]:
        calls[0] += 1
        if calls[0] == 1:
            return []  # never answers the first request
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]

    async with server(answer) as st:
        pool = pool_for(st)
        with pytest.raises(HttpTimeout):
            await post(pool, timeout=0.1)
        # A late answer to the first request must never be read as the second's.
        assert await post(pool) == (200, b"{}")
        assert st[1] == 2
        await pool.aclose()


async def test_refused_connection_is_unavailable() -> None:
    async with server(fixed()) as st:
        port = st[0]
    pool = HttpPool(host="127.0.0.1", port=port)
    with pytest.raises(HttpUnavailable):
        await post(pool)


async def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "opa.sock")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_unix_server(handle, path)
    pool = HttpPool(unix_path=path)
    status, body = await pool.request(pool.head("GET", "/health", None), b"", 1.0)
    assert (status, body) == (200, b"{}")
    await pool.aclose()
    srv.close()
    await srv.wait_closed()


async def test_concurrency_is_bounded_by_max_connections() -> None:
    async with server(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")) as st:
        pool = pool_for(st, max_connections=3)
        results = await asyncio.gather(*(post(pool) for _ in range(20)))
        assert all(r == (200, b"{}") for r in results)
        assert st[1] <= 3
        await pool.aclose()
