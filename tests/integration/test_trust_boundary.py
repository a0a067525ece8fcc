"""Every RPC x {no credential, wrong tenant, wrong role, right principal}, over real TLS.

Three transports, each with certificates and tokens generated here: TLS with static
bearer tokens, mutual TLS with client certificates (SPIFFE URI SANs), and TLS with
JWTs verified against a JWKS file. The service runs in this process with a scripted
policy engine (the trust boundary sits in front of policy); the sockets, TLS and
credentials are real. Expected: UNAUTHENTICATED / PERMISSION_DENIED /
PERMISSION_DENIED / OK, except GetPublicKeys, which is open (the keys are public).

Under mutual TLS the server requires a verified client certificate in the handshake, so
"no credential" there is a certificate of the trusted CA that names no principal (and a
connection with no certificate at all is refused before any RPC:
test_forged_credentials_are_unauthenticated).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import approval_pb2 as A
from aarm.v1 import decision_pb2 as D
from aarm.v1 import deferral_pb2 as F
from aarm.v1 import receipt_pb2 as R
from aarm.v1 import session_pb2 as S
from aarm_pdp import server
from aarm_pdp.auth import channel_credentials
from aarm_pdp.config import AuthConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp_client import ActionDenied, AsyncClient, Identity, Tls

from tests.support.grpc_clients import Clients, aio_channel, bearer, opened
from tests.support.messages import decide_request, opa_answer
from tests.support.pki import CertificateAuthority, SigningKey, write_jwks
from tests.support.principals import token_hash
from tests.support.service import fake_config

pytestmark = pytest.mark.integration

ISSUER = "https://login.test.example/"
AUDIENCE = "aarm-pdp"
ROLES = ("enforcer", "approver", "admin", "auditor")
TRANSPORTS = ("tls-token", "mtls", "tls-jwt")


def _answer(doc: dict[str, Any]) -> Any:
    tool = doc["action"]["name"]
    return opa_answer(
        "STEP_UP" if tool == "payments.transfer" else "DEFER" if tool == "ops.rotate" else "ALLOW"
    )


@dataclass
class Who:
    """One principal as each transport presents it."""

    id: str
    token: str
    spiffe: str
    cert: tuple[Path, Path]
    jwt: str


@dataclass
class World:
    app: server.App
    tmp: Path
    ca: Path
    people: dict[str, Who]
    anonymous: tuple[Path, Path]
    """A client certificate of the trusted CA that names no principal."""

    def channel(self, transport: str, who: Who | None) -> grpc.aio.Channel:
        target = f"localhost:{self.app.port}"
        if transport == "mtls":
            cert, key = who.cert if who is not None else self.anonymous
            creds = channel_credentials(self.ca, cert=cert, key=key)
            return aio_channel(target, None, credentials=creds)
        token = None if who is None else (who.token if transport == "tls-token" else who.jwt)
        return aio_channel(target, token, credentials=channel_credentials(self.ca))


def _principals(
    tmp: Path, ca: CertificateAuthority, key: SigningKey
) -> tuple[Path, dict[str, Who]]:
    """In acme: one principal per role, one with every role; in globex: every role."""
    people: dict[str, Who] = {}
    entries = []
    for name, roles in [
        *((f"only-{r}", {"acme": [r]}) for r in ROLES),
        ("acme-all", {"acme": list(ROLES)}),
        ("globex-all", {"globex": list(ROLES)}),
    ]:
        token = f"tok-{name}-{uuid.uuid4().hex}"
        spiffe = f"spiffe://test.example/{name}"
        cert = ca.issue_client(spiffe_id=spiffe, common_name=name).write(tmp / "certs", name)
        jwt = key.sign({"iss": ISSUER, "aud": AUDIENCE, "sub": name, "exp": time.time() + 3600})
        people[name] = Who(name, token, spiffe, cert, jwt)
        entry: dict[str, Any] = {
            "id": name,
            "kind": "service",
            "roles": roles,
            "tokens": [token_hash(token)],
            "mtls": [{"spiffe_id": spiffe}],
            "jwt": [{"issuer": ISSUER, "subject": name}],
        }
        if any("approver" in r for r in roles.values()):
            entry["approver_groups"] = ["data-owners"]
        entries.append(entry)
    write_jwks(tmp / "jwks.json", key)
    doc = {
        "version": 1,
        "jwt_issuers": [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": "jwks.json"}],
        "principals": entries,
    }
    path = tmp / "principals.json"
    path.write_text(json.dumps(doc))
    return path, people


@pytest.fixture(params=TRANSPORTS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, World]]:
    transport: str = request.param
    ca = CertificateAuthority.create()
    cert, key = ca.issue_server().write(tmp_path, "server")
    ca_path = ca.write(tmp_path)
    principals, people = _principals(tmp_path, ca, SigningKey.generate("ES256"))
    anonymous = ca.issue_client(spiffe_id="spiffe://test.example/nobody").write(tmp_path, "anon")
    auth = AuthConfig(
        principals_file=principals,
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=ca_path if transport == "mtls" else None,
    )
    cfg = fake_config(tmp_path, auth=auth)
    app = await server.start(cfg, policy_engine=FakePolicyEngine(_answer))
    try:
        yield transport, World(app, tmp_path, ca_path, people, anonymous)
    finally:
        await app.stop()


IDENT = {"tenant": "acme", "human": "alice@acme.example", "agent": "agent-7"}


def _ident(session: str) -> Any:
    return decide_request("x", "y", identity={**IDENT, "session_id": session}).identity


async def _fixtures(w: World, transport: str) -> dict[str, Any]:
    """Real resources to act on, made by the enforcement point that owns the session."""
    async with w.channel(transport, w.people["only-enforcer"]) as ch:
        c = Clients(ch)
        sid = f"s-{uuid.uuid4().hex[:8]}"
        ident = {**IDENT, "session_id": sid}
        allow = await c.decide.Decide(decide_request("db", "query", {"t": 1}, identity=ident))
        step = await c.decide.Decide(
            decide_request("payments", "transfer", {"amount": 1}, identity=ident)
        )
        defer = await c.decide.Decide(decide_request("ops", "rotate", {}, identity=ident))
    assert allow.decision == D.DECISION_ALLOW
    assert step.decision == D.DECISION_STEP_UP and step.approval.approval_id
    assert defer.decision == D.DECISION_DEFER and defer.deferral.deferral_id
    return {"sid": sid, "allow": allow, "step": step, "defer": defer}


def _calls(
    fx: dict[str, Any], tenant: str
) -> dict[str, tuple[str, Callable[[Clients], Awaitable[Any]]]]:
    """RPC -> (role it needs, a call naming ``tenant`` where the request names one)."""
    sid = fx["sid"]
    ident = {**IDENT, "tenant": tenant, "session_id": sid}
    pb_ident = _ident(sid)
    pb_ident.tenant = tenant
    fresh = _ident(f"new-{uuid.uuid4().hex[:8]}")
    fresh.tenant = tenant

    def outcome(c: Clients) -> Awaitable[Any]:
        return c.sessions.RecordOutcome(
            S.RecordOutcomeRequest(
                identity=pb_ident,
                decision_id=fx["allow"].decision_id,
                status=S.OUTCOME_STATUS_EXECUTED,
            )
        )

    async def watch(c: Clients) -> Any:
        # The first message (PENDING) or the refusal; the wait itself is not needed here.
        stream = c.approvals.WatchApproval(
            A.WatchApprovalRequest(identity=pb_ident, approval_id=fx["step"].approval.approval_id),
            timeout=10,
        )
        try:
            return await stream.read()
        finally:
            stream.cancel()

    async def decide_stream(c: Clients) -> Any:
        # One message: the stream is refused as a whole (no principal, wrong role), or its
        # message answered with a per-message error (a tenant the principal holds no role
        # in), which counts here as the status Decide would have ended with.
        stream = c.decide.DecideStream(timeout=10)
        try:
            await opened(stream)  # a refusal raises here, with its own status
            await stream.write(
                D.DecideStreamRequest(
                    message_id=1, request=decide_request("db", "q", identity=ident)
                )
            )
            answer = await stream.read()
        finally:
            stream.cancel()
        if answer.HasField("error"):
            return _STATUS_BY_NUMBER[answer.error.status]
        return answer

    return {
        "Decide": (
            "enforcer",
            lambda c: c.decide.Decide(decide_request("db", "q", identity=ident)),
        ),
        "DecideStream": ("enforcer", decide_stream),
        "StartSession": (
            "enforcer",
            lambda c: c.sessions.StartSession(
                S.StartSessionRequest(identity=fresh, original_request="hello")
            ),
        ),
        "RecordOutcome": ("enforcer", outcome),
        "GetDeferral": (
            "enforcer",
            lambda c: c.deferrals.GetDeferral(
                F.GetDeferralRequest(
                    identity=pb_ident, deferral_id=fx["defer"].deferral.deferral_id
                )
            ),
        ),
        "ListPendingApprovals": (
            "approver",
            lambda c: c.approvals.ListPendingApprovals(
                A.ListPendingApprovalsRequest(tenant=tenant)
            ),
        ),
        "GetApproval": (
            "approver",
            lambda c: c.approvals.GetApproval(
                A.GetApprovalRequest(approval_id=fx["step"].approval.approval_id)
            ),
        ),
        "RevokeIdentity": (
            "admin",
            lambda c: c.approvals.RevokeIdentity(
                A.RevokeIdentityRequest(tenant=tenant, subject=f"mallory-{uuid.uuid4().hex[:6]}")
            ),
        ),
        "GetReceipt": (
            "auditor",
            lambda c: c.receipts.GetReceipt(
                R.GetReceiptRequest(receipt_id=fx["allow"].receipt.receipt_id)
            ),
        ),
        "ListReceipts": (
            "auditor",
            lambda c: c.receipts.ListReceipts(R.ListReceiptsRequest(tenant=tenant, session_id=sid)),
        ),
        "GetPublicKeys": ("", lambda c: c.receipts.GetPublicKeys(R.GetPublicKeysRequest())),
        "WatchApproval": ("enforcer", watch),
        # Last: these change the resources the others use.
        "ProvideContext": (
            "enforcer",
            lambda c: c.deferrals.ProvideContext(
                F.ProvideContextRequest(
                    identity=pb_ident,
                    deferral_id=fx["defer"].deferral.deferral_id,
                    facts=[D.Fact(name="maintenance_window", source="ticketing")],
                )
            ),
        ),
        "ResolveApproval": (
            "approver",
            lambda c: c.approvals.ResolveApproval(
                A.ResolveApprovalRequest(
                    approval_id=fx["step"].approval.approval_id, grant=False, reason="no"
                )
            ),
        ),
        "EndSession": (
            "enforcer",
            lambda c: c.sessions.EndSession(S.EndSessionRequest(identity=pb_ident)),
        ),
    }


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


async def _code(w: World, transport: str, who: Who | None, call: Any) -> grpc.StatusCode:
    async with w.channel(transport, who) as ch:
        try:
            got = await call(Clients(ch))
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return got if isinstance(got, grpc.StatusCode) else grpc.StatusCode.OK


async def test_every_rpc_needs_the_right_principal(world: tuple[str, World]) -> None:
    transport, w = world
    fx = await _fixtures(w, transport)
    every_rpc = {m.name for s in server.SERVICERS for m in s.SERVICE.methods}
    table: dict[str, dict[str, grpc.StatusCode]] = {}
    for rpc, (role, call) in _calls(fx, "acme").items():
        row: dict[str, grpc.StatusCode] = {}
        row["none"] = await _code(w, transport, None, call)
        if role:
            wrong_role = next(r for r in ROLES if r != role)
            # globex-all holds the role, but in another tenant than the request names.
            row["wrong_tenant"] = await _code(w, transport, w.people["globex-all"], call)
            row["wrong_role"] = await _code(w, transport, w.people[f"only-{wrong_role}"], call)
            row["right"] = await _code(w, transport, w.people[f"only-{role}"], call)
        else:
            row["right"] = row["none"]
        table[rpc] = row
    assert set(table) == every_rpc
    want_closed = {
        "none": grpc.StatusCode.UNAUTHENTICATED,
        "wrong_tenant": grpc.StatusCode.PERMISSION_DENIED,
        "wrong_role": grpc.StatusCode.PERMISSION_DENIED,
        "right": grpc.StatusCode.OK,
    }
    want = {
        rpc: (
            want_closed
            if rpc != "GetPublicKeys"
            else {"none": grpc.StatusCode.OK, "right": grpc.StatusCode.OK}
        )
        for rpc in table
    }
    assert table == want
    refusals = w.app.metrics.registry.get_sample_value(
        "aarm_auth_failures_total", {"code": "permission_denied"}
    )
    assert refusals is not None and refusals >= 2 * (len(table) - 1)


async def test_forged_credentials_are_unauthenticated(world: tuple[str, World]) -> None:
    transport, w = world
    call = _calls(await _fixtures(w, transport), "acme")["Decide"][1]
    if transport == "mtls":
        async with aio_channel(
            f"localhost:{w.app.port}", None, credentials=channel_credentials(w.ca)
        ) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(Clients(ch))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # no certificate: no handshake
        rogue = CertificateAuthority.create("rogue")
        cert = rogue.issue_client(spiffe_id="spiffe://test.example/acme-all").write(w.tmp, "rogue")
        creds = channel_credentials(w.ca, cert=cert[0], key=cert[1])
        async with aio_channel(f"localhost:{w.app.port}", None, credentials=creds) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(Clients(ch))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
        return
    forged = Who(
        "forged",
        "tok-forged",
        "",
        (w.tmp, w.tmp),
        SigningKey.generate().sign(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "acme-all", "exp": time.time() + 60}
        ),
    )
    assert await _code(w, transport, forged, call) == grpc.StatusCode.UNAUTHENTICATED
    async with w.channel(transport, w.people["acme-all"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await Clients(ch).decide.Decide(
                decide_request("db", "q", identity={**IDENT, "session_id": "x"}),
                metadata=bearer("not-a-token"),
            )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_tenant_that_requires_it_takes_the_human_from_its_idp_token(
    tmp_path: Path,
) -> None:
    """AARM R6: the end user's identity as a signed IdP token, verified per tenant."""
    idp = SigningKey.generate("ES256", kid="idp-1")
    write_jwks(tmp_path / "idp.json", idp)
    platform = f"tok-platform-{uuid.uuid4().hex}"
    doc = {
        "version": 1,
        "principals": [
            {
                "id": "platform",
                "kind": "service",
                "roles": {"acme": ["enforcer", "auditor"]},
                "tokens": [token_hash(platform)],
            }
        ],
        "end_user_identity": {
            "acme": {
                "issuer": "https://idp.acme.example/",
                "audience": "agent-platform",
                "jwks_file": "idp.json",
                "human_claim": "email",
                "required": True,
            }
        },
    }
    (tmp_path / "principals.json").write_text(json.dumps(doc))
    cfg = fake_config(tmp_path, auth=AuthConfig(principals_file=tmp_path / "principals.json"))

    def token(email: str, **over: Any) -> str:
        claims = {
            "iss": "https://idp.acme.example/",
            "aud": "agent-platform",
            "sub": "u-1",
            "email": email,
            "exp": time.time() + 300,
            **over,
        }
        return idp.sign(claims)

    app = await server.start(cfg, policy_engine=FakePolicyEngine(_answer))
    try:
        async with aio_channel(f"127.0.0.1:{app.port}", platform) as ch:
            c = Clients(ch)

            async def decide(human: str, human_token: str) -> Any:
                req = decide_request(
                    "db", "query", identity={**IDENT, "human": human, "session_id": "idp"}
                )
                req.identity.human_token = human_token
                return await c.decide.Decide(req)

            missing = await decide("alice@acme.example", "")
            assert (missing.decision, missing.reasons[0].code) == (
                D.DECISION_DENY,
                "identity_unverified",
            )
            ok = await decide("", token("alice@acme.example"))
            assert ok.decision == D.DECISION_ALLOW
            receipt = json.loads(ok.receipt.payload)
            assert receipt["identity"]["human"] == "alice@acme.example"
            assert receipt["identity"]["human_verified"] is True
            assert receipt["identity"]["principal"] == "platform"
            assert token("alice@acme.example") not in ok.receipt.payload
            other = await decide("bob@acme.example", token("alice@acme.example"))
            assert other.reasons[0].code == "identity_unverified"
            expired = await decide("", token("alice@acme.example", exp=time.time() - 600))
            assert expired.reasons[0].code == "identity_unverified"
            forged = await decide(
                "",
                SigningKey.generate("ES256", kid="idp-1").sign(
                    {
                        "iss": "https://idp.acme.example/",
                        "aud": "agent-platform",
                        "sub": "x",
                        "email": "alice@acme.example",
                        "exp": time.time() + 300,
                    }
                ),
            )
            assert forged.reasons[0].code == "identity_unverified"
    finally:
        await app.stop()


async def test_the_client_authenticates_on_every_transport(world: tuple[str, World]) -> None:
    """aarm-pdp-client over TLS with a token or JWT, or mTLS with a client certificate."""
    transport, w = world

    def client(who: Who) -> AsyncClient:
        cert, key = who.cert
        if transport == "mtls":
            return AsyncClient(
                f"localhost:{w.app.port}", tls=Tls.from_files(ca=w.ca, cert=cert, key=key)
            )
        token = who.token if transport == "tls-token" else who.jwt
        return AsyncClient(f"localhost:{w.app.port}", token=token, tls=Tls.from_files(ca=w.ca))

    me = Identity(tenant="acme", human="alice@acme.example", agent="agent-7", session_id="s-cl")
    async with client(w.people["only-enforcer"]) as enforcer:
        verdict = await enforcer.decide(me, "db", "query", {"t": 1})
    assert verdict.decision == "ALLOW"
    async with client(w.people["only-auditor"]) as auditor:
        with pytest.raises(ActionDenied) as refused:
            await auditor.decide(me, "db", "query", {"t": 1})
    assert refused.value.codes == ("pdp_refused",)
