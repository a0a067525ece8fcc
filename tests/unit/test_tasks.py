"""cancel_and_wait: background tasks end when a stop cancels them, bounded, and are
cancelled again when one swallowed its cancellation (as psycopg-pool's can)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aarm_pdp.tasks import cancel_and_wait


async def _swallows(cancels: int, ended: list[str]) -> None:
    """Sleeps on, swallowing the first ``cancels`` cancellations (as psycopg-pool's
    workers and getconn can); the next one ends it."""
    for _ in range(cancels):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("ended")


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_its_cancel() -> None:
    ended: list[str] = []
    once = asyncio.create_task(_swallows(1, ended))
    twice = asyncio.create_task(_swallows(2, ended))
    plain = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    left = await cancel_and_wait([once, twice, plain], round_seconds=0.05)
    assert left == set()
    assert ended == ["ended", "ended"]
    assert once.cancelled() and twice.cancelled() and plain.cancelled()


async def test_cancel_and_wait_is_bounded_and_returns_what_still_runs() -> None:
    ended: list[str] = []
    stubborn = asyncio.create_task(_swallows(5, ended))
    await asyncio.sleep(0)
    left = await cancel_and_wait([stubborn], rounds=3, round_seconds=0.05)
    assert left == {stubborn}
    assert not stubborn.done()
    left = await cancel_and_wait([stubborn], rounds=3, round_seconds=0.05)
    assert left == set() and ended == ["ended"]


async def test_cancel_and_wait_leaves_finished_tasks_and_retrieves_their_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom() -> None:
        raise RuntimeError("kaput")

    failed = asyncio.create_task(boom())
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    assert failed.done() and done.done()
    with caplog.at_level("WARNING", logger="aarm_pdp.tasks"):
        assert await cancel_and_wait([failed, done]) == set()
    assert "kaput" in caplog.text
    assert not done.cancelled()
