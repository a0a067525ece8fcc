"""Receipts end to end: every verdict receipted, verified offline, tampering detected,
key rotation, PostgreSQL, and no returned decision lost to a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import (
    decision_pb2,
    decision_pb2_grpc,
    receipt_pb2,
    session_pb2,
)
from aarm_pdp.receipts import keys as rkeys
from aarm_pdp.receipts.verify import PublicKeys, verify_chain, verify_receipt
from google.protobuf import json_format

from tests.support.grpc_clients import Clients, aio_channel
from tests.support.messages import decide_request
from tests.support.ports import free_port
from tests.support.processes import serve_command
from tests.support.service import running, service_config

pytestmark = pytest.mark.integration
D = decision_pb2
IDENT = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "agent": "agent-7",
    "session_id": "rcpt-1",
}

FIVE = [
    ("db", "query", {"table": "orders", "limit": 10}, D.DECISION_ALLOW),
    ("database", "drop", {"database": "production"}, D.DECISION_DENY),
    ("db", "query", {"table": "orders", "limit": 5000}, D.DECISION_MODIFY),
    (
        "payments",
        "transfer",
        {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"},
        D.DECISION_STEP_UP,
    ),
    ("credentials", "rotate", {"target": "prod-payments"}, D.DECISION_DEFER),
]


async def _five_and_end(c: Clients) -> tuple[list[Any], Any, PublicKeys]:
    stub = c.decide
    responses = []
    for tool, op, params, want in FIVE:
        resp = await stub.Decide(decide_request(tool, op, params, identity=IDENT))
        assert resp.decision == want
        assert resp.receipt.receipt_id
        responses.append(resp)
    await c.sessions.EndSession(
        session_pb2.EndSessionRequest(identity=json_format.ParseDict(IDENT, D.Identity()))
    )
    rs = c.receipts
    listed = await rs.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="rcpt-1")
    )
    jwks = (await rs.GetPublicKeys(receipt_pb2.GetPublicKeysRequest())).jwks
    return responses, listed, PublicKeys.from_jwks(jwks)


def _check_chain(responses: list[Any], listed: Any, keys: PublicKeys) -> list[str]:
    payloads = [r.payload for r in listed.receipts]
    assert len(payloads) == 6  # five decisions and the terminal session_end
    result = verify_chain(payloads, keys, require_complete=True)
    assert result.ok, result.message
    # Each response carried exactly the stored, signed receipt.
    for resp, stored in zip(responses, payloads, strict=False):
        assert resp.receipt.payload == stored
        assert verify_receipt(resp.receipt.payload, keys).ok
    docs = [json.loads(p) for p in payloads]
    kinds = [d["kind"] for d in docs]
    assert kinds == ["decision"] * 5 + ["session_end"]
    results = [d["decision"]["result"] for d in docs[:5]]
    assert results == ["ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER"]
    for d in docs[:5]:
        assert d["identity"]["human"] == "alice@acme.example"
        assert d["identity"]["agent"] == "agent-7"
        assert len(d["decision"]["policy"]["hash"]) == 64
        assert d["decision"]["policy"]["revision"]
        assert len(d["context"]["context_hash"]) == 64
        assert d["decision"]["reasons"]
        assert d["signature"]["algorithm"] == "Ed25519"
    assert docs[2]["action"]["modified_parameters"]["limit"] == 1000
    assert docs[3]["decision"]["approval_request"]["approvers"]
    assert docs[4]["decision"]["deferral_request"]["context_needed"] == ["maintenance_window"]
    return payloads


def _edit(payload: str, path: list[str], value: Any) -> str:
    doc = json.loads(payload)
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return json.dumps(doc)


async def test_five_verdicts_verify_offline_and_tampering_is_located(opa_binary: str) -> None:
    async with running(service_config(opa_binary)) as (_, c):
        responses, listed, keys = await _five_and_end(c)
    payloads = _check_chain(responses, listed, keys)
    # Edit fields of receipt k: detected at k.
    edits = [
        (0, ["decision", "result"], "DENY"),
        (1, ["identity", "human"], "mallory@evil.example"),
        (2, ["decision", "policy", "hash"], "0" * 64),
        (3, ["context", "context_hash"], "f" * 64),
        (4, ["action", "tool"], "db"),
    ]
    for k, path, value in edits:
        tampered = list(payloads)
        tampered[k] = _edit(payloads[k], path, value)
        res = verify_chain(tampered, keys, require_complete=True)
        assert not res.ok
        assert res.index == k, (path, res)
    # Delete one, reorder two, truncate.
    res = verify_chain(payloads[:2] + payloads[3:], keys, require_complete=True)
    assert (res.ok, res.index) == (False, 2)
    res = verify_chain(
        [payloads[0], payloads[2], payloads[1], *payloads[3:]], keys, require_complete=True
    )
    assert (res.ok, res.index) == (False, 1)
    res = verify_chain(payloads[:4], keys, require_complete=True)
    assert not res.ok
    # Unknown key id.
    res = verify_chain(payloads, PublicKeys.from_jwks({"keys": []}))
    assert (res.ok, res.index) == (False, 0)


async def test_rotated_key_still_verifies_old_receipts(opa_binary: str, tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    cfg = service_config(opa_binary)
    from dataclasses import replace

    from aarm_pdp.config import ReceiptConfig

    cfg = replace(cfg, receipts=ReceiptConfig(store=str(tmp_path / "r.db"), key_dir=key_dir))
    async with running(cfg) as (_, c):
        stub = c.decide
        old = await stub.Decide(
            decide_request("db", "query", {"table": "t", "limit": 1}, identity=IDENT)
        )
    new_kid = rkeys.rotate(key_dir)
    async with running(cfg) as (_, c):
        stub = c.decide
        new = await stub.Decide(
            decide_request("db", "query", {"table": "t", "limit": 2}, identity=IDENT)
        )
        rs = c.receipts
        jwks = (await rs.GetPublicKeys(receipt_pb2.GetPublicKeysRequest())).jwks
        listed = await rs.ListReceipts(
            receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="rcpt-1")
        )
    keys = PublicKeys.from_jwks(jwks)
    assert json.loads(new.receipt.payload)["signature"]["key_id"] == new_kid
    assert json.loads(old.receipt.payload)["signature"]["key_id"] != new_kid
    assert verify_chain([r.payload for r in listed.receipts], keys).ok
    # The offline CLI agrees, from the store file and the published JWKS.
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks)
    out = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "aarm_pdp",
            "receipts",
            "verify",
            "--store",
            str(tmp_path / "r.db"),
            "--jwks",
            str(jwks_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok" in out.stdout


async def test_postgres_receipt_store(opa_binary: str, pg_dsn: str) -> None:
    async with running(service_config(opa_binary, receipts=pg_dsn)) as (_, c):
        responses, listed, keys = await _five_and_end(c)
    _check_chain(responses, listed, keys)


async def test_receipt_store_down_is_deny(opa_binary: str, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with running(service_config(opa_binary, receipts=str(db))) as (app, c):
        stub = c.decide
        ok = await stub.Decide(
            decide_request("db", "query", {"table": "t", "limit": 1}, identity=IDENT)
        )
        assert ok.decision == D.DECISION_ALLOW
        assert app.receipts is not None
        await app.receipts.store.aclose()  # the store goes away under the service
        down = await stub.Decide(
            decide_request("db", "query", {"table": "t", "limit": 2}, identity=IDENT)
        )
        assert down.decision == D.DECISION_DENY
        assert down.reasons[0].code == "receipt_store_unavailable"
        assert not down.receipt.receipt_id


def test_sigkill_loses_no_returned_decision(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    db = tmp_path / "r.db"
    proc = subprocess.Popen(
        serve_command(
            port, "--receipts", str(db), "--key-dir", str(tmp_path / "keys"), metrics_port=mport
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    returned: list[str] = []

    async def load() -> None:
        async with aio_channel(f"127.0.0.1:{port}") as ch:
            await asyncio.wait_for(ch.channel_ready(), 30)
            stub = decision_pb2_grpc.DecisionServiceStub(ch)

            async def worker(w: int) -> None:
                i = 0
                while True:
                    ident = {**IDENT, "session_id": f"kill-{w}-{i // 20}"}
                    try:
                        resp = await stub.Decide(
                            decide_request(
                                "db",
                                "query",
                                {"table": "orders", "limit": 1 + i % 50},
                                identity=ident,
                            ),
                            timeout=5,
                        )
                    except grpc.aio.AioRpcError:
                        return
                    if resp.receipt.receipt_id:
                        returned.append(resp.receipt.receipt_id)
                    i += 1

            tasks = [asyncio.create_task(worker(w)) for w in range(16)]
            await asyncio.sleep(4.0)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.gather(*tasks)

    try:
        asyncio.run(load())
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["pkill", "-f", f"aarm-opa-.*{proc.pid}"], check=False)
    time.sleep(0.2)
    assert len(returned) > 100
    con = sqlite3.connect(db)
    stored = {row[0] for row in con.execute("SELECT receipt_id FROM receipts")}
    con.close()
    missing = [r for r in returned if r not in stored]
    assert missing == [], f"{len(missing)} of {len(returned)} returned decisions lost"
