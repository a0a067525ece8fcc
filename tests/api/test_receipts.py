"""ReceiptService: the receipts Decide hands out are stored, chained and verify offline."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from aarm.v1 import receipt_pb2
from aarm_pdp.receipts.verify import PublicKeys, verify_chain, verify_receipt

from tests.api.conftest import Api
from tests.support.messages import IDENTITY, decide_request, opa_answer

pytestmark = pytest.mark.api
R = receipt_pb2
VERDICTS = ["ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER"]


async def _five(api: Api) -> list[Any]:
    responses = []
    for i, verdict in enumerate(VERDICTS):
        api.opa.returns(opa_answer(verdict))
        responses.append(
            await api.c.decide.Decide(decide_request("db", "query", {"table": "t", "limit": i}))
        )
    return responses


async def _keys(api: Api) -> PublicKeys:
    jwks = (await api.c.receipts.GetPublicKeys(R.GetPublicKeysRequest())).jwks
    assert json.loads(jwks)["keys"]
    return PublicKeys.from_jwks(jwks)


async def test_get_receipt_returns_what_decide_handed_out(api: Api) -> None:
    keys = await _keys(api)
    for resp in await _five(api):
        got = await api.c.receipts.GetReceipt(
            R.GetReceiptRequest(receipt_id=resp.receipt.receipt_id)
        )
        assert got.receipt == resp.receipt
        assert verify_receipt(got.receipt.payload, keys).ok


async def test_the_session_chain_lists_in_order_and_verifies(api: Api) -> None:
    responses = await _five(api)
    listed = await api.c.receipts.ListReceipts(
        R.ListReceiptsRequest(tenant="acme", session_id=IDENTITY["session_id"])
    )
    assert [r.sequence for r in listed.receipts] == [1, 2, 3, 4, 5]
    assert [r.receipt_id for r in listed.receipts] == [
        resp.receipt.receipt_id for resp in responses
    ]
    docs = [json.loads(r.payload) for r in listed.receipts]
    assert [d["decision"]["result"] for d in docs] == VERDICTS
    result = verify_chain([r.payload for r in listed.receipts], await _keys(api))
    assert result.ok, result.message


async def test_another_session_has_its_own_chain(api: Api) -> None:
    await _five(api)
    ident = {**IDENTITY, "session_id": "s-2"}
    other = await api.c.decide.Decide(
        decide_request("db", "query", {"table": "t", "limit": 1}, identity=ident)
    )
    assert other.receipt.sequence == 1
    listed = await api.c.receipts.ListReceipts(
        R.ListReceiptsRequest(tenant="acme", session_id="s-2")
    )
    assert [r.receipt_id for r in listed.receipts] == [other.receipt.receipt_id]


async def test_unknown_receipt_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.receipts.GetReceipt(R.GetReceiptRequest(receipt_id="no-such-receipt"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_tampered_receipt_fails_verification(api: Api) -> None:
    [resp, *_] = await _five(api)
    doc = json.loads(resp.receipt.payload)
    doc["decision"]["result"] = "ALLOW" if doc["decision"]["result"] != "ALLOW" else "DENY"
    assert not verify_receipt(json.dumps(doc), await _keys(api)).ok
