"""What the benchmark's own servers share: announce the port, serve until a signal."""

from __future__ import annotations

import asyncio
import signal


async def announce_and_wait(port: int) -> None:
    """Print ``READY <port>`` (the harness reads it), then wait for SIGTERM or SIGINT."""
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
