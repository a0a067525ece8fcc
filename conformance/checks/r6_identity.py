"""R6 identity: missing, expired and revoked identities (rows 46, 47; S30)."""

from __future__ import annotations

import grpc
from aarm.v1 import approval_pb2

from conformance.checks.base import (
    EXTERNAL,
    NC,
    Ctx,
    codes,
    decide,
    ev,
    ident,
    probe,
    rpc_code,
    verdict,
)
from tests.support.grpc_clients import bearer

# --- identity -------------------------------------------------------------------------------


@probe("row 46", "row 47", "S30")
def identity_checks(ctx: Ctx) -> None:
    c = ctx.c
    q = ("db", "query", {"table": "orders", "limit": 10})
    s = ctx.session("identity")
    cases = {
        "no human, no service": ident(s, human="", service=""),
        "no agent": ident(s, agent=""),
        "no session id": ident("", session_id=""),
        "no identity at all": {},
    }
    evid, ok = [], True
    for name, idn in cases.items():
        r = decide(c, *q, s, identity=idn)
        ok &= verdict(r) == "DENY" and codes(r)[:1] == ["identity_missing"]
        evid.append(ev(r, name))
    ctx.expect(
        "row 47",
        "actions without human/service principal, agent or session are DENY identity_missing",
        ok,
        evid,
    )
    expired = decide(c, *q, s, identity=ident(s, expires_at="2020-01-01T00:00:00Z"))
    ok_exp = verdict(expired) == "DENY" and codes(expired)[:1] == ["identity_expired"]
    if not ctx.tokens.approver:
        ctx.expect("row 46", "an expired credential is DENY identity_expired", ok_exp, ev(expired))
        ctx.record("row 46", "revocation", NC, EXTERNAL + " without --approver-token")
        ctx.record("S30", "revocation", NC, EXTERNAL + " without --approver-token")
        return
    agent = f"agent-revoke-{ctx.run}"
    cred = f"cred-{ctx.run}"
    before = decide(c, *q, s, identity=ident(s, agent=agent))
    refused = rpc_code(
        lambda: c.approvals.RevokeIdentity(
            approval_pb2.RevokeIdentityRequest(tenant="acme", subject=agent, reason="x"),
            metadata=bearer(ctx.tokens.outsider),
            timeout=10,
        )
    )
    c.approvals.RevokeIdentity(
        approval_pb2.RevokeIdentityRequest(
            tenant="acme", subject=agent, reason="conformance: leaked"
        ),
        metadata=ctx.approver_md(),
        timeout=10,
    )
    c.approvals.RevokeIdentity(
        approval_pb2.RevokeIdentityRequest(
            tenant="acme", subject=cred, reason="conformance: leaked"
        ),
        metadata=ctx.approver_md(),
        timeout=10,
    )
    after = decide(c, *q, s, identity=ident(s, agent=agent))
    by_cred = decide(c, *q, s, identity=ident(s, credential_id=cred))
    ok_rev = (
        verdict(before) == "ALLOW"
        and refused == grpc.StatusCode.PERMISSION_DENIED
        and codes(after)[:1] == ["identity_revoked"]
        and codes(by_cred)[:1] == ["identity_revoked"]
    )
    evid = [
        ev(expired, "expired credential"),
        ev(before, "before revocation"),
        f"revocation by a non-admin: {refused.name if refused else 'ACCEPTED'}",
        ev(after, "revoked agent"),
        ev(by_cred, "revoked credential id"),
    ]
    ctx.expect(
        "row 46",
        "expired credential and revoked agent / credential id are DENY",
        ok_exp and ok_rev,
        evid,
    )
    ctx.expect(
        "S30", "revoked agent and revoked credential id are DENY identity_revoked", ok_rev, evid[1:]
    )
