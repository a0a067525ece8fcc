"""The principals every test, the conformance suite and the bench authenticate as.

Each runs the service with a principals file (``--principals``) written by
:func:`write_principals`, and calls it with a bearer token like any real client:

- ``platform`` (:data:`PLATFORM_TOKEN`): the enforcement point, with the enforcer,
  auditor and admin roles in :data:`TENANT` (``acme``) only (so a request that names
  no tenant acts in it); every channel of :mod:`tests.support.grpc_clients` carries
  it by default;
- approvers given to :func:`write_principals` (token -> id, groups): the approver role
  in ``acme`` for those groups (the admin role too where the groups name
  ``identity-admins``);
- ``outsider`` (:data:`OUTSIDER_TOKEN`): the enforcer role in :data:`OTHER_TENANT` only;
- ``operator`` (:data:`OPERATOR_TOKEN`): every role in ``acme``, approving for every
  group (for tests that call every RPC as one principal).

Tokens are stored in the file only as sha256 hashes, as in production.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TENANT = "acme"
OTHER_TENANT = "globex"
PLATFORM_TOKEN = "aarm-test-platform-6c1f0e9d8b7a45f3a2e1d0c9b8a7f6e5"
OUTSIDER_TOKEN = "aarm-test-outsider-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d"
OPERATOR_TOKEN = "aarm-test-operator-5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
ADMIN_GROUP = "identity-admins"
_PLATFORM_ROLES = ["enforcer", "auditor", "admin"]


def token_hash(token: str) -> str:
    """The principals file's form of a token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def principals_doc(
    approvers: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    *,
    tenants: Sequence[str] = (TENANT,),
    extra: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The principals document: the platform, the outsider, and ``approvers``."""
    entries: list[dict[str, Any]] = [
        {
            "id": "platform",
            "kind": "service",
            "roles": {t: list(_PLATFORM_ROLES) for t in tenants},
            "tokens": [token_hash(PLATFORM_TOKEN)],
        },
        {
            "id": "outsider",
            "kind": "service",
            "roles": {OTHER_TENANT: ["enforcer"]},
            "tokens": [token_hash(OUTSIDER_TOKEN)],
        },
    ]
    entries.append(
        {
            "id": "operator",
            "kind": "user",
            "roles": {TENANT: ["enforcer", "approver", "admin", "auditor"]},
            "approver_groups": ["*"],
            "tokens": [token_hash(OPERATOR_TOKEN)],
        }
    )
    for token, (who, groups) in (approvers or {}).items():
        roles = ["approver", "admin"] if ADMIN_GROUP in groups else ["approver"]
        entries.append(
            {
                "id": who,
                "kind": "user",
                "roles": {TENANT: roles},
                "approver_groups": [g for g in groups if g != ADMIN_GROUP] or ["none"],
                "tokens": [token_hash(token)],
            }
        )
    entries.extend(dict(e) for e in extra)
    return {"version": 1, "principals": entries}


def write_principals(
    path: Path,
    approvers: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    **kw: Any,
) -> Path:
    """Write :func:`principals_doc` to ``path`` (mode 0600) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(principals_doc(approvers, **kw), indent=1))
    path.chmod(0o600)
    return path


@functools.cache
def default_file() -> Path:
    """A principals file of :func:`principals_doc` for this run (written once)."""
    return write_principals(Path(tempfile.mkdtemp(prefix="aarm-principals-")) / "principals.json")
