"""The gateway's configuration: a JSON file, validated at start-up with every problem at once.

```json
{
  "decision_service": {"target": "127.0.0.1:50051", "token_file": "var/dev-token"},
  "identity": {"tenant": "default", "human": "alice@acme.example", "agent": "mcp-agent",
               "service": "mcp-gateway"},
  "step_up_timeout_seconds": 300,
  "servers": [
    {"name": "fs", "command": "npx", "args": ["@modelcontextprotocol/server-filesystem", "/srv"],
     "output_classification": "internal"},
    {"name": "notes", "url": "http://127.0.0.1:8000/mcp", "source_trust": "untrusted"}
  ]
}
```

Relative paths (token, CA, certificate, key, a server's ``cwd``) are resolved against
the file's directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aarm_pdp.gateway import naming

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TOKEN_FILE = Path("var/dev-token")
DEFAULT_RPC_TIMEOUT_SECONDS = 10.0
DEFAULT_STEP_UP_TIMEOUT_SECONDS = 300.0
DEFAULT_TENANT = "default"
DEFAULT_SERVICE = "aarm-mcp-gateway"
DEFAULT_AGENT = "mcp-client"
CLASSIFICATIONS = ("", "public", "internal", "confidential", "restricted")
TRUSTS = ("", "untrusted")


class GatewayConfigError(ValueError):
    """The configuration is invalid; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class DecisionServiceConfig:
    """How the gateway reaches the decision service (it is an enforcement point)."""

    target: str = DEFAULT_TARGET
    """host:port of aarm.v1."""
    token_file: Path | None = DEFAULT_TOKEN_FILE
    """Bearer token file (the enforcer principal's); None with mTLS only."""
    ca_file: Path | None = None
    """PEM CAs of a TLS target; None is plaintext (loopback)."""
    client_cert: Path | None = None
    """PEM client certificate for mTLS (with ``client_key``)."""
    client_key: Path | None = None
    """PEM key of ``client_cert``."""
    timeout_seconds: float = DEFAULT_RPC_TIMEOUT_SECONDS
    """Deadline of each unary call; an error or a missed deadline is DENY."""


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Who acts: the identity every Decide of this gateway carries."""

    tenant: str = DEFAULT_TENANT
    human: str = ""
    """The human on whose behalf the MCP client's agent acts (required)."""
    service: str = DEFAULT_SERVICE
    agent: str = DEFAULT_AGENT


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One upstream MCP server: a stdio command or a streamable HTTP URL."""

    name: str
    """Namespace of its tools (``[a-z][a-z0-9_]*``): the catalogue's ``tool`` half."""
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the child (on top of the MCP SDK's safe default set)."""
    cwd: Path | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """HTTP headers on every request to ``url`` (e.g. the upstream's own credential)."""
    output_classification: str = ""
    """Classification of this server's outputs ("" unspecified: the service counts RESTRICTED)."""
    source_trust: str = ""
    """"untrusted" lowers the catalogue's output trust for this server; "" keeps it."""

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole gateway configuration."""

    servers: tuple[UpstreamConfig, ...]
    decision_service: DecisionServiceConfig = DecisionServiceConfig()
    identity: IdentityConfig = IdentityConfig()
    step_up_timeout_seconds: float = DEFAULT_STEP_UP_TIMEOUT_SECONDS
    """Longest a STEP_UP call is held for its approval (the policy's timeout may be shorter)."""


_TOP = {"decision_service", "identity", "step_up_timeout_seconds", "servers"}
_DS = {"target", "token_file", "ca_file", "client_cert", "client_key", "timeout_seconds"}
_ID = {"tenant", "human", "service", "agent"}
_SRV = {
    "name",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "output_classification",
    "source_trust",
}


def load(path: Path) -> GatewayConfig:
    """Read and validate ``path``; :class:`GatewayConfigError` lists every problem."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise GatewayConfigError(f"{path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise GatewayConfigError(
            f"{path}: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse(doc, base=path.resolve().parent, source=str(path))


def parse(doc: Any, *, base: Path, source: str = "config") -> GatewayConfig:
    """A validated :class:`GatewayConfig` from a parsed document."""
    errors: list[str] = []
    if not isinstance(doc, dict):
        raise GatewayConfigError(f"{source}: the document must be an object")
    _unknown(doc, _TOP, "", errors)

    def rel(value: Any, where: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            errors.append(f"{where}: must be a non-empty string path")
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p

    raw_ds = doc.get("decision_service", {})
    ds = DecisionServiceConfig()
    if isinstance(raw_ds, dict):
        _unknown(raw_ds, _DS, "decision_service.", errors)
        target = raw_ds.get("target", DEFAULT_TARGET)
        if not isinstance(target, str) or ":" not in target:
            errors.append("decision_service.target: must be host:port")
            target = DEFAULT_TARGET
        timeout = _seconds(
            raw_ds.get("timeout_seconds", DEFAULT_RPC_TIMEOUT_SECONDS),
            "decision_service.timeout_seconds",
            errors,
        )
        token = (
            rel(raw_ds["token_file"], "decision_service.token_file")
            if "token_file" in raw_ds
            else base / DEFAULT_TOKEN_FILE
        )
        cert = rel(raw_ds.get("client_cert"), "decision_service.client_cert")
        key = rel(raw_ds.get("client_key"), "decision_service.client_key")
        if (cert is None) != (key is None):
            errors.append("decision_service: client_cert and client_key go together")
        ca = rel(raw_ds.get("ca_file"), "decision_service.ca_file")
        if cert is not None and ca is None:
            errors.append("decision_service: mTLS (client_cert) needs ca_file")
        if token is None and cert is None:
            errors.append("decision_service: a token_file or a client_cert is needed")
        ds = DecisionServiceConfig(target, token, ca, cert, key, timeout)
    else:
        errors.append("decision_service: must be an object")

    raw_id = doc.get("identity", {})
    ident = IdentityConfig()
    if isinstance(raw_id, dict):
        _unknown(raw_id, _ID, "identity.", errors)
        values = {k: raw_id.get(k, getattr(ident, k)) for k in _ID}
        for k, v in values.items():
            if not isinstance(v, str) or not v:
                errors.append(f"identity.{k}: must be a non-empty string")
                values[k] = ""
        ident = IdentityConfig(**values)
    else:
        errors.append("identity: must be an object")

    step_up = _seconds(
        doc.get("step_up_timeout_seconds", DEFAULT_STEP_UP_TIMEOUT_SECONDS),
        "step_up_timeout_seconds",
        errors,
    )

    servers: list[UpstreamConfig] = []
    raw_servers = doc.get("servers")
    if not isinstance(raw_servers, list) or not raw_servers:
        errors.append("servers: at least one upstream server is needed")
        raw_servers = []
    names: set[str] = set()
    for i, raw in enumerate(raw_servers):
        where = f"servers[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be an object")
            continue
        _unknown(raw, _SRV, f"{where}.", errors)
        name = raw.get("name", "")
        if not isinstance(name, str) or not naming.valid(name):
            errors.append(f"{where}.name: {name!r} is not [a-z][a-z0-9_]*")
            name = ""
        elif name in names:
            errors.append(f"{where}.name: {name!r} is used twice")
        names.add(name)
        where = f"servers[{i}] {name!r}"
        command, url = raw.get("command", ""), raw.get("url", "")
        if not isinstance(command, str) or not isinstance(url, str) or bool(command) == bool(url):
            errors.append(f"{where}: exactly one of command (stdio) or url (streamable HTTP)")
            command, url = "", ""
        if url and not url.startswith(("http://", "https://")):
            errors.append(f"{where}.url: must be http:// or https://")
        args = raw.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            errors.append(f"{where}.args: must be a list of strings")
            args = []
        env = _str_map(raw.get("env", {}), f"{where}.env", errors)
        headers = _str_map(raw.get("headers", {}), f"{where}.headers", errors)
        cls = raw.get("output_classification", "")
        if cls not in CLASSIFICATIONS:
            errors.append(f"{where}.output_classification: one of {', '.join(CLASSIFICATIONS[1:])}")
            cls = ""
        trust = raw.get("source_trust", "")
        if trust not in TRUSTS:
            errors.append(f'{where}.source_trust: only "untrusted" (trust is never raised)')
            trust = ""
        servers.append(
            UpstreamConfig(
                name=name,
                command=command,
                args=tuple(args),
                env=env,
                cwd=rel(raw.get("cwd"), f"{where}.cwd"),
                url=url,
                headers=headers,
                output_classification=cls,
                source_trust=trust,
            )
        )
    if errors:
        listed = "\n".join(f"  - {e}" for e in errors)
        raise GatewayConfigError(f"{source}: {len(errors)} problem(s):\n{listed}")
    return GatewayConfig(tuple(servers), ds, ident, step_up)


def _unknown(obj: dict[str, Any], known: set[str], prefix: str, errors: list[str]) -> None:
    errors.extend(f"{prefix}{k}: unknown key" for k in sorted(set(obj) - known))


def _seconds(value: Any, where: str, errors: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.append(f"{where}: must be a number of seconds")
        return 1.0
    if value <= 0:
        errors.append(f"{where}: must be above 0")
        return 1.0
    return float(value)


def _str_map(value: Any, where: str, errors: list[str]) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        errors.append(f"{where}: must be an object of strings")
        return {}
    return dict(value)
