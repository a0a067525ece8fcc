"""The service under test in this process: its configuration, started, with clients.

:func:`service_config` is the integration tiers' configuration (managed or external
OPA); :func:`fake_config` the API tier's, for a server whose policy engine is a
:class:`~aarm_pdp.opa.fake.FakePolicyEngine`. :func:`running` starts either with
``aarm_pdp.server.start`` and yields the app and grpc.aio :class:`Clients` on loopback.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aarm_pdp import server
from aarm_pdp.config import (
    AuthConfig,
    Config,
    MetricsConfig,
    OpaConfig,
    ReceiptConfig,
    ServerConfig,
    SessionConfig,
    TelemetryConfig,
)

from tests.support.grpc_clients import Clients, aio_channel
from tests.support.paths import REGO
from tests.support.principals import default_file, write_principals

if TYPE_CHECKING:
    from aarm_pdp.opa.port import PolicyEngine


@functools.cache
def _scratch_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="aarm-tests-"))


def scratch(name: str) -> Path:
    """A fresh directory under this run's scratch area."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_scratch_root()))


def key_dir() -> Path:
    """The receipt signing-key directory every service of this run shares."""
    return _scratch_root() / "keys"


def service_config(
    opa_binary: str,
    *,
    policy: Path = REGO,
    url: str | None = None,
    state: str = "memory",
    receipts: str | None = None,
    principals: Path | None = None,
    **opa: object,
) -> Config:
    """Loopback ports chosen by the kernel; managed OPA unless ``url`` is given.

    Callers authenticate as the principals of :mod:`tests.support.principals`
    (``principals`` replaces that file).
    """
    return Config(
        server=ServerConfig(listen="127.0.0.1:0", grace_seconds=2.0),
        auth=AuthConfig(principals_file=principals or default_principals()),
        opa=OpaConfig(
            url=url,
            binary=opa_binary,
            policy_paths=(policy,),
            health_interval_seconds=0.1,
            **opa,  # type: ignore[arg-type]
        ),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
        session=SessionConfig(state=state),
        telemetry=TelemetryConfig(file=scratch("telemetry") / "t.jsonl", flush_seconds=0.2),
        receipts=ReceiptConfig(
            store=receipts or str(scratch("receipts") / "r.db"), key_dir=key_dir()
        ),
    ).validate()


def fake_config(workdir: Path, **sections: Any) -> Config:
    """A server for a fake policy engine: loopback gRPC, no metrics port, no telemetry.

    Receipts go to SQLite and keys under ``workdir``; ``sections`` replace whole
    config sections (``approvals=ApprovalConfig(...)``, ``limits=...``).
    """
    base: dict[str, Any] = {
        "server": ServerConfig(listen="127.0.0.1:0", grace_seconds=0.5),
        "auth": AuthConfig(principals_file=default_principals()),
        "metrics": MetricsConfig(listen=""),
        "telemetry": TelemetryConfig(file=None),
        "receipts": ReceiptConfig(store=str(workdir / "receipts.db"), key_dir=workdir / "keys"),
    }
    return Config(**{**base, **sections})


def default_principals() -> Path:
    """The principals file every test service of this run uses (platform, outsider)."""
    return default_file()


def with_approvers(workdir: Path, approvers: Mapping[str, tuple[str, Sequence[str]]]) -> AuthConfig:
    """The auth section of a service whose principals include ``approvers``
    (bearer token -> (approver id, approver groups))."""
    return AuthConfig(principals_file=write_principals(workdir / "principals.json", approvers))


@contextlib.asynccontextmanager
async def running(
    cfg: Config, *, policy_engine: PolicyEngine | None = None
) -> AsyncIterator[tuple[server.App, Clients]]:
    """``server.start(cfg)`` (with ``policy_engine`` instead of OPA when given), stubs on it."""
    app = await server.start(cfg, policy_engine=policy_engine)
    try:
        async with aio_channel(f"127.0.0.1:{app.port}") as channel:
            yield app, Clients(channel)
    finally:
        await app.stop()
