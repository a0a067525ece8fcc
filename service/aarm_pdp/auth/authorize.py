"""Authorization: which role each RPC needs, and the tenant a principal may act in.

:data:`RPC_ROLES` maps every ``aarm.v1`` RPC (by gRPC method path, built from the
generated descriptors) to the role it needs; a unit test fails when a new RPC appears
without an entry. :func:`required_role` is the lookup for an interceptor or servicer:
``None`` means the RPC is open (no credential), an unknown method is refused.

Open, by decision:

- ``grpc.health.v1.Health`` and server reflection (probes, grpcurl discovery);
- ``ReceiptService/GetPublicKeys``: the receipt signing *public* keys. They are
  published so that anyone handed a receipt (a regulator, a counterparty, an offline
  ``aarm-pdp receipts verify``) can check it without holding a role; requiring a
  credential would protect nothing and break offline verification.

:func:`authorize` binds a request to a tenant: the tenant it names must be one in
which the principal holds the role; an empty tenant means the principal's only tenant
with that role (none or several: refused). Tenants are compared exactly, so
``" acme"`` is not ``"acme"``. For RPCs whose request names no tenant (GetApproval,
ResolveApproval, GetReceipt, GetDeferral), the servicer passes the tenant of the
resource it looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aarm.v1 import approval_pb2, decision_pb2, deferral_pb2, receipt_pb2, session_pb2
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from aarm_pdp.auth.principals import Principal, Role
from aarm_pdp.errors import PermissionDenied


def _method(module: Any, service: str, method: str) -> str:
    """``/aarm.v1.Service/Method`` from the generated descriptor (KeyError if renamed)."""
    desc = module.DESCRIPTOR.services_by_name[service]
    return f"/{desc.full_name}/{desc.methods_by_name[method].name}"


RPC_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        _method(decision_pb2, "DecisionService", "Decide"): Role.ENFORCER,
        _method(decision_pb2, "DecisionService", "DecideStream"): Role.ENFORCER,
        _method(session_pb2, "SessionService", "StartSession"): Role.ENFORCER,
        _method(session_pb2, "SessionService", "RecordOutcome"): Role.ENFORCER,
        _method(session_pb2, "SessionService", "EndSession"): Role.ENFORCER,
        # The enforcement point that got DEFER polls and answers its deferral.
        _method(deferral_pb2, "DeferralService", "GetDeferral"): Role.ENFORCER,
        _method(deferral_pb2, "DeferralService", "ProvideContext"): Role.ENFORCER,
        _method(approval_pb2, "ApprovalService", "GetApproval"): Role.APPROVER,
        _method(approval_pb2, "ApprovalService", "ListPendingApprovals"): Role.APPROVER,
        _method(approval_pb2, "ApprovalService", "ResolveApproval"): Role.APPROVER,
        _method(approval_pb2, "ApprovalService", "RevokeIdentity"): Role.ADMIN,
        # The enforcement point that got STEP_UP waits for the answer (its own session).
        _method(approval_pb2, "ApprovalService", "WatchApproval"): Role.ENFORCER,
        _method(receipt_pb2, "ReceiptService", "GetReceipt"): Role.AUDITOR,
        _method(receipt_pb2, "ReceiptService", "ListReceipts"): Role.AUDITOR,
    }
)
"""gRPC method path -> the role it needs in the request's tenant."""

PUBLIC_RPCS: frozenset[str] = frozenset({_method(receipt_pb2, "ReceiptService", "GetPublicKeys")})
"""aarm.v1 RPCs that need no credential."""

OPEN_SERVICES: frozenset[str] = frozenset({health.SERVICE_NAME, reflection.SERVICE_NAME})
"""Whole services that need no credential (health, reflection)."""


def required_role(method: str) -> Role | None:
    """The role ``method`` (``/package.Service/Method``) needs; None when it is open.

    Raises:
        PermissionDenied: a method this table does not know (fail closed).
    """
    role = RPC_ROLES.get(method)
    if role is not None:
        return role
    if method in PUBLIC_RPCS:
        return None
    service = method.lstrip("/").partition("/")[0]
    if service in OPEN_SERVICES:
        return None
    raise PermissionDenied(f"method {method!r} has no access rule")


def authorize(principal: Principal, requested_tenant: str, role: Role) -> str:
    """The tenant the call acts in, if ``principal`` holds ``role`` there.

    An empty ``requested_tenant`` defaults to the principal's only tenant holding
    ``role``.

    Raises:
        PermissionDenied: no such role in that tenant; or, for an empty tenant, the
            role is held in no tenant or in several (the request must name one).
    """
    held = principal.tenants_with(role)
    if not requested_tenant:
        if len(held) == 1:
            return next(iter(held))
        if not held:
            raise PermissionDenied(f"principal {principal.id!r} holds role {role} in no tenant")
        raise PermissionDenied(
            f"principal {principal.id!r} holds role {role} in {len(held)} tenants; "
            "the request must name its tenant"
        )
    if requested_tenant in held:
        return requested_tenant
    raise PermissionDenied(
        f"principal {principal.id!r} has no role {role} in tenant {requested_tenant[:64]!r}"
    )


__all__ = ["OPEN_SERVICES", "PUBLIC_RPCS", "RPC_ROLES", "authorize", "required_role"]
