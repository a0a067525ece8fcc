"""The trust boundary: who is calling, and what it may do in which tenant.

Modules (each small, pure where it can be; the clock is always injected):

- :mod:`~aarm_pdp.auth.principals`: ``Principal``, ``Role``, the principals file
  (JSON) and the credential lookups built from it;
- :mod:`~aarm_pdp.auth.credentials`: ``authenticate(metadata, auth_context, ...)``:
  bearer token (static, hashed) or JWT, else the verified mTLS client certificate;
- :mod:`~aarm_pdp.auth.authorize`: the role each RPC needs; ``authorize(principal,
  tenant, role)``;
- :mod:`~aarm_pdp.auth.jwks`: JWKS files and JWT verification (PyJWT);
- :mod:`~aarm_pdp.auth.idp`: the end user's identity proven by the tenant's IdP (R6);
- :mod:`~aarm_pdp.auth.devtoken`: the ``make run`` development principal;
- :mod:`~aarm_pdp.auth.tls`: gRPC server/client TLS credentials with reload.

Refusals are :class:`~aarm_pdp.errors.Unauthenticated`,
:class:`~aarm_pdp.errors.PermissionDenied` and
:class:`~aarm_pdp.errors.IdentityUnverified`; configuration problems are
:class:`AuthConfigError`, listing every problem at once. See docs/authentication.md.
"""

from aarm_pdp.auth._problems import AuthConfigError
from aarm_pdp.auth.authorize import RPC_ROLES, authorize, required_role
from aarm_pdp.auth.credentials import Authenticated, Authenticator, Method, authenticate
from aarm_pdp.auth.devtoken import DevPrincipal, ensure_dev_principal
from aarm_pdp.auth.idp import EndUserIdentity, VerifiedHuman, verify_end_user
from aarm_pdp.auth.principals import (
    Principal,
    PrincipalDirectory,
    PrincipalKind,
    Role,
    load_principals,
    token_hash,
)
from aarm_pdp.auth.tls import TlsFiles, channel_credentials, server_credentials

__all__ = [
    "RPC_ROLES",
    "AuthConfigError",
    "Authenticated",
    "Authenticator",
    "DevPrincipal",
    "EndUserIdentity",
    "Method",
    "Principal",
    "PrincipalDirectory",
    "PrincipalKind",
    "Role",
    "TlsFiles",
    "VerifiedHuman",
    "authenticate",
    "authorize",
    "channel_credentials",
    "ensure_dev_principal",
    "load_principals",
    "required_role",
    "server_credentials",
    "token_hash",
    "verify_end_user",
]
