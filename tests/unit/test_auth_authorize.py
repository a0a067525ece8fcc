"""authorize(): tenant binding per role; RPC -> role covers every generated RPC."""

from __future__ import annotations

import importlib
import pkgutil

import aarm.v1
import grpc
import pytest
from aarm_pdp.auth.authorize import (
    OPEN_SERVICES,
    PUBLIC_RPCS,
    RPC_ROLES,
    authorize,
    required_role,
)
from aarm_pdp.auth.principals import Principal, PrincipalKind, Role
from aarm_pdp.errors import (
    AarmError,
    ErrorCode,
    IdentityUnverified,
    PermissionDenied,
    Unauthenticated,
    grpc_status,
)


def principal(**roles: set[Role]) -> Principal:
    return Principal("p", PrincipalKind.SERVICE, {t: frozenset(r) for t, r in roles.items()})


def generated_rpcs() -> set[str]:
    """Every RPC of every service in every generated aarm.v1 *_pb2 module."""
    found: set[str] = set()
    for info in pkgutil.iter_modules(aarm.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"aarm.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.add(f"/{service.full_name}/{method.name}")
    return found


def test_every_generated_rpc_has_an_access_rule():
    rpcs = generated_rpcs()
    assert len(rpcs) >= 13
    missing = rpcs - set(RPC_ROLES) - PUBLIC_RPCS
    assert not missing, f"RPCs without a role in aarm_pdp.auth.authorize.RPC_ROLES: {missing}"
    stale = (set(RPC_ROLES) | PUBLIC_RPCS) - rpcs
    assert not stale, f"access rules for RPCs that no longer exist: {stale}"
    assert not set(RPC_ROLES) & PUBLIC_RPCS


@pytest.mark.parametrize(
    ("method", "role"),
    [
        ("/aarm.v1.DecisionService/Decide", Role.ENFORCER),
        ("/aarm.v1.SessionService/StartSession", Role.ENFORCER),
        ("/aarm.v1.SessionService/RecordOutcome", Role.ENFORCER),
        ("/aarm.v1.SessionService/EndSession", Role.ENFORCER),
        ("/aarm.v1.DeferralService/ProvideContext", Role.ENFORCER),
        ("/aarm.v1.DeferralService/GetDeferral", Role.ENFORCER),
        ("/aarm.v1.ApprovalService/GetApproval", Role.APPROVER),
        ("/aarm.v1.ApprovalService/ListPendingApprovals", Role.APPROVER),
        ("/aarm.v1.ApprovalService/ResolveApproval", Role.APPROVER),
        ("/aarm.v1.ApprovalService/RevokeIdentity", Role.ADMIN),
        ("/aarm.v1.ReceiptService/GetReceipt", Role.AUDITOR),
        ("/aarm.v1.ReceiptService/ListReceipts", Role.AUDITOR),
    ],
)
def test_role_table(method, role):
    assert required_role(method) is role


def test_open_methods():
    assert required_role("/aarm.v1.ReceiptService/GetPublicKeys") is None
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/grpc.health.v1.Health/Watch") is None
    assert "grpc.reflection.v1alpha.ServerReflection" in OPEN_SERVICES
    assert required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None


@pytest.mark.parametrize(
    "method", ["/aarm.v1.DecisionService/Nope", "/evil.Service/Decide", "", "/", "Decide"]
)
def test_unknown_method_fails_closed(method):
    with pytest.raises(PermissionDenied):
        required_role(method)


def test_requested_tenant_with_the_role():
    p = principal(acme={Role.ENFORCER}, globex={Role.AUDITOR})
    assert authorize(p, "acme", Role.ENFORCER) == "acme"
    assert authorize(p, "globex", Role.AUDITOR) == "globex"


def test_no_role_in_the_tenant_is_denied():
    p = principal(acme={Role.ENFORCER}, globex={Role.AUDITOR})
    for tenant, role in [("globex", Role.ENFORCER), ("acme", Role.AUDITOR), ("acme", Role.ADMIN)]:
        with pytest.raises(PermissionDenied) as info:
            authorize(p, tenant, role)
        assert info.value.code is ErrorCode.PERMISSION_DENIED
    with pytest.raises(PermissionDenied):
        authorize(p, "initech", Role.ENFORCER)


@pytest.mark.parametrize("tenant", [" acme", "acme ", "ACME", "acme\x00", "unbound"])
def test_tenant_is_matched_exactly(tenant):
    with pytest.raises(PermissionDenied):
        authorize(principal(acme={Role.ENFORCER}), tenant, Role.ENFORCER)


def test_empty_tenant_defaults_to_the_only_one():
    p = principal(acme={Role.ENFORCER}, globex={Role.AUDITOR})
    assert authorize(p, "", Role.ENFORCER) == "acme"
    assert authorize(p, "", Role.AUDITOR) == "globex"


def test_empty_tenant_is_ambiguous_with_several():
    p = principal(acme={Role.ENFORCER}, globex={Role.ENFORCER})
    with pytest.raises(PermissionDenied, match="2 tenants"):
        authorize(p, "", Role.ENFORCER)
    assert authorize(p, "globex", Role.ENFORCER) == "globex"


def test_empty_tenant_without_the_role_anywhere():
    with pytest.raises(PermissionDenied, match="in no tenant"):
        authorize(principal(acme={Role.AUDITOR}), "", Role.ENFORCER)


def test_error_table_rows():
    assert grpc_status(ErrorCode.UNAUTHENTICATED)[0] is grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(ErrorCode.PERMISSION_DENIED)[0] is grpc.StatusCode.PERMISSION_DENIED
    for cls, code in [
        (Unauthenticated, ErrorCode.UNAUTHENTICATED),
        (PermissionDenied, ErrorCode.PERMISSION_DENIED),
        (IdentityUnverified, ErrorCode.IDENTITY_UNVERIFIED),
    ]:
        err = cls("detail for the log")
        assert isinstance(err, AarmError)
        assert err.code is code
    # the client message is generic: no detail leaks through the table
    assert "detail" not in grpc_status(ErrorCode.UNAUTHENTICATED)[1]
