"""Principals, their roles per tenant, and the principals file that declares them.

A *principal* is a caller of the API: an agent platform (enforcement point), an
approver, an identity admin, an auditor. It holds roles per tenant; the credentials
that establish it (static bearer tokens, mTLS identities, JWT subjects) are listed
with it. Roles come only from this file, never from a token's claims.

The principals file is JSON (no extra runtime dependency; the same format as the
JWKS files it points to; parsed strictly: unknown keys, duplicate keys and wrong
types are errors, and every problem is reported at once, naming its entry)::

    {
      "version": 1,
      "jwt_issuers": [
        {"issuer": "https://login.example.com/", "audience": "aarm-pdp",
         "jwks_file": "jwks/login.json", "algorithms": ["RS256", "ES256"],
         "leeway_seconds": 30}
      ],
      "principals": [
        {"id": "agent-platform", "kind": "service",
         "roles": {"acme": ["enforcer"], "globex": ["enforcer"]},
         "tokens": ["sha256:8151c1827a8f65ce33f92ecdf83bae61b2a74e0b4aa7bf80946e9c8965557b4a"],
         "mtls": [{"spiffe_id": "spiffe://acme.example/ns/agents/sa/platform"},
                  {"subject": "CN=agent-platform,O=Acme"}],
         "jwt": [{"issuer": "https://login.example.com/", "subject": "agent-platform"}]},
        {"id": "alice", "kind": "user", "roles": {"acme": ["approver", "auditor"]},
         "approver_groups": ["finance", "security"],
         "jwt": [{"issuer": "https://login.example.com/", "subject": "alice@acme.example"}]}
      ],
      "end_user_identity": {
        "acme": {"issuer": "https://login.acme.example/", "audience": "agent-platform",
                 "jwks_file": "jwks/acme-idp.json", "human_claim": "email", "required": true}
      }
    }

- ``tokens``: static bearer tokens, stored only as ``sha256:<64 hex>`` of the token's
  UTF-8 bytes (``printf %s "$TOKEN" | sha256sum``). Tokens must be high-entropy random
  strings (``python3 -c 'import secrets; print(secrets.token_urlsafe(32))'``, 256 bits):
  against such a secret an unsalted, fast SHA-256 is the right hash (there is nothing
  to brute-force, unlike a password), and the presented token's digest is compared
  with :func:`hmac.compare_digest` against every configured digest.
- ``mtls``: ``spiffe_id`` (the certificate's SPIFFE URI SAN) or ``subject`` (the
  certificate subject as RFC 4514, as ``openssl x509 -noout -subject -nameopt RFC2253``
  prints it; compared after normalisation).
- ``jwt``: the verified ``iss`` (one of ``jwt_issuers``) and ``sub`` of a bearer JWT.
- ``approver_groups``: for an approver, the policy's approver groups it answers for
  (a STEP_UP names the groups that may approve it, e.g. ``["finance"]``); ``"*"``
  answers for every group.
- ``end_user_identity``: per tenant, the IdP whose tokens prove the end user
  (:mod:`aarm_pdp.auth.idp`).

Relative ``jwks_file`` paths are relative to the principals file's directory.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509

from aarm_pdp.auth._problems import (
    AuthConfigError,
    Problems,
    check_keys,
    describe,
    read_json,
    string,
    tenant_problem,
)
from aarm_pdp.auth.idp import EndUserIdentity, parse_end_user_identity
from aarm_pdp.auth.jwks import TrustedIssuer, parse_issuer

FILE_VERSION = 1
TOKEN_HASH_PREFIX = "sha256:"  # noqa: S105 - a hash scheme, not a secret
_TOKEN_HASH_RE = re.compile(r"sha256:[0-9a-fA-F]{64}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:\-]{0,127}")
_SPIFFE_RE = re.compile(r"spiffe://[a-z0-9._\-]{1,255}(/[A-Za-z0-9._\-]+)+")


class Role(enum.StrEnum):
    """What a principal may do in a tenant."""

    ENFORCER = "enforcer"
    """An enforcement point: Decide, sessions, outcomes, deferral context."""
    APPROVER = "approver"
    """Reads and resolves approvals (STEP_UP)."""
    ADMIN = "admin"
    """Revokes identities."""
    AUDITOR = "auditor"
    """Reads receipts."""


class PrincipalKind(enum.StrEnum):
    """What sort of caller a principal is (for logs and audit, not for access)."""

    SERVICE = "service"
    USER = "user"
    DEVELOPMENT = "development"
    """The ``make run`` principal (:mod:`aarm_pdp.auth.devtoken`); not allowed in files."""


_FILE_KINDS = (PrincipalKind.SERVICE, PrincipalKind.USER)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and the roles it holds per tenant."""

    id: str
    kind: PrincipalKind
    roles: Mapping[str, frozenset[Role]]
    approver_groups: frozenset[str] = frozenset()
    """The policy's approver groups this principal answers for (``approvers`` of a
    STEP_UP); ``*`` is every group (the development principal)."""
    aliases: frozenset[str] = frozenset()
    """Other names of this principal (its JWT subjects, SPIFFE ids, certificate
    subjects): a request acting as any of them is this principal's own (four-eyes)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "approver_groups", frozenset(self.approver_groups))
        object.__setattr__(self, "aliases", frozenset(self.aliases))

    def names(self) -> frozenset[str]:
        """Its id and every alias."""
        return self.aliases | {self.id}

    def approves_for(self, groups: Iterable[str]) -> bool:
        """True when this principal is in one of the approver ``groups``."""
        wanted = set(groups)
        return bool(wanted) and ("*" in self.approver_groups or bool(self.approver_groups & wanted))

    def tenants_with(self, role: Role) -> frozenset[str]:
        """The tenants in which this principal holds ``role``."""
        return frozenset(t for t, roles in self.roles.items() if role in roles)


def token_hash(token: str) -> str:
    """``sha256:<hex>`` of a bearer token: the form the principals file stores."""
    return TOKEN_HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


# Spaces around unescaped separators and after attribute types, as
# ``openssl x509 -subject`` prints them ("CN = a, O = b").
_DN_SEP_SPACES = re.compile(r"\s*(?<!\\)([,+])\s*")
_DN_TYPE_SPACES = re.compile(r"(^|(?<!\\)[,+])([A-Za-z][A-Za-z0-9\-]*|\d+(?:\.\d+)+)\s*=\s*")


def normalize_subject(subject: str | x509.Name) -> str:
    """An RFC 4514 subject in one canonical spelling.

    Raises:
        ValueError: not an RFC 4514 distinguished name.
    """
    if isinstance(subject, x509.Name):
        return subject.rfc4514_string()
    try:
        text = _DN_SEP_SPACES.sub(r"\1", subject.strip())
        name = x509.Name.from_rfc4514_string(_DN_TYPE_SPACES.sub(r"\1\2=", text))
    except ValueError:
        raise ValueError("not an RFC 4514 distinguished name") from None
    return name.rfc4514_string()


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    """A principal with the credentials that establish it (one file entry)."""

    principal: Principal
    token_hashes: tuple[str, ...] = ()
    spiffe_ids: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    jwt_subjects: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PrincipalDirectory:
    """Every principal and the lookups from credentials to principals."""

    principals: Mapping[str, Principal]
    _tokens: tuple[tuple[bytes, str], ...] = ()
    _spiffe: Mapping[str, str] = field(default_factory=dict)
    _subjects: Mapping[str, str] = field(default_factory=dict)
    _jwt: Mapping[tuple[str, str], str] = field(default_factory=dict)
    issuers: Mapping[str, TrustedIssuer] = field(default_factory=dict)
    """Trusted JWT issuers for bearer JWTs, by ``iss``."""
    end_user_identity: Mapping[str, EndUserIdentity] = field(default_factory=dict)
    """Per tenant: how the end user's identity is verified (AARM R6)."""

    @classmethod
    def build(
        cls,
        records: Iterable[PrincipalRecord],
        *,
        issuers: Iterable[TrustedIssuer] = (),
        end_user_identity: Mapping[str, EndUserIdentity] | None = None,
        source: str = "<principals>",
    ) -> PrincipalDirectory:
        """Index ``records``; duplicate ids or credentials raise :class:`AuthConfigError`."""
        problems = Problems(source)
        directory = _index(list(records), list(issuers), dict(end_user_identity or {}), problems)
        problems.raise_if_any()
        return directory

    def by_token(self, token: str) -> Principal | None:
        """The principal whose static token this is.

        Every configured digest is compared (constant time each, no early exit).
        """
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for known, pid in self._tokens:
            if hmac.compare_digest(known, digest):
                found = pid
        return self.principals[found] if found is not None else None

    def by_spiffe_id(self, spiffe_id: str) -> Principal | None:
        pid = self._spiffe.get(spiffe_id)
        return self.principals[pid] if pid is not None else None

    def by_subject(self, subject: str | x509.Name) -> Principal | None:
        try:
            key = normalize_subject(subject)
        except ValueError:
            return None
        pid = self._subjects.get(key)
        return self.principals[pid] if pid is not None else None

    def by_jwt_subject(self, issuer: str, subject: str) -> Principal | None:
        pid = self._jwt.get((issuer, subject))
        return self.principals[pid] if pid is not None else None


def _index(
    records: list[PrincipalRecord],
    issuers: list[TrustedIssuer],
    idp: dict[str, EndUserIdentity],
    problems: Problems,
) -> PrincipalDirectory:
    principals: dict[str, Principal] = {}
    tokens: dict[str, str] = {}
    spiffe: dict[str, str] = {}
    subjects: dict[str, str] = {}
    jwt_subjects: dict[tuple[str, str], str] = {}
    by_iss: dict[str, TrustedIssuer] = {}
    for iss in issuers:
        if iss.issuer in by_iss:
            problems.add("jwt_issuers", f"issuer {iss.issuer!r} listed twice")
        by_iss[iss.issuer] = iss

    def claim(table: dict[Any, str], key: Any, pid: str, what: str) -> None:
        other = table.get(key)
        if other is not None and other != pid:
            problems.add(f"principal {pid!r}", f"{what} is also used by principal {other!r}")
        elif other == pid:
            problems.add(f"principal {pid!r}", f"{what} listed twice")
        table[key] = pid

    for rec in records:
        pid = rec.principal.id
        if pid in principals:
            problems.add(f"principal {pid!r}", "id listed twice")
        principals[pid] = rec.principal
        for h in rec.token_hashes:
            claim(tokens, h.lower(), pid, f"token {h[:15]}...")
        for s in rec.spiffe_ids:
            claim(spiffe, s, pid, f"spiffe_id {s!r}")
        for subj in rec.subjects:
            try:
                claim(subjects, normalize_subject(subj), pid, f"subject {subj!r}")
            except ValueError as exc:
                problems.add(f"principal {pid!r}", f"subject {subj!r} is not RFC 4514 ({exc})")
        for iss_sub in rec.jwt_subjects:
            if iss_sub[0] not in by_iss:
                problems.add(
                    f"principal {pid!r}", f"jwt issuer {iss_sub[0]!r} is not in jwt_issuers"
                )
            claim(jwt_subjects, iss_sub, pid, f"jwt subject {iss_sub[1]!r} of {iss_sub[0]!r}")
    known_tenants = {t for p in principals.values() for t in p.roles}
    for tenant in sorted(set(idp) - known_tenants):
        problems.add(
            f"end_user_identity.{tenant}", "no principal holds any role in this tenant (a typo?)"
        )
    token_table = tuple(
        (bytes.fromhex(h.removeprefix(TOKEN_HASH_PREFIX)), pid) for h, pid in tokens.items()
    )
    return PrincipalDirectory(
        principals=MappingProxyType(principals),
        _tokens=token_table,
        _spiffe=MappingProxyType(spiffe),
        _subjects=MappingProxyType(subjects),
        _jwt=MappingProxyType(jwt_subjects),
        issuers=MappingProxyType(by_iss),
        end_user_identity=MappingProxyType(idp),
    )


# ---------------------------------------------------------------- the file

_TOP_REQUIRED = frozenset({"version", "principals"})
_TOP_OPTIONAL = frozenset({"jwt_issuers", "end_user_identity"})
_ENTRY_REQUIRED = frozenset({"id", "kind", "roles"})
_ENTRY_OPTIONAL = frozenset({"tokens", "mtls", "jwt", "description", "approver_groups"})
_GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def load_principals(path: Path) -> PrincipalDirectory:
    """Read and validate a principals file; :class:`AuthConfigError` lists every problem."""
    return parse_principals(read_json(path), source=str(path), base_dir=path.parent)


def parse_principals(
    doc: Any, *, source: str = "<principals>", base_dir: Path = Path()
) -> PrincipalDirectory:
    """Validate a parsed principals document (see the module docstring)."""
    problems = Problems(source)
    if not isinstance(doc, dict):
        problems.add("", "the file must hold a JSON object")
        problems.raise_if_any()
    check_keys(doc, "", problems, required=_TOP_REQUIRED, optional=_TOP_OPTIONAL)
    if "version" in doc and (doc["version"] != FILE_VERSION or isinstance(doc["version"], bool)):
        problems.add("version", f"must be {FILE_VERSION}, not {doc['version']!r}")

    issuers: list[TrustedIssuer] = []
    raw_issuers = doc.get("jwt_issuers", [])
    if not isinstance(raw_issuers, list):
        problems.add("jwt_issuers", "must be a list")
        raw_issuers = []
    for i, entry in enumerate(raw_issuers):
        where = describe(i, entry, "jwt_issuers", key="issuer")
        iss = parse_issuer(entry, where, problems, base_dir)
        if iss is not None:
            issuers.append(iss)

    records: list[PrincipalRecord] = []
    raw = doc.get("principals", [])
    if not isinstance(raw, list) or not raw:
        problems.add("principals", "must be a non-empty list")
        raw = raw if isinstance(raw, list) else []
    for i, entry in enumerate(raw):
        rec = _parse_entry(entry, describe(i, entry, "principals"), problems)
        if rec is not None:
            records.append(rec)

    idp: dict[str, EndUserIdentity] = {}
    if "end_user_identity" in doc:
        idp = parse_end_user_identity(doc["end_user_identity"], problems, base_dir)

    directory = _index(records, issuers, idp, problems)
    problems.raise_if_any()
    return directory


def _string_list(entry: Mapping[str, Any], key: str, where: str, problems: Problems) -> list[Any]:
    value = entry.get(key, [])
    if not isinstance(value, list):
        problems.add(where, f"{key} must be a list")
        return []
    return value


def _parse_entry(entry: Any, where: str, problems: Problems) -> PrincipalRecord | None:
    if not isinstance(entry, dict):
        problems.add(where, "must be an object")
        return None
    before = len(problems.items)
    check_keys(entry, where, problems, required=_ENTRY_REQUIRED, optional=_ENTRY_OPTIONAL)
    pid = string(entry, "id", where, problems)
    if pid is not None and not _ID_RE.fullmatch(pid):
        problems.add(where, f"id {pid!r}: letters, digits and ._@:- only, at most 128")
    kind: PrincipalKind | None = None
    raw_kind = entry.get("kind")
    if raw_kind in [k.value for k in _FILE_KINDS]:
        kind = PrincipalKind(raw_kind)
    elif "kind" in entry:
        problems.add(where, f"kind {raw_kind!r} must be one of {[k.value for k in _FILE_KINDS]}")
    if "description" in entry and not isinstance(entry["description"], str):
        problems.add(where, "description must be a string")

    roles = _parse_roles(entry.get("roles"), where, problems) if "roles" in entry else {}
    hashes: list[str] = []
    for j, h in enumerate(_string_list(entry, "tokens", where, problems)):
        if isinstance(h, str) and _TOKEN_HASH_RE.fullmatch(h):
            hashes.append(h.lower())
        else:
            shown = repr(h) if not isinstance(h, str) or len(h) < 12 else repr(h[:8] + "...")
            problems.add(
                f"{where}: tokens[{j}]",
                f"{shown} is not 'sha256:<64 hex>' (store the token's hash, never the token: "
                'printf %s "$TOKEN" | sha256sum)',
            )
    spiffe_ids: list[str] = []
    subjects: list[str] = []
    for j, m in enumerate(_string_list(entry, "mtls", where, problems)):
        at = f"{where}: mtls[{j}]"
        if not isinstance(m, dict) or len(m) != 1 or not ({"spiffe_id", "subject"} & set(m)):
            problems.add(at, 'must be {"spiffe_id": "spiffe://..."} or {"subject": "CN=..."}')
            continue
        if "spiffe_id" in m:
            s = m["spiffe_id"]
            if isinstance(s, str) and _SPIFFE_RE.fullmatch(s):
                spiffe_ids.append(s)
            else:
                problems.add(at, f"spiffe_id {s!r} is not spiffe://<trust-domain>/<path>")
        else:
            s = m["subject"]
            try:
                if not isinstance(s, str) or not s.strip():
                    raise ValueError("empty")
                if not normalize_subject(s):
                    raise ValueError("no attributes")
                subjects.append(s)
            except ValueError as exc:
                problems.add(at, f"subject {s!r} is not an RFC 4514 name ({exc})")
    jwt_subjects: list[tuple[str, str]] = []
    for j, js in enumerate(_string_list(entry, "jwt", where, problems)):
        at = f"{where}: jwt[{j}]"
        if not isinstance(js, dict):
            problems.add(at, 'must be {"issuer": ..., "subject": ...}')
            continue
        check_keys(js, at, problems, required=frozenset({"issuer", "subject"}))
        iss, sub = string(js, "issuer", at, problems), string(js, "subject", at, problems)
        if iss is not None and sub is not None:
            jwt_subjects.append((iss, sub))
    groups: list[str] = []
    for j, g in enumerate(_string_list(entry, "approver_groups", where, problems)):
        if isinstance(g, str) and (g == "*" or _GROUP_RE.fullmatch(g)):
            groups.append(g)
        else:
            problems.add(f"{where}: approver_groups[{j}]", f"{g!r} is not a group name")
    if groups and not any(Role.APPROVER in r for r in roles.values()):
        problems.add(where, "approver_groups given, but the approver role in no tenant")
    if not any(entry.get(k) for k in ("tokens", "mtls", "jwt")):
        problems.add(where, "no credential: give tokens, mtls or jwt")
    if len(problems.items) > before or pid is None or kind is None:
        return None
    return PrincipalRecord(
        Principal(
            pid,
            kind,
            roles,
            frozenset(groups),
            frozenset([*spiffe_ids, *subjects, *(sub for _, sub in jwt_subjects)]),
        ),
        tuple(hashes),
        tuple(spiffe_ids),
        tuple(subjects),
        tuple(jwt_subjects),
    )


def _parse_roles(value: Any, where: str, problems: Problems) -> dict[str, frozenset[Role]]:
    if not isinstance(value, dict) or not value:
        problems.add(where, 'roles must be a non-empty object {"<tenant>": ["<role>", ...]}')
        return {}
    out: dict[str, frozenset[Role]] = {}
    valid = sorted(r.value for r in Role)
    for tenant, names in value.items():
        bad = tenant_problem(tenant)
        if bad:
            problems.add(f"{where}: roles", bad)
            continue
        if not isinstance(names, list) or not names:
            problems.add(f"{where}: roles.{tenant}", "must be a non-empty list of roles")
            continue
        roles: set[Role] = set()
        for k, name in enumerate(names):
            if name in valid:
                if Role(name) in roles:
                    problems.add(f"{where}: roles.{tenant}[{k}]", f"role {name!r} listed twice")
                roles.add(Role(name))
            else:
                problems.add(
                    f"{where}: roles.{tenant}[{k}]",
                    f"unknown role {name!r} (one of {', '.join(valid)})",
                )
        out[tenant] = frozenset(roles)
    return out


__all__ = [
    "AuthConfigError",
    "Principal",
    "PrincipalDirectory",
    "PrincipalKind",
    "PrincipalRecord",
    "Role",
    "load_principals",
    "normalize_subject",
    "parse_principals",
    "token_hash",
]
