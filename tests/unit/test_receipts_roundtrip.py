"""Every receipt the service signs verifies offline, for the whole input domain.

Parameters arrive as a protobuf ``Struct``: every number is a double, every string
valid Unicode. Property tests (hypothesis) draw parameters over that whole domain:
doubles of every magnitude (``1e20``, ``2**53`` and beyond, ``-0.0``, subnormals,
the largest double), integers as a ``Struct`` carries them, any Unicode text and
member names (astral characters, U+2028, NEL, controls, escapes, non-ASCII keys
whose UTF-16 and code-point orders differ), nesting up to the service's depth limit;
and check that what the service signs verifies: in process (validation, receipt
body, redaction, receipt log, store, offline verifier) and over real gRPC against
the running service (its receipts, its store through ``aarm-pdp receipts verify``,
an export file). Lone surrogates cannot be carried at all: protobuf refuses them on
the wire (the API answers INVALID_ARGUMENT) and in Python, and the canonicaliser
refuses them cleanly.

``AARM_PROPERTY_EXAMPLES`` scales every example count (default 1; e.g. 10 for a
long run). The runs are derandomised, so CI sees the same examples each time.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import struct
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import orjson
import pytest
from aarm.v1 import decision_pb2, receipt_pb2
from aarm_pdp.api.handlers import Unparseable, _deserializer
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.errors import ReceiptInvalid, RequestInvalid
from aarm_pdp.model.decision import (
    Decision,
    DecisionResult,
    PolicyVersion,
    Reason,
    RiskLevel,
)
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.receipts import (
    KeyRing,
    MemoryReceiptStore,
    PublicKeys,
    ReceiptLog,
    canonicalize,
    cli,
    verify_chain,
    verify_export,
    verify_receipt,
)
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts.canonical import parse
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.grpc_clients import aio_channel
from tests.support.messages import IDENTITY, verdict_doc
from tests.support.service import fake_config, running

T = TypeVar("T")
SCALE = int(os.environ.get("AARM_PROPERTY_EXAMPLES", "1"))
LIMITS = LimitsConfig()


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- the domain -------------------------------------------------------------------------

SPECIAL_DOUBLES = [
    0.0,
    -0.0,
    5e-324,  # the smallest subnormal
    -5e-324,
    2.225073858507201e-308,  # the largest subnormal
    2.2250738585072014e-308,  # the smallest normal
    1.7976931348623157e308,  # the largest double
    -1.7976931348623157e308,
    1e-7,
    1e-6,
    1e15,
    1e16,
    1e20,
    1e21,
    -1e20,
    2.0**53 - 1,
    2.0**53,
    2.0**53 + 2,
    -(2.0**53),
    2.0**60,
    2.0**63,
    2.0**64,
    123456789012345680000.0,
    999999999999999900000.0,
    0.1,
    1 / 3,
    4.35,
]
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70).map(float),  # an int in a Struct
    st.integers(min_value=-(10**6), max_value=10**6).map(float),
    st.sampled_from(SPECIAL_DOUBLES),
)
TRICKY = [
    "\u2028",
    "\u2029",
    "\x85",
    "\x00",
    "\x1f",
    "\x7f",
    '"',
    "\\",
    "/",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "\ufb33",
    "\ue000",
    "e\u0301",
    "é",
    "<",
]
characters = st.characters(exclude_categories=["Cs"])  # every code point but surrogates
strings = st.one_of(
    st.text(characters, max_size=24),
    st.lists(st.sampled_from(TRICKY) | st.text(characters, max_size=3), max_size=8).map("".join),
)
names = st.one_of(st.text(characters, max_size=12), st.sampled_from(TRICKY))
leaves = st.one_of(st.none(), st.booleans(), numbers, strings)
values = st.recursive(
    leaves,
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(names, kids, max_size=6),
    max_leaves=30,
)


def _nest(depth: int, leaf: Any, shapes: list[bool]) -> Any:
    """``leaf`` inside ``depth`` containers (an object where ``shapes`` says, else a list)."""
    value = leaf
    for is_object in shapes[:depth]:
        value = {"k": value} if is_object else [value]
    return value


MAX_NESTING = LIMITS.max_depth - 1
"""The parameters object is depth 1: this many containers fit inside it."""
deep = st.builds(
    _nest,
    st.integers(0, MAX_NESTING),
    leaves,
    st.lists(st.booleans(), min_size=MAX_NESTING, max_size=MAX_NESTING),
)
parameters = st.one_of(
    st.dictionaries(names, values, max_size=8),
    st.builds(
        lambda flat, d: {**flat, "deep": d}, st.dictionaries(names, values, max_size=4), deep
    ),
)


def as_struct(params: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(params)
    return out


def _opa_echo(value: Any) -> Any:
    """``value`` as it comes back from OPA: JSON, integral doubles >= 2**53 as integers."""
    if isinstance(value, dict):
        return {k: _opa_echo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_opa_echo(v) for v in value]
    if isinstance(value, float) and value.is_integer() and 2**53 <= abs(value) < 2**64:
        return int(value)
    return value


# --- numbers ----------------------------------------------------------------------------


@_settings(3000)
@given(st.one_of(numbers, st.sampled_from(SPECIAL_DOUBLES)))
def test_every_double_round_trips_through_canonical_text(x: float) -> None:
    text = canonicalize(x)
    assert float(text) == x  # the value is kept (-0.0 is written 0, which equals it)
    assert canonicalize(parse(text)) == text  # our verifier's parser
    assert canonicalize(orjson.loads(text)) == text  # the log's parser
    assert canonicalize({"p": [x]}) == b'{"p":[' + text + b"]}"


@_settings(2000)
@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_an_int_is_written_as_its_double_or_refused(n: int) -> None:
    try:
        text = canonicalize(n)
    except ReceiptInvalid:
        assert abs(n) > 2**53 - 1
        assert float(n) != n and canonicalize(float(n)) != str(n).encode()
        return
    assert float(text) == float(n)
    assert int(float(n)) == n or text == str(n).encode()
    assert canonicalize(parse(text)) == text


def _random_doubles(rng: random.Random, count: int) -> list[float]:
    """Uniform over bit patterns (every exponent, subnormals), plus integers and decimals."""
    out: list[float] = []
    while len(out) < count:
        kind = rng.randrange(4)
        if kind == 0:
            x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        elif kind == 1:
            x = float(rng.randrange(-(2**70), 2**70))
        elif kind == 2:
            x = float(f"{rng.randrange(1, 10**17)}e{rng.randrange(-330, 310)}")
        else:
            x = rng.choice(SPECIAL_DOUBLES) * rng.choice([1, -1])
        if math.isfinite(x):
            out.append(x)
    return out


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (ECMAScript's own Number)")
def test_numbers_are_written_as_ecmascript_writes_them() -> None:
    # An independent oracle: JSON.stringify(Number) is the serialisation RFC 8785 names.
    doubles = _random_doubles(random.Random(8785), 20_000 * SCALE) + SPECIAL_DOUBLES
    script = (
        "const xs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const b = new DataView(new ArrayBuffer(8));"
        "console.log(JSON.stringify(xs.map(h => {"
        "b.setBigUint64(0, BigInt('0x' + h)); return JSON.stringify(b.getFloat64(0)); })));"
    )
    hexes = [struct.pack(">d", x).hex() for x in doubles]
    node = shutil.which("node")
    assert node is not None
    out = subprocess.run(
        [node, "-e", script], input=json.dumps(hexes), capture_output=True, text=True, check=True
    )
    want = json.loads(out.stdout)
    bad = [(x, w) for x, w in zip(doubles, want, strict=True) if canonicalize(x) != w.encode()]
    assert not bad, bad[:10]


# --- the in-process pipeline ------------------------------------------------------------


def _request(
    params: dict[str, Any], session: str = "s-prop", request_id: str = "req-1"
) -> decision_pb2.DecideRequest:
    msg = decision_pb2.DecideRequest(request_id=request_id)
    for name, value in {**IDENTITY, "session_id": session}.items():
        if isinstance(value, list):
            getattr(msg.identity, name).extend(value)
        else:
            setattr(msg.identity, name, value)
    msg.action.tool = "db"
    msg.action.operation = "query"
    msg.action.parameters.CopyFrom(as_struct(params))
    # On the wire and back, as the server receives it.
    return decision_pb2.DecideRequest.FromString(msg.SerializeToString())


def _decision(params: dict[str, Any], modify: bool) -> DecisionResult:
    return DecisionResult(
        decision=Decision.MODIFY if modify else Decision.ALLOW,
        reasons=(Reason(code="catalogued", rule_id="aarm.test.rule", message="ok"),),
        matched_rules=("aarm.test.rule",),
        risk_level=RiskLevel.LOW,
        risk_score=0.1,
        modified_parameters=_opa_echo(params) if modify else None,
    )


async def _sign_and_verify(params: dict[str, Any], modify: bool) -> None:
    request = to_action_request(_request(params), LIMITS)
    ring = KeyRing.generate()
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    try:
        for i in range(2):
            body = receipt_body.decision_receipt(
                receipt_id=f"r-{i}",
                decision_id=f"d-{i}",
                request=request,
                decision=_decision(request.action.parameters, modify),
                policy=PolicyVersion(revision="rev-1", hash="ab" * 32),
                context=None,
                context_hash="cd" * 32,
                now_ns=1_777_600_000_000_000_000 + i * 1000,
            )
            signed = await log.append(body)
            result = verify_receipt(signed, ring.jwks())  # the dict the log handed out
            assert result.ok, result
        texts = await store.export("acme", "s-prop")
    finally:
        await log.aclose()
    result = verify_chain(texts, ring.jwks())  # the stored text, offline
    assert result.ok, result
    lines = cli.export_lines("acme", "s-prop", texts, keyring=ring)
    result = verify_export("\n".join(lines).split("\n"), ring.jwks())
    assert result.ok, result


@_settings(400)
@given(parameters, st.booleans())
@example({"x": 1e20}, False)
@example({"x": 2.0**53, "y": [2.0**63, -(2.0**60)], "z": -0.0, "s": 5e-324}, True)
@example({"\U0001f600": "\u2028\x85", "\ufb33": {"é": 1e21}}, True)
def test_what_the_pipeline_signs_verifies(params: dict[str, Any], modify: bool) -> None:
    asyncio.run(_sign_and_verify(params, modify))


def test_nesting_up_to_the_limit_is_accepted_and_beyond_it_refused() -> None:
    at_limit = {"deep": _nest(MAX_NESTING, 1e20, [True, False] * LIMITS.max_depth)}
    asyncio.run(_sign_and_verify(at_limit, True))
    beyond = {"deep": _nest(MAX_NESTING + 1, 1e20, [True, False] * LIMITS.max_depth)}
    with pytest.raises(RequestInvalid, match="nested deeper"):
        to_action_request(_request(beyond), LIMITS)


def test_sizes_up_to_the_limits_verify() -> None:
    big_string = "\U0001f600" * (LIMITS.max_string_bytes // 4)  # 4 UTF-8 bytes each
    long_key = "é" * (LIMITS.max_key_bytes // 2)
    items = [float(2**53 + 2 * i) for i in range(LIMITS.max_list_items)]
    asyncio.run(_sign_and_verify({"s": big_string, long_key: 1e20, "items": items}, True))


# --- lone surrogates --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc00\ud800"])
def test_protobuf_cannot_carry_a_lone_surrogate(text: str) -> None:
    with pytest.raises(UnicodeEncodeError):
        struct_pb2.Value(string_value=text)
    with pytest.raises(UnicodeEncodeError):
        struct_pb2.Struct().fields[text].bool_value = True
    with pytest.raises(ReceiptInvalid):
        canonicalize({"parameters": {"k": text}})
    with pytest.raises(ReceiptInvalid):
        canonicalize({"parameters": {text: 1}})


def _with_surrogate_on_the_wire(*, in_key: bool) -> bytes:
    """A DecideRequest whose parameter string (or key) holds U+D800 encoded as UTF-8 would."""
    placeholder = "\ue000"  # also 3 UTF-8 bytes: EE 80 80 -> ED A0 80 (U+D800)
    params = {placeholder: 1.0} if in_key else {"k": placeholder}
    data = _request(params).SerializeToString()
    assert data.count(placeholder.encode()) == 1
    return data.replace(placeholder.encode(), b"\xed\xa0\x80")


@pytest.mark.parametrize("in_key", [False, True])
def test_a_lone_surrogate_on_the_wire_is_refused_before_validation(in_key: bool) -> None:
    data = _with_surrogate_on_the_wire(in_key=in_key)
    out = _deserializer(decision_pb2.DecideRequest)(data)
    assert isinstance(out, Unparseable)  # the handler answers INVALID_ARGUMENT
    assert "UTF-8" in out.reason


# --- the running service over gRPC -------------------------------------------------------


class _Service:
    """The real server on loopback, in its own thread and event loop (hypothesis is sync)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.answer: dict[str, Any] = verdict_doc("ALLOW")
        self.engine = FakePolicyEngine(lambda doc: self._answer(doc))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._cm = running(fake_config(workdir), policy_engine=self.engine)
        self.app, self.c = self.run(self._cm.__aenter__)
        request = receipt_pb2.GetPublicKeysRequest()
        jwks = self.run(lambda: self.c.receipts.GetPublicKeys(request)).jwks
        self.keys = PublicKeys.from_jwks(jwks)
        (workdir / "jwks.json").write_text(jwks)
        self.sessions: set[str] = set()
        self._ids = iter(range(10**9))

    def _answer(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self.answer.get("modify"):
            params = doc["action"]["parameters"]
            return verdict_doc("MODIFY", modified_parameters=_opa_echo(params))
        return self.answer

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` in the service's loop (gRPC calls must start there too)."""

        async def inside() -> T:
            return await call()

        return asyncio.run_coroutine_threadsafe(inside(), self.loop).result(timeout=60)

    def decide(self, params: dict[str, Any], session: str) -> Any:
        self.sessions.add(session)
        request = _request(params, session, f"req-{next(self._ids)}")
        return self.run(lambda: self.c.decide.Decide(request))

    def close(self) -> None:
        try:
            self.run(lambda: self._cm.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Service]:
    svc = _Service(tmp_path_factory.mktemp("roundtrip"))
    try:
        yield svc
    finally:
        svc.close()


_counter = iter(range(10**9))


@_settings(150)
@given(parameters, st.sampled_from(["ALLOW", "DENY", "MODIFY"]))
@example({"x": 1e20, "y": 2.0**53}, "ALLOW")
@example({"x": [1e20, 2.0**64, -0.0, 5e-324], "\u2028": "\x85\u2029"}, "MODIFY")
def test_every_receipt_the_service_signs_verifies(
    service: _Service, params: dict[str, Any], verdict: str
) -> None:
    service.answer = {"modify": True} if verdict == "MODIFY" else verdict_doc(verdict)
    session = f"prop-{next(_counter) % 20}"  # a few long chains, not one per example
    resp = service.decide(params, session)
    assert resp.receipt.payload, resp
    result = verify_receipt(resp.receipt.payload, service.keys)
    assert result.ok, (result, resp.receipt.payload[:2000])


def test_the_store_and_exports_verify_after_hostile_numbers(
    service: _Service, capsys: pytest.CaptureFixture[str]
) -> None:
    # The request: one such Decide used to make the whole store check exit 1.
    service.answer = verdict_doc("ALLOW")
    for params in ({"amount": 1e20}, {"id": 2.0**53}, {"n": [2.0**63, -(2.0**70)]}):
        service.decide(params, "hostile")
    service.decide({"text": "line\u2028separator\x85next"}, "hostile")
    capsys.readouterr()
    store = str(service.workdir / "receipts.db")
    jwks = service.workdir / "jwks.json"
    assert cli.verify(store, jwks) == 0, capsys.readouterr().out
    assert capsys.readouterr().out.startswith("ok: ")
    for session in sorted(service.sessions):
        export = service.workdir / f"{session}.jsonl"
        assert cli.export(store, "acme", session, export) == 0
        assert cli.verify(None, jwks, export_file=export) == 0, capsys.readouterr().out


def test_a_lone_surrogate_over_grpc_is_invalid_argument(service: _Service) -> None:
    path = f"/{decision_pb2.DESCRIPTOR.services_by_name['DecisionService'].full_name}/Decide"

    async def send(data: bytes) -> grpc.StatusCode:
        async with aio_channel(f"127.0.0.1:{service.app.port}") as channel:
            # No serializers: the bytes go on the wire as they are.
            raw: Callable[..., Any] = channel.unary_unary(path, None, None)
            try:
                await raw(data, timeout=10)
            except grpc.aio.AioRpcError as err:
                return err.code()
        return grpc.StatusCode.OK

    for in_key in (False, True):
        data = _with_surrogate_on_the_wire(in_key=in_key)
        code = service.run(lambda data=data: send(data))  # type: ignore[misc]
        assert code is grpc.StatusCode.INVALID_ARGUMENT
