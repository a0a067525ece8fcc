"""Loopback ports."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
LOWEST = 10_000
"""The lowest port :func:`free_port` hands out."""
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed: set[int] = set()
"""Ports this process handed out: never twice (two listeners asked for ports before
either binds get different ones)."""
_pick = random.SystemRandom()


def _below_ephemeral() -> tuple[int, int] | None:
    """Ports from :data:`LOWEST` up to the kernel's first ephemeral port, if that leaves
    a few thousand (Linux: 32768-60999 are ephemeral, so 10000-32767)."""
    try:
        first = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (LOWEST, first - 1) if first - LOWEST >= 4096 else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now, for a process to bind next.

    Chosen below the kernel's ephemeral range (at random, never one this process handed
    out before, then checked by binding it):
    between this check and the listener's bind, no outgoing connection can take it as
    its source port. A port the kernel chose (``bind`` to 0) came from the ephemeral
    range, and a busy run that opened thousands of connections (the fault matrix's
    20 000 idle ones) once took such a port first: the OPA told to listen there exited.
    """
    span = _below_ephemeral()
    if span is not None:
        for _ in range(256):
            port = _pick.randint(*span)
            if port in _handed:
                continue
            with socket.socket() as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed.add(port)
            return port
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def address(port: int) -> str:
    """``127.0.0.1:<port>``."""
    return f"{LOOPBACK}:{port}"


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:<port>."""
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0
