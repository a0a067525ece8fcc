"""Loopback ports."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the kernel's choice)."""
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
