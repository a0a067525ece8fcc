"""The API side of the trust boundary: every call authenticated, every tenant authorized.

:class:`CallGuard` runs before any servicer code (:func:`~aarm_pdp.api.handlers.
generic_handler` calls it): the method's role (``auth.authorize.RPC_ROLES``), then the
principal from the call's credential (bearer token, JWT, or verified mTLS client
certificate), which must hold that role in some tenant. The principal is then the
call's :func:`principal`, and a servicer that learns the request's tenant asks
:func:`tenant_for` whether the principal holds the role there. What a caller asserts
(identity, tenant) never widens what its credential grants.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from aarm_pdp.auth.authorize import authorize, required_role
from aarm_pdp.auth.credentials import Authenticator
from aarm_pdp.auth.idp import EndUserIdentity, verify_end_user
from aarm_pdp.auth.principals import Principal, Role
from aarm_pdp.errors import AarmError, PermissionDenied, Unauthenticated
from aarm_pdp.model.request import ActionRequest, Identity
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.api.auth")

_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "aarm_principal", default=None
)


def principal() -> Principal:
    """The authenticated principal of the RPC being served.

    Raises:
        Unauthenticated: outside a guarded call (a servicer bug; fails closed).
    """
    who = _CURRENT.get()
    if who is None:
        raise Unauthenticated("no authenticated principal for this call")
    return who


def tenant_for(requested: str, role: Role) -> str:
    """The tenant the call acts in: ``requested`` if the principal holds ``role`` there
    (an empty one defaults to its only such tenant). Raises PermissionDenied."""
    return authorize(principal(), requested, role)


def bind_identity(ident: Identity, role: Role = Role.ENFORCER) -> Identity:
    """``ident`` in the authorized tenant, bound to the calling principal."""
    who = principal()
    tenant = authorize(who, ident.tenant, role)
    return dataclasses.replace(ident, tenant=tenant, principal=who.id)


class CallGuard:
    """Authenticates each call and checks its role; counts every refusal by code."""

    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        end_users: Mapping[str, EndUserIdentity] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticate = authenticator
        self._metrics = metrics
        self._end_users = end_users or {}
        self._clock = clock

    def admit(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Principal | None:
        """The call's principal (None for an open method such as GetPublicKeys).

        Raises:
            Unauthenticated: no credential, or one that establishes no principal.
            PermissionDenied: an unknown method, or a principal without the role anywhere.
        """
        return self.admit_until(method, context)[0]

    def admit_until(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Principal | None, float | None]:
        """:meth:`admit`, and until when its credential is valid (Unix seconds; None:
        no expiry of its own), for a stream that outlives the moment it was opened."""
        try:
            role = required_role(method)
            if role is None:
                return None, None
            authed = self._authenticate(
                context.invocation_metadata() or (),
                context.auth_context(),
            )
            if not authed.principal.tenants_with(role):
                raise PermissionDenied(f"principal {authed.principal.id!r} lacks role {role}")
            return authed.principal, authed.expires_at
        except AarmError as exc:
            self.refused(exc)
            raise

    def now(self) -> float:
        """The guard's clock (Unix seconds): what credentials' expiry is compared with."""
        return self._clock()

    def refused(self, exc: AarmError) -> None:
        """Count and log one refusal (the detail only goes to the log)."""
        self._metrics.auth_failures.labels(exc.code.value).inc()
        log.warning("call refused: %s: %s", exc.code.value, exc.detail)

    def enter(self, who: Principal | None) -> contextvars.Token[Principal | None]:
        return _CURRENT.set(who)

    @staticmethod
    def leave(token: contextvars.Token[Principal | None]) -> None:
        _CURRENT.reset(token)

    def verify_human(self, request: ActionRequest, human_token: str) -> ActionRequest:
        """Take the end user from the tenant's IdP token where the tenant has one.

        A tenant that requires it and gets no valid token: the request is marked
        ``unverified`` (the engine answers DENY identity_unverified, with a receipt).
        A token for a tenant without an IdP is refused the same way.
        """
        ident = request.identity
        try:
            verified = verify_end_user(
                ident.tenant,
                human_token,
                self._end_users,
                now=self._clock(),
                claimed_human=ident.human,
            )
        except AarmError as exc:
            self.refused(exc)
            return dataclasses.replace(request, unverified=exc.detail[:200])
        if verified is None:
            return request
        return dataclasses.replace(
            request,
            identity=dataclasses.replace(ident, human=verified.human, human_verified=True),
        )
