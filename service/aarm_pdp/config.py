"""Typed configuration: one frozen section per subsystem, defaults as named constants.

:func:`Config.validate` checks every section and reports all problems at once.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import ssl
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_GRPC_LISTEN = "127.0.0.1:50051"
"""Loopback: a non-loopback listener needs TLS and a principals file (or says insecure)."""
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
INFLIGHT_PER_CPU = 32
"""Decisions admitted per CPU: enough to keep the CPUs busy while each waits ~100 ms on
OPA or a store; at the limit an admitted call queues at most limit / throughput
(~130 ms at 64 on 2 cores, 500 decisions/s: docs/performance.md, "Admission control")."""
MIN_INFLIGHT = 16
INFLIGHT_BYTES_REQUESTS = 1
"""Request bytes in flight by default: one largest request's worth. Big requests are CPU
work on the one event loop (~0.37 us per byte: a 1 MiB Decide takes ~0.4 s), so more of
them at once only queue; small requests never come near it (docs/performance.md)."""
MAX_CONNECTIONS_CAP = 4096
DEFAULT_STREAMS_PER_CONNECTION = 1000
DEFAULT_CONNECTION_IDLE_SECONDS = 300.0
DEFAULT_CONNECTION_AGE_SECONDS = 3600.0
DEFAULT_HANDSHAKE_TIMEOUT_SECONDS = 10.0
EVENT_LOOPS = ("uvloop", "asyncio")
DEFAULT_OPA_TIMEOUT_SECONDS = 1.0
DEFAULT_OPA_STARTUP_SECONDS = 20.0
DEFAULT_OPA_MAX_CONNECTIONS = 64
DEFAULT_POLICY_REFRESH_SECONDS = 10.0
DEFAULT_POLICY_RELOAD_SECONDS = 2.0
"""How often a managed sidecar fingerprints its layers for a hot reload (0: never)."""
SIGNING_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DEFAULT_HEALTH_INTERVAL_SECONDS = 1.0
DEFAULT_ENTRYPOINT = "aarm/main/decision"
DEFAULT_IDEMPOTENCY_ENTRIES = 100_000
DEFAULT_IDEMPOTENCY_TTL_SECONDS = 600
MIB = 1 << 20
# Memory bounds (issue 14 item 2; docs/performance.md, "Memory bounds"), sized for a
# 2-CPU, 23 GiB host: all of them full is ~1.5 GiB of encoded bytes, ~3 GiB resident.
DEFAULT_IDEMPOTENCY_TENANT_BYTES = 64 * MIB
DEFAULT_IDEMPOTENCY_TOTAL_BYTES = 256 * MIB
DEFAULT_TICKET_TENANT_BYTES = 64 * MIB
DEFAULT_TICKET_TENANT_ENTRIES = 10_000
DEFAULT_TICKET_TOTAL_BYTES = 256 * MIB
DEFAULT_SESSION_STATE_BYTES = 256 << 10
DEFAULT_SESSION_LOG_ENTRIES = 1024
DEFAULT_SESSION_LOG_BYTES = 512 << 10
DEFAULT_SESSION_TENANT_BYTES = 512 * MIB
DEFAULT_SESSION_TENANT_ENTRIES = 100_000
DEFAULT_SESSION_TOTAL_BYTES = 1024 * MIB
DEFAULT_SESSION_EVICT_IDLE_SECONDS = 300
DEFAULT_SESSION_TTL_SECONDS = 3600
DEFAULT_ARTIFACT_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_STORE_TIMEOUT_SECONDS = 0.5
DEFAULT_APPROVAL_TOKEN_TTL_SECONDS = 300
DEFAULT_RECEIPT_STORE = "var/receipts.db"
DEFAULT_TELEMETRY_FILE: Path | None = Path("var/telemetry.jsonl")
DEFAULT_KEY_DIR = Path("var/keys")
DEFAULT_MAX_DEFER_ATTEMPTS = 5
DEFAULT_SWEEP_INTERVAL_SECONDS = 0.5

ENTRYPOINT_RE = re.compile(r"[a-z_][a-z0-9_]*(/[a-z_][a-z0-9_]*)*")
"""An OPA Data API path below ``/v1/data/``: slash-separated Rego identifiers."""
_LISTEN_RE = re.compile(r"(\[[0-9a-fA-F:]*\]|[A-Za-z0-9.\-]*):\d{1,5}")


class ConfigError(ValueError):
    """One or more configuration problems, all listed in the message."""


def cpus() -> int:
    """CPUs this process may run on (its affinity mask; a cgroup quota is not seen)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_inflight() -> int:
    """Decisions (and other calls) admitted at once: :data:`INFLIGHT_PER_CPU` per CPU."""
    return max(MIN_INFLIGHT, INFLIGHT_PER_CPU * cpus())


def default_max_connections() -> int:
    """Half the descriptor limit (the rest for OPA, stores, files), at most 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CAP
    return max(16, min(MAX_CONNECTIONS_CAP, soft // 2))


def default_policy_dir() -> Path | None:
    """The ``rego/`` directory of the checkout this package runs from, if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "rego"
        if (candidate / ".manifest").is_file():
            return candidate
    return None


def _find_opa() -> str:
    env = os.environ.get("AARM_PDP_OPA_BIN")
    if env:
        return env
    policy_dir = default_policy_dir()
    if policy_dir is not None:
        local = policy_dir.parent / "bin" / "opa"
        if local.is_file():
            return str(local)
    return shutil.which("opa") or "opa"


def _default_policy_paths() -> tuple[Path, ...]:
    found = default_policy_dir()
    return (found,) if found is not None else ()


def _auth_problems(a: AuthConfig, listen: str) -> list[str]:
    problems: list[str] = []
    if (a.tls_cert is None) != (a.tls_key is None):
        problems.append("auth.tls_cert and auth.tls_key must be given together")
    if a.tls_client_ca is not None and a.tls_cert is None:
        problems.append("auth.tls_client_ca (mutual TLS) needs auth.tls_cert and auth.tls_key")
    for name in ("principals_file", "tls_cert", "tls_key", "tls_client_ca"):
        path: Path | None = getattr(a, name)
        if path is not None and not path.is_file():
            problems.append(f"auth.{name}: {path} is not a readable file")
    loopback = is_loopback_listen(listen)
    if not loopback and not a.tls and not a.insecure_listen:
        problems.append(
            f"server.listen {listen!r} is not loopback: serve TLS (auth.tls_cert, auth.tls_key)"
            " or say auth.insecure_listen explicitly"
        )
    if not loopback and a.principals_file is None:
        problems.append(
            f"server.listen {listen!r} is not loopback: configure auth.principals_file "
            "(the development principal serves loopback only)"
        )
    return problems


def _server_limit_problems(s: ServerConfig) -> list[str]:
    """Admission and connection limits: positive, and the byte budget holds one request."""
    problems: list[str] = []
    for name in (
        "max_inflight_decisions",
        "max_inflight_calls",
        "max_inflight_watches",
        "max_inflight_per_stream",
        "max_connections",
        "max_streams_per_connection",
    ):
        if getattr(s, name) < 1:
            problems.append(f"server.{name} must be >= 1")
    if s.max_inflight_bytes < 0:
        problems.append("server.max_inflight_bytes must be >= 0 (0: the default)")
    if s.max_inflight_bytes and s.max_inflight_bytes < s.max_request_bytes:
        problems.append(
            "server.max_inflight_bytes must be >= server.max_request_bytes "
            "(room for one largest request)"
        )
    if s.connection_idle_seconds <= 0 or s.handshake_timeout_seconds <= 0:
        problems.append("server.connection_idle_seconds and handshake_timeout_seconds must be > 0")
    if s.connection_age_seconds < 0:
        problems.append("server.connection_age_seconds must be >= 0 (0: never)")
    return problems


_OPA_TLS_FILES = ("ca_file", "client_cert", "client_key")


def _bound_problems(c: Config) -> list[str]:
    """Memory bounds: positive, and no tenant budget above its store's."""
    sc, ap, dc = c.session, c.approvals, c.decision
    out = [
        f"{name} must be >= 1"
        for name, value in (
            ("session.max_state_bytes", sc.max_state_bytes),
            ("session.log_window_entries", sc.log_window_entries),
            ("session.log_window_bytes", sc.log_window_bytes),
            ("session.tenant_sessions", sc.tenant_sessions),
            ("session.evict_idle_seconds", sc.evict_idle_seconds),
            ("approvals.ticket_tenant_entries", ap.ticket_tenant_entries),
        )
        if value < 1
    ]
    for tenant, total, what in (
        (dc.idempotency_tenant_bytes, dc.idempotency_total_bytes, "decision.idempotency"),
        (sc.tenant_bytes, sc.total_bytes, "session"),
        (ap.ticket_tenant_bytes, ap.ticket_total_bytes, "approvals.ticket"),
    ):
        if not 1 <= tenant <= total:
            out.append(f"{what}: need 1 <= tenant bytes <= total bytes")
    if sc.state_version not in (1, 2):
        out.append("session.state_version must be 1 (JSON) or 2 (compact)")
    if sc.tenant_bytes < sc.max_state_bytes + sc.log_window_bytes:
        out.append("session.tenant_bytes must hold one session's state and log window")
    return out


def _opa_tls_problems(o: OpaConfig) -> list[str]:
    """The TLS files of an https:// OPA: given together, readable, loadable as PEM."""
    if o.url is None or not o.url.startswith("https://"):
        given = [f"opa.{name}" for name in _OPA_TLS_FILES if getattr(o, name) is not None]
        return [f"{', '.join(given)}: only for an https:// opa.url"] if given else []
    problems: list[str] = []
    if (o.client_cert is None) != (o.client_key is None):
        problems.append("opa.client_cert and opa.client_key must be given together")
    for name in _OPA_TLS_FILES:
        path: Path | None = getattr(o, name)
        if path is None:
            continue
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            problems.append(f"opa.{name}: {path} is not readable ({exc.strerror or exc})")
    if problems:
        return problems
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # what the OPA client will load, no more
    if o.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(o.ca_file))
        except ssl.SSLError as exc:
            problems.append(f"opa.ca_file: {o.ca_file} holds no PEM CA certificate ({exc})")
    if o.client_cert is not None and o.client_key is not None:
        try:
            ctx.load_cert_chain(str(o.client_cert), str(o.client_key), password=lambda: b"")
        except ssl.SSLError as exc:
            problems.append(
                f"opa.client_cert/client_key: {o.client_cert} with {o.client_key} is not an "
                f"unencrypted PEM certificate and its key ({exc})"
            )
    return problems


@dataclass(frozen=True)
class ServerConfig:
    """The gRPC server."""

    listen: str = DEFAULT_GRPC_LISTEN
    """host:port for gRPC; port 0 picks a free one."""
    reflection: bool = True
    """Serve gRPC server reflection (so grpcurl needs no proto files)."""
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    """How long in-flight calls may finish after SIGTERM."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Largest DecideRequest accepted; larger is INVALID_ARGUMENT."""
    event_loop: str = "uvloop"
    """``uvloop`` (measured ~10 % less CPU per Decide, docs/performance.md) or ``asyncio``."""
    max_inflight_decisions: int = field(default_factory=default_inflight)
    """Decide calls admitted at once (32 per CPU, at least 16); beyond it RESOURCE_EXHAUSTED
    ``overloaded``. A call whose client hung up keeps its slot until its decision is made."""
    max_inflight_calls: int = field(default_factory=default_inflight)
    """The other aarm.v1 calls (sessions, approvals, deferrals, receipts) admitted at once:
    their own budget, so approvers get through while Decide is saturated."""
    max_inflight_watches: int = 1024
    """WatchApproval streams open at once (agents waiting for an approver): a budget of
    their own, so waiting agents never take the slots ResolveApproval needs."""
    max_inflight_per_stream: int = 32
    """Decisions in flight on one DecideStream; a message past it (or past
    ``max_inflight_decisions``, which its messages count against) is answered
    RESOURCE_EXHAUSTED ``overloaded`` on the stream."""
    max_inflight_bytes: int = 0
    """Request bytes in flight over all aarm.v1 calls; 0: one largest request
    (``max_request_bytes``). Must hold at least one largest request."""
    max_connections: int = field(default_factory=default_max_connections)
    """Client connections open at once (half the descriptor limit, at most 4096); more are
    closed as they are accepted."""
    max_streams_per_connection: int = DEFAULT_STREAMS_PER_CONNECTION
    """Concurrent calls on one connection (HTTP/2 streams); a stream past it is refused
    (REFUSED_STREAM: UNAVAILABLE, never processed, safe to retry). Far above the admission
    limits, so an overloaded client sees RESOURCE_EXHAUSTED ``overloaded`` instead."""
    connection_idle_seconds: float = DEFAULT_CONNECTION_IDLE_SECONDS
    """A connection without calls for this long is closed (GOAWAY; clients reconnect)."""
    connection_age_seconds: float = DEFAULT_CONNECTION_AGE_SECONDS
    """Connections are closed after this long (±10 %, 30 s grace for calls in flight);
    0: never."""
    handshake_timeout_seconds: float = DEFAULT_HANDSHAKE_TIMEOUT_SECONDS
    """A connection that has not finished its TLS/HTTP/2 handshake by then is closed."""

    @property
    def inflight_bytes(self) -> int:
        """The request-byte budget in force (``max_inflight_bytes`` or its default)."""
        return self.max_inflight_bytes or INFLIGHT_BYTES_REQUESTS * self.max_request_bytes


@dataclass(frozen=True)
class OpaConfig:
    """The policy engine: a managed sidecar (default) or an external one."""

    url: str | None = None
    """External OPA (http(s)://host:port or unix:///path); None starts a managed sidecar."""
    ca_file: Path | None = None
    """PEM CAs trusted for an https:// OPA's certificate; None: the system trust store."""
    client_cert: Path | None = None
    """PEM client certificate presented to an https:// OPA (mutual TLS); needs client_key."""
    client_key: Path | None = None
    """The unencrypted PEM private key of client_cert."""
    binary: str = field(default_factory=_find_opa)
    """The opa executable for the managed sidecar."""
    policy_paths: tuple[Path, ...] = field(default_factory=_default_policy_paths)
    """Policy directories or bundle files for the managed sidecar (default: ./rego)."""
    entrypoint: str = DEFAULT_ENTRYPOINT
    """Data API path of the decision rule."""
    timeout_seconds: float = DEFAULT_OPA_TIMEOUT_SECONDS
    """Deadline for one decision query; past it the answer is DENY (opa_timeout)."""
    startup_timeout_seconds: float = DEFAULT_OPA_STARTUP_SECONDS
    """How long OPA may take to load its policy at start."""
    max_connections: int = DEFAULT_OPA_MAX_CONNECTIONS
    """Pooled keep-alive connections to OPA."""
    policy_refresh_seconds: float = DEFAULT_POLICY_REFRESH_SECONDS
    """How often the policy revision and hash are re-read."""
    health_interval_seconds: float = DEFAULT_HEALTH_INTERVAL_SECONDS
    """How often OPA health is probed for readiness."""
    reload_seconds: float = DEFAULT_POLICY_RELOAD_SECONDS
    """Managed sidecar: how often the layers are fingerprinted; a settled change is
    hot-reloaded (docs/policy-lifecycle.md). 0 switches hot reload off."""
    verification_key: Path | None = None
    """Managed sidecar: PEM public key every layer's bundle signature must verify with
    (``opa run --verification-key``); None loads unsigned layers."""
    verification_key_id: str = "default"
    """The key id the signatures name (``opa build --signing-key ... --key-id``)."""
    signing_alg: str = "RS256"
    """The signatures' algorithm (RS256, PS256, ES256, ...)."""
    shadow_policy_paths: tuple[Path, ...] = ()
    """A shadow policy (the pack first, then overlays) on an OPA of its own: every
    decision's input is evaluated on it too and the verdicts counted
    (aarm_shadow_verdicts_total), never enforced; hot-reloaded like the live one.
    Empty: none (docs/policy-lifecycle.md)."""


@dataclass(frozen=True)
class DecisionConfig:
    """The decision engine."""

    idempotency_entries: int = DEFAULT_IDEMPOTENCY_ENTRIES
    """request_id cache size."""
    idempotency_ttl_seconds: int = DEFAULT_IDEMPOTENCY_TTL_SECONDS
    """How long a request_id replays its decision."""
    idempotency_tenant_bytes: int = DEFAULT_IDEMPOTENCY_TENANT_BYTES
    """Encoded bytes of one tenant's cached decisions; past it its oldest are evicted."""
    idempotency_total_bytes: int = DEFAULT_IDEMPOTENCY_TOTAL_BYTES
    """Encoded bytes of every tenant's cached decisions; past it the oldest are evicted."""


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on one Decide request, checked before anything else sees it."""

    max_depth: int = 32
    max_nodes: int = 10_000
    max_string_bytes: int = 65_536
    max_key_bytes: int = 256
    max_list_items: int = 1_000
    max_facts: int = 64
    max_risk_signals: int = 32
    max_depends_on: int = 64
    max_roles: int = 64
    max_delegations: int = 16


@dataclass(frozen=True)
class SessionConfig:
    """Session context: where it lives and how long."""

    state: str = "memory"
    """'memory' (one process) or a redis:// URL shared by every replica."""
    ttl_seconds: int = DEFAULT_SESSION_TTL_SECONDS
    """Idle time after which a session is forgotten."""
    artifact_ttl_seconds: int = DEFAULT_ARTIFACT_TTL_SECONDS
    """How long a tenant remembers the classification written to an artifact."""
    store_timeout_seconds: float = DEFAULT_STORE_TIMEOUT_SECONDS
    """Deadline of one store operation; past it the decision is DENY."""
    max_state_bytes: int = DEFAULT_SESSION_STATE_BYTES
    """One session's state blob; a decision that would grow it past this is DENY."""
    log_window_entries: int = DEFAULT_SESSION_LOG_ENTRIES
    """Context-log entries kept per session (the newest); the state's running hash
    (``log_head``) still covers every entry ever appended."""
    log_window_bytes: int = DEFAULT_SESSION_LOG_BYTES
    """Context-log bytes kept per session (the newest entries)."""
    tenant_bytes: int = DEFAULT_SESSION_TENANT_BYTES
    """One tenant's sessions: state, log window and (memory store) provenance index."""
    tenant_sessions: int = DEFAULT_SESSION_TENANT_ENTRIES
    """Sessions one tenant may hold (memory and Redis); past it a new one is DENY."""
    total_bytes: int = DEFAULT_SESSION_TOTAL_BYTES
    """Memory store: every tenant's sessions."""
    evict_idle_seconds: int = DEFAULT_SESSION_EVICT_IDLE_SECONDS
    """Memory store: a full budget evicts sessions idle this long (oldest first); a
    session evicted is DENY ``session_budget_exhausted`` when it acts again."""
    state_version: int = 2
    """Encoding of the session state written: 2 (compact binary) or 1 (JSON, what
    versions before the compact encoding read). Both are always read. Set 1 while a
    rolling upgrade over Redis still runs older replicas, then 2."""


@dataclass(frozen=True)
class ApprovalConfig:
    """STEP_UP approvals and DEFER resolutions."""

    webhook_url: str = ""
    """POST each new approval request here (empty: no webhook)."""
    token_ttl_seconds: int = DEFAULT_APPROVAL_TOKEN_TTL_SECONDS
    """How long a granted approval's single-use token stays valid."""
    max_defer_attempts: int = DEFAULT_MAX_DEFER_ATTEMPTS
    """Resolution attempts before a deferral is denied."""
    sweep_interval_seconds: float = DEFAULT_SWEEP_INTERVAL_SECONDS
    """How often expired approvals and deferrals are turned into DENY."""
    ticket_tenant_bytes: int = DEFAULT_TICKET_TENANT_BYTES
    """Bytes of one tenant's tickets; a new one past it (open ones are never dropped,
    settled ones are evicted first) is DENY ``ticket_budget_exhausted``."""
    ticket_tenant_entries: int = DEFAULT_TICKET_TENANT_ENTRIES
    """Tickets one tenant may hold open (and, in memory, settled ones kept)."""
    ticket_total_bytes: int = DEFAULT_TICKET_TOTAL_BYTES
    """Memory store: every tenant's tickets."""


@dataclass(frozen=True)
class ReceiptConfig:
    """Signed receipts: where they are stored and which keys sign them."""

    store: str = DEFAULT_RECEIPT_STORE
    """SQLite file path (default) or a postgresql:// URL shared by replicas."""
    key_dir: Path = DEFAULT_KEY_DIR
    """Ed25519 signing keys (created on first start; rotate with `aarm-pdp receipts rotate`)."""


@dataclass(frozen=True)
class TelemetryConfig:
    """Security telemetry export (AARM R8, schema aarm.telemetry.v1, docs/telemetry.md)."""

    file: Path | None = DEFAULT_TELEMETRY_FILE
    """JSONL file the events are appended to; None disables the file sink."""
    webhook_url: str = ""
    """POST batches of events here as a JSON array (empty: no webhook)."""
    flush_seconds: float = 1.0
    """Export at least this often; HIGH and CRITICAL events go out at once."""
    decisions: tuple[str, ...] = ()
    """Export only these verdicts (empty: all)."""
    max_bytes: int = 64 << 20
    """The file rotates (to ``<file>.1``) before it would grow past this many bytes."""
    keep: int = 5
    """Rotated files kept (``<file>.1`` newest … ``<file>.<keep>`` oldest); 0 keeps none."""


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    listen: str = DEFAULT_METRICS_LISTEN
    """host:port serving /metrics; empty disables it."""


DEFAULT_DEV_TOKEN_FILE = Path("var/dev-token")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_loopback_listen(listen: str) -> bool:
    """True when ``host:port`` binds only the loopback interface (127/8, ::1, localhost)."""
    host = listen.rpartition(":")[0]
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class AuthConfig:
    """The trust boundary: who may call, over which transport (docs/authentication.md)."""

    principals_file: Path | None = None
    """The principals (JSON): roles per tenant, hashed tokens, mTLS identities, JWT
    issuers, per-tenant end-user IdPs. None: a development principal (loopback only)."""
    dev_token_file: Path = DEFAULT_DEV_TOKEN_FILE
    """Where the development principal's token is kept (mode 0600) when no principals."""
    tls_cert: Path | None = None
    """PEM certificate chain of the gRPC listener; with ``tls_key`` it serves TLS."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    tls_client_ca: Path | None = None
    """PEM CAs whose client certificates are required and verified (mutual TLS)."""
    insecure_listen: bool = False
    """Allow plaintext gRPC on a non-loopback address (the operator says so explicitly)."""

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: str = "info"
    """debug, info, warning or error."""
    format: str = "auto"
    """json, text or auto: text on a terminal, JSON otherwise (a container, a pipe)."""


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry traces (observability/tracing.py): off unless an endpoint is set."""

    endpoint: str = ""
    """OTLP/gRPC collector, e.g. http://otel-collector:4317 (empty: no tracing)."""
    insecure: bool = False
    """Plaintext to the collector (an http:// endpoint is plaintext anyway)."""
    service_name: str = "aarm-pdp"
    """The ``service.name`` resource attribute."""
    sample_ratio: float = 1.0
    """Share of new traces sampled (0..1); a caller's sampled trace is always followed."""


@dataclass(frozen=True)
class Config:
    """Everything ``aarm-pdp serve`` needs."""

    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    opa: OpaConfig = field(default_factory=OpaConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    approvals: ApprovalConfig = field(default_factory=ApprovalConfig)
    receipts: ReceiptConfig = field(default_factory=ReceiptConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def validate(self) -> Config:
        """Return self, or raise :class:`ConfigError` listing every problem."""
        errors: list[str] = []
        if not _LISTEN_RE.fullmatch(self.server.listen):
            errors.append(f"server.listen {self.server.listen!r} is not host:port")
        if self.metrics.listen and not _LISTEN_RE.fullmatch(self.metrics.listen):
            errors.append(f"metrics.listen {self.metrics.listen!r} is not host:port")
        if self.server.event_loop not in EVENT_LOOPS:
            errors.append(f"server.event_loop must be one of {', '.join(EVENT_LOOPS)}")
        if self.server.grace_seconds < 0:
            errors.append("server.grace_seconds must be >= 0")
        if not 1024 <= self.server.max_request_bytes <= 64 << 20:
            errors.append("server.max_request_bytes must be within 1 KiB..64 MiB")
        errors.extend(_server_limit_problems(self.server))
        errors.extend(_auth_problems(self.auth, self.server.listen))
        o = self.opa
        if o.url is not None:
            if not re.fullmatch(r"(https?://[^\s/]+|unix:///\S+)", o.url):
                errors.append(f"opa.url {o.url!r} must be http(s)://host:port or unix:///path")
        else:
            if not o.policy_paths:
                errors.append("opa.policy_paths is empty and no ./rego directory was found")
            errors.extend(
                f"opa.policy_paths: {p} does not exist" for p in o.policy_paths if not p.exists()
            )
            if shutil.which(o.binary) is None and not os.access(o.binary, os.X_OK):
                errors.append(f"opa.binary {o.binary!r} is not an executable (run `make setup`)")
        errors.extend(_opa_tls_problems(o))
        errors.extend(
            f"opa.shadow_policy_paths: {p} does not exist"
            for p in o.shadow_policy_paths
            if not p.exists()
        )
        if o.reload_seconds < 0:
            errors.append("opa.reload_seconds must be >= 0 (0: no hot reload)")
        if o.signing_alg not in SIGNING_ALGS:
            errors.append(f"opa.signing_alg must be one of {', '.join(SIGNING_ALGS)}")
        if o.verification_key is not None and o.url is not None:
            errors.append("opa.verification_key is for the managed sidecar (no opa.url)")
        elif o.verification_key is not None and not os.access(o.verification_key, os.R_OK):
            errors.append(f"opa.verification_key: {o.verification_key} is not readable")
        if not ENTRYPOINT_RE.fullmatch(o.entrypoint):
            errors.append(f"opa.entrypoint {o.entrypoint!r} must be a slash-separated rule path")
        for name in (
            "timeout_seconds",
            "startup_timeout_seconds",
            "policy_refresh_seconds",
            "health_interval_seconds",
        ):
            if getattr(o, name) <= 0:
                errors.append(f"opa.{name} must be > 0")
        if o.max_connections < 1:
            errors.append("opa.max_connections must be >= 1")
        if self.decision.idempotency_entries < 0:
            errors.append("decision.idempotency_entries must be >= 0")
        sc = self.session
        if sc.state != "memory" and not re.fullmatch(r"rediss?://\S+|unix://\S+", sc.state):
            errors.append("session.state must be 'memory' or a redis:// URL")
        if sc.ttl_seconds < 1 or sc.artifact_ttl_seconds < 1 or sc.store_timeout_seconds <= 0:
            errors.append("session ttl and timeout settings must be > 0")
        errors.extend(_bound_problems(self))
        ap = self.approvals
        if ap.webhook_url and not re.fullmatch(r"https?://\S+", ap.webhook_url):
            errors.append("approvals.webhook_url must be an http(s) URL")
        if ap.token_ttl_seconds < 1 or ap.max_defer_attempts < 1 or ap.sweep_interval_seconds <= 0:
            errors.append("approvals ttl, attempts and sweep interval must be > 0")
        rc = self.receipts
        if not rc.store:
            errors.append("receipts.store must be a file path or a postgresql:// URL")
        tc = self.telemetry
        if tc.webhook_url and not re.fullmatch(r"https?://\S+", tc.webhook_url):
            errors.append("telemetry.webhook_url must be an http(s) URL")
        if tc.flush_seconds <= 0:
            errors.append("telemetry.flush_seconds must be > 0")
        if tc.max_bytes < 4096 or tc.keep < 0:
            errors.append("telemetry.max_bytes must be >= 4096 and telemetry.keep >= 0")
        bad = set(tc.decisions) - {"ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER"}
        if bad:
            errors.append(f"telemetry.decisions: unknown verdicts {sorted(bad)}")
        if self.log.level not in ("debug", "info", "warning", "error"):
            errors.append("log.level must be debug, info, warning or error")
        if self.log.format not in ("json", "text", "auto"):
            errors.append("log.format must be json, text or auto")
        tr = self.tracing
        if tr.endpoint and not re.fullmatch(r"https?://\S+", tr.endpoint):
            errors.append("tracing.endpoint must be an http(s) URL (OTLP/gRPC)")
        if not 0.0 <= tr.sample_ratio <= 1.0:
            errors.append("tracing.sample_ratio must be within 0..1")
        if not tr.service_name:
            errors.append("tracing.service_name must not be empty")
        lim = self.limits
        for name in lim.__dataclass_fields__:
            if getattr(lim, name) < 1:
                errors.append(f"limits.{name} must be >= 1")
        if errors:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
        return self
