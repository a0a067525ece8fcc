"""The principals file: format, strict validation (all problems at once), lookups."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.auth import principals as principals_mod
from aarm_pdp.auth.principals import (
    AuthConfigError,
    Principal,
    PrincipalDirectory,
    PrincipalKind,
    PrincipalRecord,
    Role,
    load_principals,
    normalize_subject,
    parse_principals,
    token_hash,
)

from tests.support.pki import SigningKey, write_jwks

ISS = "https://login.example.test/"
TOKEN = "tok-" + "a" * 40


def good_doc() -> dict[str, Any]:
    return {
        "version": 1,
        "jwt_issuers": [{"issuer": ISS, "audience": "aarm-pdp", "jwks_file": "jwks.json"}],
        "principals": [
            {
                "id": "agent-platform",
                "kind": "service",
                "description": "the checkout agent platform",
                "roles": {"acme": ["enforcer"], "globex": ["enforcer"]},
                "tokens": [token_hash(TOKEN)],
                "mtls": [
                    {"spiffe_id": "spiffe://acme.test/agent-platform"},
                    {"subject": "CN=agent-platform,O=Acme"},
                ],
                "jwt": [{"issuer": ISS, "subject": "agent-platform"}],
            },
            {
                "id": "alice",
                "kind": "user",
                "roles": {"acme": ["approver", "auditor"]},
                "jwt": [{"issuer": ISS, "subject": "alice@acme.test"}],
            },
        ],
        "end_user_identity": {
            "acme": {
                "issuer": "https://idp.acme.test/",
                "audience": "agent-platform",
                "jwks_file": "jwks.json",
                "human_claim": "email",
            }
        },
    }


@pytest.fixture
def base(tmp_path: Path) -> Path:
    write_jwks(tmp_path / "jwks.json", SigningKey.generate("ES256", kid="k1"))
    return tmp_path


def write(base: Path, doc: Any) -> Path:
    path = base / "principals.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def problems_of(base: Path, doc: Any) -> list[str]:
    with pytest.raises(AuthConfigError) as info:
        load_principals(write(base, doc))
    assert str(base / "principals.json") in str(info.value)
    return list(info.value.problems)


def test_good_file_loads(base):
    d = load_principals(write(base, good_doc()))
    p = d.principals["agent-platform"]
    assert p.kind is PrincipalKind.SERVICE
    assert p.roles == {"acme": frozenset({Role.ENFORCER}), "globex": frozenset({Role.ENFORCER})}
    assert p.tenants_with(Role.ENFORCER) == {"acme", "globex"}
    assert p.tenants_with(Role.ADMIN) == frozenset()
    assert d.by_token(TOKEN) is p
    assert d.by_spiffe_id("spiffe://acme.test/agent-platform") is p
    assert d.by_subject("CN=agent-platform, O=Acme") is p  # normalised spelling
    assert d.by_jwt_subject(ISS, "agent-platform") is p
    assert d.by_jwt_subject(ISS, "alice@acme.test") is d.principals["alice"]
    assert set(d.issuers) == {ISS}
    assert d.end_user_identity["acme"].human_claim == "email"
    assert d.end_user_identity["acme"].required is True


def test_the_docstring_example_is_a_valid_file(tmp_path):
    doc_text = principals_mod.__doc__ or ""
    start = doc_text.index("    {\n")
    end = doc_text.index("\n    }\n", start) + 6
    doc = json.loads(doc_text[start:end])
    (tmp_path / "jwks").mkdir()
    key = SigningKey.generate("ES256")
    write_jwks(tmp_path / "jwks" / "login.json", key)
    write_jwks(tmp_path / "jwks" / "acme-idp.json", key)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    d = load_principals(path)
    assert set(d.principals) == {"agent-platform", "alice"}


def test_the_docs_example_is_a_valid_file(tmp_path):
    text = (Path(__file__).parents[2] / "docs" / "authentication.md").read_text()
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    (tmp_path / "jwks").mkdir()
    key = SigningKey.generate("ES256")
    write_jwks(tmp_path / "jwks" / "login.json", key)
    write_jwks(tmp_path / "jwks" / "acme-idp.json", key)
    path = tmp_path / "p.json"
    path.write_text(block)
    d = load_principals(path)
    assert set(d.principals) == {"agent-platform", "alice", "secops"}
    assert d.principals["secops"].tenants_with(Role.ADMIN) == {"acme", "globex"}


def test_unknown_token_and_hash_mismatch(base):
    d = load_principals(write(base, good_doc()))
    assert d.by_token(TOKEN + "x") is None
    assert d.by_token("") is None
    assert d.by_token(token_hash(TOKEN)) is None  # the hash is not the token


def test_token_hash_format():
    h = token_hash("s3cret")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", h)
    assert h == "sha256:" + "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"


def test_every_problem_is_reported_at_once(base):
    doc = good_doc()
    doc["extra"] = True
    doc["version"] = 2
    p0 = doc["principals"][0]
    p0["roles"] = {"acme": ["enforcr"], " acme": ["enforcer"], "unbound": ["auditor"]}
    p0["tokens"] = ["plaintext-token-do-not-store", "sha256:abc"]
    p0["mtls"] = [{"spiffe_id": "https://not-spiffe"}, {"subject": "not a dn"}, {"x": 1}]
    p0["jwt"] = [{"issuer": "https://unknown.test/", "subject": "s"}]
    doc["principals"].append({"id": "bad id!", "kind": "robot", "roles": {}, "colour": "red"})
    doc["principals"].append("not an object")
    doc["principals"].append({"id": "alice", "kind": "user", "roles": {"acme": ["auditor"]}})
    problems = problems_of(base, doc)
    text = "\n".join(problems)
    expected = [
        "unknown key 'extra'",
        "version: must be 1, not 2",
        "principals[0] 'agent-platform': roles.acme[0]: unknown role 'enforcr'",
        "tenant ' acme' is not a valid name",
        "tenant 'unbound' is reserved",
        "principals[0] 'agent-platform': tokens[0]: 'plaintex...' is not 'sha256:<64 hex>'",
        "tokens[1]",
        "spiffe_id 'https://not-spiffe' is not spiffe://",
        "subject 'not a dn' is not an RFC 4514 name",
        "mtls[2]",
        "principals[2] 'bad id!'",
        "kind 'robot' must be one of",
        "unknown key 'colour'",
        "roles must be a non-empty object",
        "no credential",
        "principals[3]: must be an object",
        "principals[4] 'alice'",
    ]
    for needle in expected:
        assert needle in text, f"{needle!r} not in\n{text}"
    # the clear token is never echoed in full
    assert "plaintext-token-do-not-store" not in text


def test_duplicates_are_reported(base):
    doc = good_doc()
    dup = dict(doc["principals"][0])
    dup["id"] = "copy"
    doc["principals"].append(dup)
    doc["principals"].append(dict(doc["principals"][1]))
    doc["jwt_issuers"].append(dict(doc["jwt_issuers"][0]))
    text = "\n".join(problems_of(base, doc))
    assert "principal 'alice': id listed twice" in text
    assert "token sha256:" in text
    assert "is also used by principal 'agent-platform'" in text
    assert "spiffe_id 'spiffe://acme.test/agent-platform' is also used" in text
    assert "subject 'CN=agent-platform,O=Acme' is also used" in text
    assert "jwt subject 'agent-platform'" in text
    assert f"issuer {ISS!r} listed twice" in text


def test_principal_jwt_issuer_must_be_declared(base):
    doc = good_doc()
    del doc["jwt_issuers"]
    text = "\n".join(problems_of(base, doc))
    assert f"jwt issuer {ISS!r} is not in jwt_issuers" in text


def test_end_user_identity_problems(base):
    doc = good_doc()
    doc["end_user_identity"] = {
        "acme": {"issuer": "x", "audience": "y", "jwks_file": "jwks.json", "required": "yes"},
        "acm": {"issuer": "x", "audience": "y", "jwks_file": "jwks.json"},
        "bad tenant": {},
        "globex": {"issuer": "x", "audience": "y", "jwks_file": "jwks.json", "human_claim": "a b"},
    }
    text = "\n".join(problems_of(base, doc))
    assert "end_user_identity.acme: required must be true or false" in text
    assert "end_user_identity.acm: no principal holds any role in this tenant" in text
    assert "tenant 'bad tenant' is not a valid name" in text
    assert "human_claim 'a b' is not a claim name" in text


def test_json_syntax_error_names_line_and_column(base):
    path = base / "principals.json"
    path.write_text('{\n  "version": 1,\n  "principals": [\n    {"id": "x",}\n  ]\n}\n')
    with pytest.raises(AuthConfigError, match=r"line 4 column \d+: invalid JSON"):
        load_principals(path)


def test_duplicate_json_keys_are_an_error(base):
    path = base / "principals.json"
    path.write_text('{"version": 1, "version": 1, "principals": []}')
    with pytest.raises(AuthConfigError, match="duplicate key 'version'"):
        load_principals(path)


@pytest.mark.parametrize("doc", [[], "x", None, {"version": 1, "principals": []}])
def test_shape_errors(doc):
    with pytest.raises(AuthConfigError):
        parse_principals(doc)


def test_missing_file():
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_principals(Path("/nonexistent/principals.json"))


def test_principal_is_frozen():
    p = Principal("x", PrincipalKind.SERVICE, {"acme": frozenset({Role.ADMIN})})
    with pytest.raises(AttributeError):
        p.id = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.roles["globex"] = frozenset()  # type: ignore[index]


def test_build_rejects_duplicates():
    p = Principal("x", PrincipalKind.SERVICE, {"acme": frozenset({Role.ADMIN})})
    q = Principal("y", PrincipalKind.SERVICE, {"acme": frozenset({Role.ADMIN})})
    h = token_hash("t" * 40)
    with pytest.raises(AuthConfigError, match="also used by principal 'x'"):
        PrincipalDirectory.build(
            [PrincipalRecord(p, token_hashes=(h,)), PrincipalRecord(q, token_hashes=(h,))]
        )


def test_normalize_subject():
    assert normalize_subject("CN=a,O=b") == normalize_subject("CN = a, O = b") == "CN=a,O=b"
    assert normalize_subject(r"CN=a\, b,O=c") == r"CN=a\, b,O=c"
    assert normalize_subject("CN=x = y") == "CN=x = y"
    with pytest.raises(ValueError, match="not an RFC 4514"):
        normalize_subject("garbage")


def test_four_eyes_sees_a_principal_under_its_jwt_subject() -> None:
    """An approver known as 'alice' whose JWT subject is alice@acme.example cannot
    approve a request acting for alice@acme.example (docs/threat-model.md gap 3)."""
    from aarm_pdp.approvals import tickets as tk
    from aarm_pdp.approvals.workflow import Workflow
    from aarm_pdp.auth.principals import parse_principals

    doc = {
        "version": 1,
        "jwt_issuers": [],
        "principals": [
            {
                "id": "alice",
                "kind": "user",
                "roles": {"acme": ["approver"]},
                "approver_groups": ["finance"],
                "mtls": [{"spiffe_id": "spiffe://acme.example/alice"}],
            }
        ],
    }
    directory = parse_principals(doc, source="<test>", base_dir=Path("."))
    alice = directory.principals["alice"]
    assert "spiffe://acme.example/alice" in alice.names()

    def ticket(human: str) -> tk.Ticket:
        return tk.Ticket(
            ticket_id="t",
            kind="approval",
            decision_id="d",
            tenant="acme",
            session_id="s",
            status=tk.PENDING,
            created_ns=0,
            deadline_ns=1,
            action_hash="",
            request_b64="",
            policy_hash="",
            policy_revision="",
            approvers=["finance"],
            context={"identity": {"human": human, "agent": "agent-7"}},
        )

    assert Workflow.may_resolve(alice, ticket("bob@acme.example"))
    assert not Workflow.may_resolve(alice, ticket("spiffe://acme.example/alice"))
    assert not Workflow.may_resolve(alice, ticket("alice"))
