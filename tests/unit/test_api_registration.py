"""Every aarm.v1 RPC is registered from its generated descriptor and survives garbage bytes.

The servicers subclass the generated bases and name their services by descriptor; the
one registration helper (``aarm_pdp.api.handlers.generic_handler``) walks the
descriptor's methods, so a new RPC in the proto cannot go silently unserved.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aarm.v1
import grpc
import pytest
from aarm.v1 import receipt_pb2, receipt_pb2_grpc
from aarm_pdp import server
from aarm_pdp.api.auth import CallGuard
from aarm_pdp.api.handlers import Unparseable, _deserializer, generated_base, generic_handler
from aarm_pdp.auth import Authenticator, PrincipalDirectory
from aarm_pdp.config import AuthConfig, Config, MetricsConfig, ReceiptConfig, ServerConfig
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from tests.support.grpc_clients import aio_channel
from tests.support.principals import OPERATOR_TOKEN, default_file

_GUARD = CallGuard(
    Authenticator(PrincipalDirectory.build([]), client_certificates=False), Metrics()
)
GARBAGE = (
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a varint that never ends
    b"\x0a\xff\x01",  # field 1, 255 bytes long, then nothing
    b"\x0f",  # wire type 7 does not exist
)


def _aarm_v1_services() -> list[ServiceDescriptor]:
    """Every service declared in any generated aarm.v1 module (found, not listed)."""
    services = []
    for info in pkgutil.iter_modules(aarm.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"aarm.v1.{info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return sorted(services, key=lambda s: s.full_name)


SERVICES = _aarm_v1_services()
METHODS: list[MethodDescriptor] = [m for s in SERVICES for m in s.methods]


def _bare(cls: type) -> Any:
    """An instance without its collaborators: registration needs none."""
    return cls.__new__(cls)


def test_the_proto_declares_services() -> None:
    assert len(SERVICES) >= 5
    assert len(METHODS) >= 13


def test_every_aarm_v1_service_has_a_servicer() -> None:
    served = sorted(cls.SERVICE.full_name for cls in server.SERVICERS)
    assert served == [s.full_name for s in SERVICES]


@pytest.mark.parametrize("cls", server.SERVICERS, ids=lambda c: c.__name__)
def test_servicer_subclasses_its_generated_base(cls: type) -> None:
    base = generated_base(cls.SERVICE)
    assert base.__module__.endswith("_pb2_grpc")
    assert issubclass(cls, base)


@pytest.mark.parametrize("cls", server.SERVICERS, ids=lambda c: c.__name__)
def test_every_method_is_registered_and_implemented(cls: type) -> None:
    service: ServiceDescriptor = cls.SERVICE
    handler = generic_handler(_bare(cls), guard=_GUARD)
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        found = handler.service(SimpleNamespace(method=path))
        assert found is not None, path
        if method.client_streaming:  # DecideStream: both ways, an async generator
            assert found.stream_stream is not None, path
        elif method.server_streaming:  # WatchApproval: an async generator, streamed
            assert found.unary_stream is not None, path
        else:
            assert found.unary_unary is not None, path
        assert getattr(cls, method.name) is not getattr(generated_base(service), method.name)
    assert handler.service(SimpleNamespace(method=f"/{service.full_name}/Nope")) is None


def test_a_servicer_missing_a_method_is_refused() -> None:
    class Half(receipt_pb2_grpc.ReceiptServiceServicer):
        SERVICE = receipt_pb2.DESCRIPTOR.services_by_name["ReceiptService"]

        async def GetReceipt(self, request: Any, context: Any) -> Any:
            return None

    with pytest.raises(TypeError, match="ListReceipts"):
        generic_handler(Half(), guard=_GUARD)


def test_a_synchronous_method_is_refused() -> None:
    class Sync(server.receipt_service.ReceiptServicer):
        def GetPublicKeys(self, request: Any, context: Any) -> Any:
            return None

    with pytest.raises(TypeError, match="GetPublicKeys"):
        generic_handler(_bare(Sync), guard=_GUARD)


def test_a_servicer_not_built_on_the_generated_base_is_refused() -> None:
    class Loose:
        SERVICE = receipt_pb2.DESCRIPTOR.services_by_name["ReceiptService"]

    with pytest.raises(TypeError, match=r"must subclass aarm\.v1\.receipt_pb2_grpc"):
        generic_handler(Loose(), guard=_GUARD)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_the_deserializer_never_raises(method: MethodDescriptor) -> None:
    request_type = message_factory.GetMessageClass(method.input_type)
    parse = _deserializer(request_type)
    assert isinstance(parse(request_type().SerializeToString()), request_type)
    for data in GARBAGE:
        out = parse(data)
        assert isinstance(out, Unparseable)
        assert out.reason.startswith("request does not decode")
        assert len(out.reason) <= 200


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[server.App]:
    cfg = Config(
        server=ServerConfig(listen="127.0.0.1:0", grace_seconds=0.5),
        auth=AuthConfig(principals_file=default_file()),
        metrics=MetricsConfig(listen=""),
        receipts=ReceiptConfig(store=str(tmp_path / "receipts.db"), key_dir=tmp_path / "keys"),
    ).validate()
    running = await server.start(cfg, policy_engine=FakePolicyEngine(lambda _: {}))
    try:
        yield running
    finally:
        await running.stop()


async def test_garbage_bytes_on_every_rpc_are_invalid_argument(
    app: server.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with aio_channel(f"127.0.0.1:{app.port}", OPERATOR_TOKEN) as channel:
        for method in METHODS:
            # No serializers: the bytes go on the wire as they are.
            call = channel.unary_unary(f"/{method.containing_service.full_name}/{method.name}")
            for data in GARBAGE:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(data, timeout=5)
                assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method.full_name
                details = err.value.details() or ""
                assert details.startswith("request does not decode"), details
                assert len(details) <= 200
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    rejected = app.metrics.registry.get_sample_value(
        "aarm_requests_rejected_total", {"code": "request_invalid"}
    )
    # Decide's and DecideStream's (its one message each time); other RPCs count errors.
    assert rejected == 2 * len(GARBAGE)
