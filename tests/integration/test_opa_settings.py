"""The managed OPA runs with the settings measured to pay (docs/performance.md, "OPA
levers"): the read-optimised store and ``GOGC=400``, unless the service's own
environment sets ``GOGC`` (it then passes through)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aarm_pdp.opa.sidecar import OPA_ENV, OPA_FLAGS, opa_env

from tests.support.service import running, service_config

pytestmark = pytest.mark.integration


def _proc(pid: int, name: str) -> list[str]:
    return Path(f"/proc/{pid}/{name}").read_bytes().decode().split("\0")


async def test_the_managed_opa_runs_with_the_tuned_store_and_gc(opa_binary: str) -> None:
    assert OPA_FLAGS == ("--optimize-store-for-read-speed",)
    assert OPA_ENV == {"GOGC": "400"}
    async with running(service_config(opa_binary)) as (app, _clients):
        assert app.sidecar is not None
        pid = app.sidecar.pid
        assert pid is not None
        argv = _proc(pid, "cmdline")
        assert argv[0] == opa_binary and argv[1:3] == ["run", "--server"]
        assert "--optimize-store-for-read-speed" in argv
        assert argv[argv.index("--addr") + 1].startswith("unix://")
        assert "GOGC=400" in _proc(pid, "environ")


def test_an_operator_gogc_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOGC", "150")
    assert opa_env()["GOGC"] == "150"
    monkeypatch.delenv("GOGC")
    assert opa_env()["GOGC"] == "400"
