"""A small HTTP/1.1 client for one OPA sidecar: keep-alive connections, no more.

The Decide hot path makes one POST per decision to one fixed peer. A general client
(aiohttp, httpx) spends most of its time on what this path never needs: URL and
cookie handling, redirects, header multidicts, streaming bodies, tracing hooks. This
client writes a pre-built request head and parses the answer in an
:class:`asyncio.Protocol`: status line, ``Content-Length`` or chunked body, nothing
else. Measured in ``docs/performance.md``.

Every way the exchange can go wrong is an exception, never a partial answer:

* :class:`HttpTimeout` the deadline passed (the connection is dropped, not reused);
* :class:`HttpUnavailable` cannot connect, the TLS handshake failed (untrusted or
  expired certificate, wrong host name, refused client certificate), or the peer
  closed the connection before a whole answer arrived;
* :class:`HttpProtocolError` the answer is not HTTP/1.1 as this client reads it, or is
  larger than ``max_body``.

A request that fails on a *reused* connection before any answer byte arrived is sent
once more on a new connection: the peer may have closed the idle connection just as
it was taken from the pool, and every request this client makes is a side-effect-free
query, so repeating it is safe.

TLS (``https://`` OPA) is the event loop's: an :class:`ssl.SSLContext` made by
:func:`tls_context` is handed to ``loop.create_connection`` with the peer's host name,
so the pool and the parser see only plaintext bytes and a plain ``http://`` pool does
exactly what it did before. There is no fallback: a pool with a context never opens a
plaintext connection.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Final, cast

__all__ = [
    "HttpError",
    "HttpPool",
    "HttpProtocolError",
    "HttpTimeout",
    "HttpUnavailable",
    "tls_context",
]

MAX_HEAD: Final = 16 * 1024
_CLOSE_GRACE_SECONDS: Final = 1.0
_CRLF: Final = b"\r\n"


class HttpError(Exception):
    """Base of this module's errors."""


class HttpTimeout(HttpError):
    """No whole answer before the deadline."""


class HttpUnavailable(HttpError):
    """Could not connect, or the connection closed before a whole answer."""


class HttpProtocolError(HttpError):
    """The answer is malformed or too large."""


def tls_context(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """A client context for one OPA peer: verified, host name checked, TLS 1.2 or newer.

    ``ca_file`` None trusts the system store; given, only the CAs in it are trusted.
    ``cert_file`` and ``key_file`` (both or neither) present a client certificate for
    mutual TLS (unencrypted PEM key). Raises :class:`OSError` (an :class:`ssl.SSLError`
    among them) when a file is unreadable or not PEM or the key does not match.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs its key, and a key its certificate")
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if ca_file is None else str(ca_file)
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.set_alpn_protocols(["http/1.1"])
    if cert_file is not None and key_file is not None:
        # An encrypted key fails here instead of prompting on the terminal.
        ctx.load_cert_chain(str(cert_file), str(key_file), password=lambda: b"")
    return ctx


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self._loop = loop
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._body_start = -1  # index in _buf after the head; -1 while reading the head
        self._length = -1  # Content-Length; -1 when chunked or until close
        self._chunked = False
        self._chunks = bytearray()
        self._chunk_pos = 0
        self.keep_alive = True
        self.closed = False
        self.received = False
        """Some answer bytes arrived for the current request."""
        self.lost: asyncio.Future[None] = loop.create_future()
        """Done once the transport is gone (a TLS close waits for the peer's goodbye)."""

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any event loop's stream transport (uvloop's do not subclass asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # nothing was asked: unsolicited bytes, drop the connection
            return
        self.received = True
        self._buf += data
        try:
            self._parse(waiter)
        except HttpProtocolError as exc:
            self.close()
            if not waiter.done():
                waiter.set_exception(exc)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._body_start >= 0 and self._length < 0 and not self._chunked:
            # No length given: the body runs until the peer closes (RFC 9112 6.3).
            waiter.set_result((self._status, bytes(self._buf[self._body_start :])))
            return
        waiter.set_exception(HttpUnavailable(f"connection closed mid-answer ({exc or 'EOF'})"))

    # --- use ------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write one request; the future resolves to (status, body)."""
        assert self._transport is not None
        self._waiter = self._loop.create_future()
        self._buf.clear()
        self._status = 0
        self._body_start = -1
        self._length = -1
        self._chunked = False
        self._chunks.clear()
        self._chunk_pos = 0
        self.received = False
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    # --- parsing --------------------------------------------------------------------

    def _parse(self, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        buf = self._buf
        if self._body_start < 0:
            end = buf.find(b"\r\n\r\n")
            if end > MAX_HEAD or (end < 0 and len(buf) > MAX_HEAD):
                raise HttpProtocolError("answer head larger than 16 KiB")
            if end < 0:
                return
            self._head(bytes(buf[:end]))
            self._body_start = end + 4
            if self._status in (204, 304):
                self._length = 0  # never a body (RFC 9110 15.3.5, 15.4.5)
        if self._chunked:
            body = self._dechunk()
            if body is None:
                return
        elif self._length >= 0:
            stop = self._body_start + self._length
            if len(buf) < stop:
                return
            if len(buf) > stop:
                raise HttpProtocolError("bytes after the answer body")
            body = bytes(buf[self._body_start : stop])
        else:
            if len(buf) - self._body_start > self._max_body:
                raise HttpProtocolError("answer body too large")
            return  # until the peer closes
        waiter.set_result((self._status, body))

    def _head(self, head: bytes) -> None:
        lines = head.split(_CRLF)
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise HttpProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        try:
            self._status = int(parts[1])
        except ValueError:
            raise HttpProtocolError(f"bad status code {parts[1][:10]!r}") from None
        if not 200 <= self._status <= 599:
            raise HttpProtocolError(f"unexpected status {self._status}")
        self.keep_alive = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise HttpProtocolError("malformed header line")
            key = name.strip().lower()
            if key == b"content-length":
                if self._length >= 0 or not value.strip().isdigit():
                    raise HttpProtocolError("bad or repeated Content-Length")
                self._length = int(value)
                if self._length > self._max_body:
                    raise HttpProtocolError("answer body too large")
            elif key == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise HttpProtocolError(f"unsupported Transfer-Encoding {value[:40]!r}")
                self._chunked = True
            elif key == b"connection":
                token = value.strip().lower()
                if token == b"close":
                    self.keep_alive = False
                elif token == b"keep-alive":
                    self.keep_alive = True
        if self._chunked and self._length >= 0:
            raise HttpProtocolError("both Content-Length and chunked")
        if self._length < 0 and not self._chunked:
            self.keep_alive = False  # the body ends when the connection does

    def _dechunk(self) -> bytes | None:
        """Consume whole chunks from the buffer; the body once the last chunk is in."""
        buf = self._buf
        pos = self._body_start + self._chunk_pos
        while True:
            eol = buf.find(_CRLF, pos)
            if eol < 0:
                if len(buf) - pos > 1024:
                    raise HttpProtocolError("chunk size line too long")
                break
            size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                # Last chunk: no trailers expected, but skip them if any.
                end = buf.find(b"\r\n\r\n", eol) if buf[eol + 2 : eol + 4] != _CRLF else eol
                if end < 0 or len(buf) < end + 4:
                    break
                if len(buf) > end + 4:
                    raise HttpProtocolError("bytes after the answer body")
                return bytes(self._chunks)
            data_end = eol + 2 + size
            if len(buf) < data_end + 2:
                break
            if buf[data_end : data_end + 2] != _CRLF:
                raise HttpProtocolError("chunk not followed by CRLF")
            if len(self._chunks) + size > self._max_body:
                raise HttpProtocolError("answer body too large")
            self._chunks += buf[eol + 2 : data_end]
            pos = data_end + 2
        self._chunk_pos = pos - self._body_start
        return None


class HttpPool:
    """Keep-alive connections to one host (``host``/``port``, or a unix socket path).

    With ``tls`` every connection is TLS to ``host`` (its certificate must name it);
    a failed handshake is :class:`HttpUnavailable`, never a plaintext retry.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 80,
        unix_path: str | None = None,
        max_connections: int = 64,
        max_body: int = 4 * 1024 * 1024,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if tls is not None and unix_path is not None:
            raise ValueError("TLS is for host:port peers, not unix sockets")
        self._host = host
        self._port = port
        self._unix = unix_path
        self._tls = tls
        self._tls_host = host if tls is not None else None
        self._max_body = max_body
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._max = max_connections
        self._closed = False
        host_header = "localhost" if unix_path is not None else f"{host}:{port}"
        self._host_line = f"Host: {host_header}\r\n".encode("ascii")
        self._prefixes: dict[tuple[str, str, bool], bytes] = {}

    def head(self, method: str, target: str, body_length: int | None) -> bytes:
        """The request head for ``method target`` (ASCII ``target`` only).

        Everything but the length is built once per (method, target): a client asks a
        handful of fixed paths, the decision path on every Decide.
        """
        key = (method, target, body_length is not None)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = f"{method} {target} HTTP/1.1\r\n".encode("ascii") + self._host_line
            if body_length is not None:
                prefix += b"Content-Type: application/json\r\nContent-Length: "
            self._prefixes[key] = prefix
        if body_length is None:
            return prefix + _CRLF
        return prefix + b"%d\r\n\r\n" % body_length

    async def request(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Send ``head + body``; return (status, body). Raises :class:`HttpError`."""
        if self._closed:
            raise HttpUnavailable("client is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)  # bound to the running loop
        data = head + body
        try:
            async with asyncio.timeout(timeout), self._slots:
                conn, reused = await self._take()
                try:
                    status, answer = await self._exchange(conn, data)
                except HttpUnavailable:
                    if not reused or conn.received:
                        raise
                    conn = await self._connect()
                    status, answer = await self._exchange(conn, data)
        except TimeoutError:
            raise HttpTimeout(f"no answer within {timeout:.3f}s") from None
        return status, answer

    async def _exchange(self, conn: _Connection, data: bytes) -> tuple[int, bytes]:
        try:
            result = await conn.send(data)
        except BaseException:
            conn.close()  # a cancelled or failed exchange leaves the stream unusable
            raise
        if conn.keep_alive and not conn.closed and not self._closed:
            self._idle.append(conn)
        else:
            conn.close()
        return result

    async def _take(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()

        def factory() -> _Connection:
            return _Connection(loop, self._max_body)

        try:
            if self._unix is not None:
                _, conn = await loop.create_unix_connection(factory, self._unix)
            else:
                _, conn = await loop.create_connection(
                    factory, self._host, self._port, ssl=self._tls, server_hostname=self._tls_host
                )
        except ssl.SSLError as exc:  # an OSError, named apart: bad CA, host, expiry, alert
            raise HttpUnavailable(f"TLS handshake with {self._host} failed: {exc}") from exc
        except OSError as exc:  # a TLS peer hanging up mid-handshake is a bare reset
            raise HttpUnavailable(f"cannot connect: {str(exc) or type(exc).__name__}") from exc
        if conn.closed:  # the peer hung up (or refused our certificate) right away
            raise HttpUnavailable("connection closed before the request")
        return conn

    async def aclose(self) -> None:
        self._closed = True
        closing, self._idle = self._idle, []
        for conn in closing:
            conn.close()
        # A TLS close sends close_notify and waits for the peer's: give it a moment,
        # then cut what is left, so that no socket outlives the pool.
        pending = [conn.lost for conn in closing if not conn.lost.done()]
        if pending:
            await asyncio.wait(pending, timeout=_CLOSE_GRACE_SECONDS)
        for conn in closing:
            if not conn.lost.done():
                conn.abort()
        await asyncio.sleep(0)
