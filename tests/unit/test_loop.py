"""The event-loop choice: both loops run the service's coroutine; anything else is refused."""

from __future__ import annotations

import asyncio

import pytest
from aarm_pdp.config import Config, ConfigError, ServerConfig
from aarm_pdp.loop import run_loop


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_run_loop_runs_on_the_chosen_loop(kind: str) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = run_loop(which(), kind)
    assert module.startswith("uvloop") == (kind == "uvloop")


def test_unknown_loop_is_refused() -> None:
    async def nothing() -> None:
        return None

    coro = nothing()
    with pytest.raises(ValueError, match="unknown event loop"):
        run_loop(coro, "trio")
    coro.close()
    with pytest.raises(ConfigError, match="event_loop"):
        Config(server=ServerConfig(event_loop="trio")).validate()
