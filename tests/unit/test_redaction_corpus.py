"""A corpus of real credential shapes, and the sinks they must never reach in clear.

Every shape is a generated fake with the real format (prefix, alphabet, length, parts:
AWS, GitHub, GitLab, Slack, Stripe, JWTs, PEM/OpenSSH/PuTTY private keys made with
``cryptography``, URL userinfo, Bearer/Basic headers, Google, Twilio, SendGrid, npm,
OpenAI, Anthropic, Azure, Discord, Mailchimp, Square, PyPI, Telegram, Artifactory, IBM,
keyword assignments). Each is embedded in free text, nested JSON (as a value and as a
key), an outcome ``error``, a policy reason, telemetry fields and log records, and
asserted absent in clear from: the canonical bytes of real receipts (receipts/body.py +
receipts/log.py, MemoryReceiptStore, a KeyRing in a tmp dir), telemetry events, and
the captured log output. The negatives (our own ids, hashes and signatures, e-mails,
IBANs, prose) must come through unchanged.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import string
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.decision.followups import MAX_ERROR_TEXT, Followups
from aarm_pdp.model.decision import (
    Decision,
    DecisionRecord,
    DecisionResult,
    Deferral,
    PolicyVersion,
    Reason,
    RiskLevel,
)
from aarm_pdp.model.digests import parameters_hash
from aarm_pdp.model.redaction import REDACTED, redact, redact_strings, redact_values
from aarm_pdp.model.request import Action, ActionRequest, Identity, identity_doc
from aarm_pdp.observability import logging as aarm_logging
from aarm_pdp.observability.events import approval_event, decision_events
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.receipts import KeyRing, MemoryReceiptStore, ReceiptLog
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts.envelope import SignedReceipt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

RND = random.Random(20260501)
UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def _r(alphabet: str, n: int) -> str:
    return "".join(RND.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(alg: str, sig_bytes: int) -> str:
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": _r(ALNUM, 8)}).encode())
    claims = {"sub": f"user-{_r(DIGITS, 6)}", "iat": 1777600000, "scope": "payments:write"}
    payload = _b64url(json.dumps(claims).encode())
    signature = _b64url(RND.randbytes(sig_bytes))
    return f"{header}.{payload}.{signature}"


@dataclass(frozen=True)
class Shape:
    """One credential as it shows up: ``text`` (maybe with context), what must not survive
    (``secrets``), and what must (``keep``: context, scheme and host)."""

    name: str
    text: str
    secrets: tuple[str, ...]
    keep: tuple[str, ...] = ()


def _plain(name: str, token: str) -> Shape:
    return Shape(name, token, (token,))


def _pem_shape(name: str, pem: bytes) -> Shape:
    text = pem.decode()
    body = tuple(
        line
        for line in text.splitlines()
        if line and not line.startswith("-----") and ":" not in line
    )
    return Shape(name, text, body)


def _pem(key: Any, fmt: serialization.PrivateFormat, *, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))


def _putty() -> Shape:
    public = "\n".join(_r(B64, 64) for _ in range(2))
    private = [_r(B64, 64) for _ in range(3)]
    mac = _r(HEX, 40)
    text = (
        "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: deploy-key\n"
        f"Public-Lines: 2\n{public}\nPrivate-Lines: 3\n" + "\n".join(private) + f"\n"
        f"Private-MAC: {mac}"
    )
    return Shape("putty_private_key", text, (*private, mac))


def _shapes() -> list[Shape]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    user, password = "svc_" + _r(LOWER, 6), _r(ALNUM, 18)
    aws_secret = _r(B64, 40)
    aws_secret_2 = _r(B64, 40)
    ghp = "ghp_" + _r(ALNUM, 36)
    bearer = _r(ALNUM + "-._~", 43)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    special_password = "Sup3r$ecret!" + _r(ALNUM, 6)
    keyword_password = _r(ALNUM, 14)
    json_password = _r(ALNUM, 20)
    iam = _r(B64URL, 44)
    slack_webhook_secret = _r(ALNUM, 24)
    shapes = [
        _plain("aws_access_key_id", "AKIA" + _r(UPPER + "234567", 16)),
        _plain("aws_temporary_key_id", "ASIA" + _r(UPPER + "234567", 16)),
        Shape(
            "aws_secret_access_key_quoted",
            f'aws_secret_access_key = "{aws_secret}"',
            (aws_secret,),
            ("aws_secret_access_key",),
        ),
        Shape(
            "aws_secret_access_key_env",
            f"AWS_SECRET_ACCESS_KEY={aws_secret_2}",
            (aws_secret_2,),
            ("AWS_SECRET_ACCESS_KEY=",),
        ),
        _plain("github_classic_pat", ghp),
        _plain("github_oauth", "gho_" + _r(ALNUM, 36)),
        _plain("github_app_server", "ghs_" + _r(ALNUM, 36)),
        _plain("github_fine_grained_pat", "github_pat_" + _r(ALNUM, 22) + "_" + _r(ALNUM, 59)),
        _plain("gitlab_pat", "glpat-" + _r(B64URL, 20)),
        _plain("slack_bot", f"xoxb-{_r(DIGITS, 12)}-{_r(DIGITS, 13)}-{_r(ALNUM, 24)}"),
        _plain(
            "slack_user",
            f"xoxp-{_r(DIGITS, 12)}-{_r(DIGITS, 12)}-{_r(DIGITS, 13)}-{_r(HEX, 32)}",
        ),
        Shape(
            "slack_webhook",
            f"https://hooks.slack.com/services/T{_r(UPPER + DIGITS, 8)}/B{_r(UPPER + DIGITS, 10)}/"
            + slack_webhook_secret,
            (slack_webhook_secret,),
        ),
        _plain("stripe_secret_live", "sk_live_" + _r(ALNUM, 24)),
        _plain("stripe_secret_live_long", "sk_live_" + _r(ALNUM, 99)),
        _plain("stripe_restricted_live", "rk_live_" + _r(ALNUM, 24)),
        _plain("jwt_hs256", _jwt("HS256", 32)),
        _plain("jwt_rs256", _jwt("RS256", 256)),
        _pem_shape("pem_rsa", _pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)),
        _pem_shape("pem_ec", _pem(ec_key, serialization.PrivateFormat.TraditionalOpenSSL)),
        _pem_shape("pem_openssh", _pem(ed_key, serialization.PrivateFormat.OpenSSH)),
        _pem_shape("pem_pkcs8", _pem(rsa_key, serialization.PrivateFormat.PKCS8)),
        _pem_shape(
            "pem_pkcs8_encrypted",
            _pem(ec_key, serialization.PrivateFormat.PKCS8, password=b"correct horse"),
        ),
        _putty(),
        Shape(
            "url_userinfo_https",
            f"https://{user}:{password}@api.example.com/v1/items",
            (password, f"{user}:{password}"),
            ("https://", "@api.example.com/v1/items"),
        ),
        Shape(
            "url_userinfo_postgresql",
            f"postgresql://app:{password}@db.internal:5432/orders",
            (password, f"app:{password}"),
            ("postgresql://", "@db.internal:5432/orders"),
        ),
        Shape(
            "url_userinfo_special_characters",
            f"amqp://admin:{special_password}@mq.internal/vhost",
            (special_password,),
            ("amqp://", "@mq.internal/vhost"),
        ),
        Shape(
            "url_userinfo_password_only",
            f"redis://:{password}@cache:6379/0",
            (password,),
            ("redis://", "@cache:6379/0"),
        ),
        Shape(
            "url_userinfo_token_as_user",
            f"https://{ghp}@github.com/acme/payments.git",
            (ghp,),
            ("https://", "@github.com/acme/payments.git"),
        ),
        Shape(
            "authorization_bearer",
            f"Authorization: Bearer {bearer}",
            (bearer,),
            ("Authorization:",),
        ),
        Shape("bearer_bare", f"bearer {bearer[::-1]}", (bearer[::-1],)),
        Shape("authorization_basic", f"Authorization: Basic {basic}", (basic,)),
        _plain("google_api_key", "AIza" + _r(B64URL, 35)),
        _plain("twilio_account_sid", "AC" + _r(HEX, 32)),
        _plain("twilio_api_key", "SK" + _r(HEX, 32)),
        _plain("sendgrid", "SG." + _r(B64URL, 22) + "." + _r(B64URL, 43)),
        _plain("npm_token", "npm_" + _r(ALNUM, 36)),
        Shape(
            "npmrc_line",
            "//registry.npmjs.org/:_authToken=" + (npmrc := "npm_" + _r(ALNUM, 36)),
            (npmrc,),
            ("//registry.npmjs.org/:_authToken=",),
        ),
        _plain("openai_legacy", "sk-" + _r(ALNUM, 20) + "T3BlbkFJ" + _r(ALNUM, 20)),
        _plain(
            "openai_project",
            "sk-proj-" + _r(B64URL, 74) + "T3BlbkFJ" + _r(B64URL, 74),
        ),
        _plain("anthropic", "sk-ant-api03-" + _r(B64URL, 93) + "AA"),
        Shape(
            "azure_storage_connection_string",
            "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey="
            + (azure := _r(B64, 86) + "==")
            + ";EndpointSuffix=core.windows.net",
            (azure,),
            ("AccountName=acmeprod",),
        ),
        _plain(
            "discord_bot",
            "M" + _r(ALNUM, 23) + "." + _r(B64URL, 6) + "." + _r(B64URL, 27),
        ),
        _plain("mailchimp", _r(HEX, 32) + "-us12"),
        _plain("square_oauth_secret", "sq0csp-" + _r(B64URL, 43)),
        _plain("pypi", "pypi-AgEIcHlwaS5vcmc" + _r(B64URL, 120)),
        _plain("telegram_bot", RND.choice("123456789") + _r(DIGITS, 9) + ":" + _r(B64URL, 35)),
        _plain("artifactory_api_key", "AKCp" + _r(ALNUM, 69)),
        Shape(
            "keyword_password_assignment",
            f"password = '{keyword_password}'",
            (keyword_password,),
            ("password = ",),
        ),
        Shape(
            "keyword_json_member",
            f'{{"db_password": "{json_password}", "host": "db1"}}',
            (json_password,),
            ('"host": "db1"',),
        ),
        Shape(
            "ibm_cloud_iam_key",
            f"ibm_cloud_iam_key = {iam}",
            (iam,),
            ("ibm_cloud_iam_key",),
        ),
    ]
    names = [s.name for s in shapes]
    assert len(names) == len(set(names))
    return shapes


SHAPES = _shapes()
SHAPE_IDS = [s.name for s in SHAPES]

# Our own ids and hashes, and ordinary data: none of it may be touched.
NEGATIVES = [
    "Refund of order 4711 for customer Jane Doe failed: insufficient funds (status 402).",
    "the bearer of good news; password expired; token limit exceeded; API key rotation due",
    "missing Authorization header",
    "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "d-8c0f1c52-5d2b-4e57-9f0e-0a4f6c7b9e21",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "0" * 64,
    # an Ed25519 signature, base64 and base64url, and a key id
    base64.b64encode(random.Random(7).randbytes(64)).decode(),
    _b64url(random.Random(8).randbytes(64)),
    "k-20260501T100000Z",
    "alice@example.com",
    "Alice Example <alice.example+billing@mail.example.co.uk>",
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "2026-05-01T10:00:00.123456Z",
    "https://api.example.com/v1/orders?limit=50&cursor=abc#top",
    "mailto:alice@example.com",
    "/var/lib/aarm/receipts.sqlite",
    "payments.transfer",
    "aarm.fail_closed.opa_timeout",
    "10.0.0.12:8181",
    "+49 30 1234567",
    "v0.1.0-rc.2",
    "SELECT id, amount FROM orders WHERE customer_id = 'c-42' LIMIT 10",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
]


def contexts(secret: str) -> Iterator[str]:
    """Free text around a secret, the ways it shows up in an error, a reason, a message."""
    yield secret
    yield f"call to upstream failed after 3 retries: {secret}"
    yield f"upstream 401 ({secret}); giving up"
    yield f"blocked: the argument echoes '{secret}'"
    yield f'{{"detail": "{secret}"}}'


def assert_clear(out: str | bytes, shape: Shape, where: str) -> None:
    text = out.decode() if isinstance(out, bytes) else out
    for secret in shape.secrets:
        # JSON encodes a PEM's newline as \n, so look for the lines one by one too
        for needle in (secret, json.dumps(secret)[1:-1]):
            assert needle not in text, f"{shape.name} leaked in {where}: {needle[:24]}..."


# -- value redaction of the shapes themselves ---------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_every_shape_is_redacted_in_every_context(shape: Shape) -> None:
    for text in contexts(shape.text):
        out = redact_values(text)
        assert REDACTED in out
        assert_clear(out, shape, "free text")
        for kept in shape.keep:
            assert kept in out, f"{shape.name}: {kept!r} should stay"
        assert redact_values(out) == out  # idempotent
        assert redact_values(text, gated=False) == out  # the gates change nothing


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_every_shape_is_redacted_in_nested_json_values_and_keys(shape: Shape) -> None:
    doc = {
        "to": "DE89370400440532013000",
        "request": {
            "items": [{"note": f"use {shape.text} for the upload"}, 42, 1.5],
            "headers": {"X-Trace": shape.text},
            shape.text: "a secret as a member name",
        },
    }
    for out in (redact(doc), redact_strings(doc)):
        text = json.dumps(out)
        assert_clear(text, shape, "JSON")
        assert out["to"] == "DE89370400440532013000"
        assert out["request"]["items"][1:] == [42, 1.5]
    # value-only redaction keeps the member (under its redacted name); by-name redaction
    # also withholds its value when the secret reads like a secret's name (password = ...)
    assert "a secret as a member name" in redact_strings(doc)["request"].values()


def test_the_corpus_is_large_and_covers_what_the_issue_names() -> None:
    names = set(SHAPE_IDS)
    assert len(SHAPES) >= 45
    for needed in (
        "aws_access_key_id",
        "aws_secret_access_key_quoted",
        "github_classic_pat",
        "github_fine_grained_pat",
        "slack_bot",
        "stripe_secret_live",
        "stripe_restricted_live",
        "jwt_hs256",
        "pem_rsa",
        "pem_ec",
        "pem_openssh",
        "url_userinfo_https",
        "url_userinfo_postgresql",
        "authorization_bearer",
        "google_api_key",
        "twilio_account_sid",
        "sendgrid",
        "npm_token",
        "openai_project",
    ):
        assert needed in names


@pytest.mark.parametrize("text", NEGATIVES)
def test_negatives_are_untouched(text: str) -> None:
    assert redact_values(text) == text
    assert redact_values(text, gated=False) == text
    assert redact({"v": text, "list": [text]}) == {"v": text, "list": [text]}
    assert redact_strings({"v": text, text: 1}) == {"v": text, text: 1}


# -- receipts -------------------------------------------------------------------------


def _identity(*, agent: str = "agent-7", human: str = "alice@example.com") -> Identity:
    return Identity(tenant="acme", human=human, agent=agent, session_id="s-1")


def _request(params: dict[str, Any], *, agent: str = "agent-7") -> ActionRequest:
    return ActionRequest(
        request_id="req-1",
        identity=_identity(agent=agent),
        action=Action(tool="http", operation="post", parameters=params),
    )


def _params(shape: Shape) -> dict[str, Any]:
    return {
        "url": "https://api.example.com/v1/upload",
        "body": f"please use {shape.text} now",
        "nested": {"list": [{"deep": shape.text}], shape.text: True},
        "amount": 12.0,
    }


def _modify(shape: Shape) -> DecisionResult:
    return DecisionResult(
        decision=Decision.MODIFY,
        reasons=(
            Reason(
                code="secret_in_argument",
                rule_id="aarm.dlp.secret",
                message=f"argument 'body' carries {shape.text}",
            ),
        ),
        matched_rules=("aarm.dlp.secret",),
        risk_level=RiskLevel.HIGH,
        risk_score=0.8,
        modified_parameters={"body": f"sanitised {shape.text}", "amount": 12},
    )


@pytest.fixture
def store() -> MemoryReceiptStore:
    return MemoryReceiptStore()


@pytest.fixture
async def receipt_log(tmp_path: Path, store: MemoryReceiptStore) -> AsyncIterator[ReceiptLog]:
    log = ReceiptLog(store, KeyRing.open(tmp_path / "keys"))
    yield log
    await log.aclose()


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
async def test_decision_receipts_carry_no_secret(receipt_log: ReceiptLog, shape: Shape) -> None:
    request = _request(_params(shape))
    body = receipt_body.decision_receipt(
        receipt_id=f"r-{shape.name}",
        decision_id=f"d-{shape.name}",
        request=request,
        decision=_modify(shape),
        policy=PolicyVersion(revision="rev-1", hash="ab" * 32),
        context={"session": {"action_count": 1}},
        context_hash="cd" * 32,
        now_ns=1_777_600_000_000_000_000,
    )
    signed = await receipt_log.append(body)
    assert isinstance(signed, SignedReceipt)
    assert_clear(signed.canonical, shape, "decision receipt")
    action = signed["action"]
    # the hash still binds the FULL original parameters; only the clear copy is redacted
    assert action["parameters_sha256"] == parameters_hash(request.action.parameters)
    assert action["modified_parameters_sha256"] == parameters_hash(
        {"body": f"sanitised {shape.text}", "amount": 12}
    )
    assert action["parameters"]["url"] == "https://api.example.com/v1/upload"
    assert action["parameters"]["amount"] == 12
    assert signed["decision"]["reasons"][0]["code"] == "secret_in_argument"


class _Sessions:
    async def record_outcome(self, ident: Identity, **kw: Any) -> tuple[str, int]:
        return "ef" * 32, 0


class _Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
async def test_outcome_error_and_follow_up_texts_carry_no_secret(
    receipt_log: ReceiptLog, store: MemoryReceiptStore, shape: Shape
) -> None:
    followups = Followups(
        _Sessions(),  # type: ignore[arg-type]
        receipt_log,
        _Events(),
        Metrics(),
        clock_ns=lambda: 1_777_600_000_000_000_000,
        new_id=iter(f"r-{i}" for i in range(10)).__next__,
    )
    # the credential straddles the cut at MAX_ERROR_TEXT: it is redacted before the cut
    filler = "x" * (MAX_ERROR_TEXT - 20) + " "
    for error in (f"upstream said: {shape.text}", filler + shape.text):
        await followups.record_outcome(
            _identity(),
            decision_id="d-1",
            executed=False,
            classification=None,
            labels=(),
            texts=[],
            trust=None,
            output_digest="ab" * 32,
            error=error,
        )
    canonical = await store.export("acme", "s-1")
    assert len(canonical) == 2
    for text in canonical:
        assert_clear(text, shape, "outcome receipt")
        receipt = json.loads(text)
        assert receipt["outcome"]["output_hash"] == "ab" * 32
        assert receipt["outcome"]["context_hash"] == "ef" * 32
        assert len(receipt["outcome"]["error"]) <= MAX_ERROR_TEXT
    # an approver's reason and a deferral's facts: the settlement details
    approval = receipt_body.follow_up_receipt(
        receipt_id="r-approval",
        kind="approval",
        tenant="acme",
        session_id="s-1",
        decision_id="d-1",
        identity=identity_doc(_identity()),
        detail={
            "approver": "bob@example.com",
            "granted": True,
            "reason": f"ok, rotated {shape.text} afterwards",
            "identity_verified": True,
            "result": "GRANTED",
        },
        now_ns=1_777_600_000_000_000_001,
    )
    signed = await receipt_log.append(approval)
    assert isinstance(signed, SignedReceipt)
    assert_clear(signed.canonical, shape, "approval receipt")
    assert signed["approval"]["approver"] == "bob@example.com"
    assert signed["decision"]["result"] == "GRANTED"


# -- telemetry --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_telemetry_events_carry_no_secret(shape: Shape) -> None:
    echo = f"echo {shape.text}"
    result = DecisionResult(
        decision=Decision.DEFER,
        reasons=(Reason(code=echo, rule_id="aarm.r", message=echo),),
        matched_rules=(echo,),
        risk_level=RiskLevel.MEDIUM,
        deferral=Deferral(trigger=echo, context_needed=("x",), timeout_seconds=60),
    )
    request = _request(_params(shape), agent=f"agent {shape.text}")
    record = DecisionRecord(decision_id="d-1", request_id="req-1", result=result)
    events = decision_events(
        request, record, {"session": {"highest_classification": echo}}, 1_777_600_000_000_000_000
    )
    assert [e["type"] for e in events] == ["aarm.action", "aarm.decision"]
    assert events[0]["parameters_hash"] == parameters_hash(request.action.parameters)
    ctx = {
        "identity": identity_doc(_identity(human=echo)),
        "action": {"tool": "http", "operation": echo, "parameters": _params(shape)},
        "policy": {"revision": "rev-1", "hash": "ab" * 32},
    }
    events.append(
        approval_event(
            ticket_context=ctx,
            ticket_id="t-1",
            decision_id="d-1",
            risk_level="HIGH",
            created_ns=0,
            kind="approval",
            verdict="GRANTED",
            detail={"approver": echo},
            receipt_id="r-1",
            now_ns=1_000_000,
        )
    )
    for ev in events:
        assert_clear(json.dumps(ev, ensure_ascii=False), shape, ev["type"])
    assert events[2]["parameters_hash"] == parameters_hash(_params(shape))
    assert events[2]["policy"]["hash"] == "ab" * 32


# -- logs -------------------------------------------------------------------------------


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """The service's own log setup (JSON), writing to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    aarm_logging.setup("info", "json")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_log_records_carry_no_secret(service_log: io.StringIO, shape: Shape) -> None:
    log = logging.getLogger("aarm_pdp.decision.followups")
    log.warning("outcome error from enforcement point: %s", shape.text)
    log.error(f"upstream answered {shape.text}")  # a message built by hand
    try:
        raise RuntimeError(f"connect to {shape.text} failed")
    except RuntimeError:
        log.exception("receipt not stored")
    logging.getLogger("aiohttp.client").warning("GET %s", shape.text)
    token = aarm_logging.bind(agent_id=f"agent {shape.text}")
    try:
        log.info("bound fields")
    finally:
        aarm_logging.reset(token)
    lines = service_log.getvalue().splitlines()
    assert len(lines) == 5
    for line in lines:
        doc = json.loads(line)
        assert_clear(json.dumps(doc, ensure_ascii=False), shape, "log")
    assert "Traceback" in json.loads(lines[2])["exc"]
    assert REDACTED in json.loads(lines[2])["exc"]
