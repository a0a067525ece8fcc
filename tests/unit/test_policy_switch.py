"""Hot reload's parts without OPA: the sources' fingerprint and the client switch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aarm_pdp.opa.layers import source_fingerprint
from aarm_pdp.opa.switching import WARM_UP_QUERIES, SwitchingOpaClient


def _layer(root: Path) -> Path:
    (root / "aarm/x").mkdir(parents=True)
    (root / ".manifest").write_text(json.dumps({"revision": "1", "roots": ["aarm/x"]}))
    (root / "aarm/x/policy.rego").write_text("package aarm.x\n")
    return root


def test_fingerprint_follows_what_opa_loads(tmp_path: Path) -> None:
    layer = _layer(tmp_path / "l")
    first = source_fingerprint([layer])
    (layer / "aarm/x/policy_test.rego").write_text("package aarm.x_test\n")
    (layer / "README.md").write_text("notes")
    assert source_fingerprint([layer]) == first  # tests and other files: not loaded
    (layer / "aarm/x/policy.rego").write_text("package aarm.x\n\nallow := true\n")
    second = source_fingerprint([layer])
    assert second != first
    (layer / ".manifest").write_text(json.dumps({"revision": "2", "roots": ["aarm/x"]}))
    assert source_fingerprint([layer]) != second
    (layer / ".signatures.json").write_text("{}")
    assert source_fingerprint([layer]) not in (first, second)
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"one")
    one = source_fingerprint([layer, bundle])
    bundle.write_bytes(b"two")
    assert source_fingerprint([layer, bundle]) != one


class _Fake:
    def __init__(self, name: str) -> None:
        self.name = name
        self.release = asyncio.Event()
        self.closed = False
        self.seen: list[dict[str, Any]] = []

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
        self.seen.append(input_doc)
        await self.release.wait()
        return {"result": self.name}

    async def aclose(self) -> None:
        self.closed = True


async def test_switch_sends_new_queries_to_the_new_opa_and_waits_for_the_old() -> None:
    client = SwitchingOpaClient("unix:///nonexistent/a.sock", entrypoint="a/b", max_connections=1)
    old, new = _Fake("old"), _Fake("new")
    client._slot.client = old  # type: ignore[assignment]
    in_flight = asyncio.ensure_future(client.evaluate({"n": 1}, timeout=1))
    await asyncio.sleep(0)
    client._client = lambda url: new  # type: ignore[assignment,method-assign,return-value]
    switched = asyncio.ensure_future(client.switch("unix:///nonexistent/b.sock"))
    await asyncio.sleep(0)
    # Warm-up first: the new OPA is sent the last input while the old one still serves.
    assert new.seen == [{"n": 1}]
    assert client.url == "unix:///nonexistent/a.sock"
    new.release.set()
    for _ in range(WARM_UP_QUERIES + 2):
        await asyncio.sleep(0)
    assert new.seen == [{"n": 1}] * WARM_UP_QUERIES
    assert client.url == "unix:///nonexistent/b.sock"
    assert not switched.done()  # the old OPA still has a query
    assert await client.evaluate({"n": 2}, timeout=1) == {"result": "new"}
    assert not switched.done()
    assert not old.closed
    old.release.set()
    assert await in_flight == {"result": "old"}  # answered where it was sent
    await switched
    assert old.closed
    assert client.switches == 1


async def test_no_warm_up_before_any_query_and_a_failed_one_still_switches() -> None:
    client = SwitchingOpaClient("unix:///nonexistent/a.sock", entrypoint="a/b", max_connections=1)
    new = _Fake("new")
    client._client = lambda url: new  # type: ignore[assignment,method-assign,return-value]
    await client.switch("unix:///nonexistent/b.sock")
    assert new.seen == [] and client.switches == 1

    class _Broken(_Fake):
        async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
            self.seen.append(input_doc)
            raise OSError("connection refused")

    broken = _Broken("broken")
    new.release.set()
    await client.evaluate({"n": 3}, timeout=1)
    client._client = lambda url: broken  # type: ignore[assignment,method-assign,return-value]
    await client.switch("unix:///nonexistent/c.sock")
    assert broken.seen == [{"n": 3}]  # tried once, then switched: its answers fail closed
    assert client.url == "unix:///nonexistent/c.sock"
