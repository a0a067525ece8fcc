"""Verifiable end-user identity (AARM R6): the human behind an action, proven by the IdP.

The enforcement point forwards the end user's token from the organisation's identity
provider (an OIDC ID token or access token, a JWT). For a tenant configured here, the
service verifies it (signature against the tenant's JWKS file, issuer, audience,
expiry; :func:`aarm_pdp.auth.jwks.verify_jwt`) and takes the human from the verified
claims, never from the request's free-text ``identity.human``.

Configuration is the ``end_user_identity`` section of the principals file, one entry
per tenant::

    "end_user_identity": {
      "acme": {
        "issuer": "https://login.acme.example/",
        "audience": "agent-platform",
        "jwks_file": "jwks/acme-idp.json",
        "human_claim": "email",
        "required": true
      }
    }

``issuer`` and ``audience`` are the ``iss`` and ``aud`` the IdP puts in its tokens;
``jwks_file`` holds the IdP's public keys locally (no fetching at run time; re-read
when it changes); ``algorithms`` and ``leeway_seconds`` as for ``jwt_issuers``;
``human_claim`` (default ``sub``) names the claim that identifies the human;
``required`` defaults to true.

Rules (:func:`verify_end_user`):

- the tenant has a configuration and a token is given: it must verify, and its
  human claim must be a non-empty string; if the request also names a human, the
  two must be equal;
- no token: :class:`~aarm_pdp.errors.IdentityUnverified` when ``required``, else
  ``None`` (the request's human stays an unverified claim);
- a token for a tenant with no configuration cannot be checked: refused, rather than
  silently treated as unverified.

Any refusal is :class:`~aarm_pdp.errors.IdentityUnverified`, which Decide answers as
DENY with reason ``identity_unverified``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aarm_pdp.auth._problems import Problems, string, tenant_problem
from aarm_pdp.auth.jwks import TrustedIssuer, parse_issuer, verify_jwt
from aarm_pdp.errors import IdentityUnverified, Unauthenticated

DEFAULT_HUMAN_CLAIM = "sub"
_CLAIM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/\-]{0,127}")


@dataclass(frozen=True, slots=True)
class EndUserIdentity:
    """How one tenant proves its end users: the IdP, the claim naming the human."""

    issuer: TrustedIssuer
    human_claim: str = DEFAULT_HUMAN_CLAIM
    required: bool = True


@dataclass(frozen=True, slots=True)
class VerifiedHuman:
    """The end user, as the IdP's verified token names them."""

    human: str
    issuer: str
    expires_at: float
    claims: Mapping[str, Any]


def verify_end_user(
    tenant: str,
    token: str,
    config: Mapping[str, EndUserIdentity],
    *,
    now: float,
    claimed_human: str = "",
) -> VerifiedHuman | None:
    """The verified human for ``tenant``, ``None`` if not required and not given.

    Raises:
        IdentityUnverified: required and missing, invalid, or not matching ``claimed_human``.
    """
    cfg = config.get(tenant)
    if cfg is None:
        if token:
            raise IdentityUnverified(
                f"tenant {tenant!r}: an end-user token was given but no IdP is configured"
            )
        return None
    if not token:
        if cfg.required:
            raise IdentityUnverified(f"tenant {tenant!r} requires a verified end-user token")
        return None
    trusted = {cfg.issuer.issuer: cfg.issuer}
    try:
        claims = verify_jwt(token, trusted, now=now, required_claims=(cfg.human_claim,))
    except Unauthenticated as exc:
        raise IdentityUnverified(f"tenant {tenant!r}: end-user token: {exc.detail}") from exc
    human = claims.get(cfg.human_claim)
    if not isinstance(human, str) or not human.strip():
        raise IdentityUnverified(
            f"tenant {tenant!r}: claim {cfg.human_claim!r} is not a non-empty string"
        )
    if claimed_human and claimed_human != human:
        raise IdentityUnverified(
            f"tenant {tenant!r}: request names human {claimed_human!r}, token proves {human!r}"
        )
    return VerifiedHuman(
        human=human,
        issuer=cfg.issuer.issuer,
        expires_at=float(claims["exp"]),
        claims=MappingProxyType(dict(claims)),
    )


def parse_end_user_identity(
    section: Any, problems: Problems, base_dir: Path
) -> dict[str, EndUserIdentity]:
    """Read the ``end_user_identity`` section (see the module docstring)."""
    if not isinstance(section, dict):
        problems.add("end_user_identity", 'must be an object {"<tenant>": {...}}')
        return {}
    out: dict[str, EndUserIdentity] = {}
    for tenant, entry in section.items():
        where = f"end_user_identity.{tenant}"
        bad = tenant_problem(tenant)
        if bad:
            problems.add("end_user_identity", bad)
            continue
        before = len(problems.items)
        issuer = parse_issuer(
            entry, where, problems, base_dir, extra_keys=frozenset({"human_claim", "required"})
        )
        if not isinstance(entry, dict):
            continue
        claim = string(entry, "human_claim", where, problems, default=DEFAULT_HUMAN_CLAIM)
        if claim is not None and not _CLAIM_RE.fullmatch(claim):
            problems.add(where, f"human_claim {claim!r} is not a claim name")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            problems.add(where, "required must be true or false")
        if issuer is not None and claim is not None and len(problems.items) == before:
            out[tenant] = EndUserIdentity(issuer, claim, bool(required))
    return out


__all__ = ["EndUserIdentity", "VerifiedHuman", "parse_end_user_identity", "verify_end_user"]
