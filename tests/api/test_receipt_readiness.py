"""Readiness reflects the receipt store (issue 14 item 9): a SQLite store that cannot
write turns gRPC health NOT_SERVING, and SERVING again once it can.

"Cannot write" three ways, none needing a tmpfs: the store's files made unwritable
(immutable with ``chattr +i`` as root, whom file modes do not stop; read-only modes
otherwise), and the file system reported full or read-only (``os.statvfs``, what the
store's health check asks). Readiness changes are awaited on the health Watch stream.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import decision_pb2
from aarm_pdp.config import OpaConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from grpc_health.v1 import health_pb2

from tests.support.grpc_clients import Clients
from tests.support.messages import decide_request, verdict_doc
from tests.support.service import fake_config, running

pytestmark = pytest.mark.api
D = decision_pb2
H = health_pb2.HealthCheckResponse
WAIT = 30.0
QUERY = ("db", "query", {"table": "orders", "limit": 10})


async def _readiness(c: Clients, want: int) -> None:
    """Until the server's health is ``want``, on its Watch stream (bounded by WAIT)."""
    call = c.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    try:
        async for update in call:
            if update.status == want:
                return
    finally:
        call.cancel()
    raise AssertionError(f"health stream ended before {H.ServingStatus.Name(want)}")


@contextlib.contextmanager
def _unwritable(files: list[Path]) -> Iterator[bool]:
    """``files`` unwritable for this process; yields whether writes on the descriptors
    already open fail too (immutable: yes; read-only modes: the kernel checks at open)."""
    if os.geteuid() != 0:
        modes = {f: f.stat().st_mode for f in files}
        for f in files:
            f.chmod(0o444)
        try:
            yield False
        finally:
            for f, mode in modes.items():
                f.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("root without chattr: no way to make a file unwritable here")
    made = subprocess.run([chattr, "+i", *map(str, files)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i refused here: {made.stderr.decode().strip()}")
    try:
        yield True
    finally:
        subprocess.run([chattr, "-i", *map(str, files)], check=True)


def _app_config(tmp_path: Path) -> Any:
    return fake_config(tmp_path, opa=OpaConfig(health_interval_seconds=0.05))


async def test_a_store_whose_files_cannot_be_written_is_not_ready(tmp_path: Path) -> None:
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    async with running(_app_config(tmp_path), policy_engine=engine) as (_, c):
        assert (await c.decide.Decide(decide_request(*QUERY))).decision == D.DECISION_ALLOW
        await _readiness(c, H.SERVING)
        db = tmp_path / "receipts.db"
        files = [db, db.with_name("receipts.db-wal")]
        assert all(f.exists() for f in files)
        with _unwritable(files) as writes_fail:
            await _readiness(c, H.NOT_SERVING)
            if writes_fail:
                resp = await c.decide.Decide(decide_request(*QUERY))
                assert resp.decision == D.DECISION_DENY
                assert [r.code for r in resp.reasons] == ["receipt_store_unavailable"]
        await _readiness(c, H.SERVING)
        resp = await c.decide.Decide(decide_request(*QUERY))
        assert resp.decision == D.DECISION_ALLOW
        assert resp.receipt.receipt_id


@pytest.mark.parametrize("fault", ["disk full", "read-only file system"])
async def test_a_full_or_read_only_file_system_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    real = os.statvfs
    faulty = {"on": False}
    store_dir = str(tmp_path)

    def statvfs(path: Any) -> os.statvfs_result:
        st = real(path)
        if not faulty["on"] or os.path.abspath(str(path)) != store_dir:
            return st
        fields = list(st)
        if fault == "disk full":
            fields[4] = 0  # f_bavail
        else:
            fields[8] |= os.ST_RDONLY  # f_flag
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", statvfs)
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    async with running(_app_config(tmp_path), policy_engine=engine) as (_, c):
        await _readiness(c, H.SERVING)
        faulty["on"] = True
        await _readiness(c, H.NOT_SERVING)
        faulty["on"] = False
        await _readiness(c, H.SERVING)
        assert (await c.decide.Decide(decide_request(*QUERY))).decision == D.DECISION_ALLOW
