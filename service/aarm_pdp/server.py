"""Wiring only: build the parts from config, start them, stop them in order."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from aarm_pdp.api import approval_service, receipt_service, session_service
from aarm_pdp.api.admission import Admission
from aarm_pdp.api.auth import CallGuard
from aarm_pdp.api.decision_service import DecisionServicer
from aarm_pdp.approvals.notifier import WebhookNotifier
from aarm_pdp.approvals.workflow import Workflow
from aarm_pdp.auth import (
    AuthConfigError,
    Authenticator,
    PrincipalDirectory,
    TlsFiles,
    ensure_dev_principal,
    load_principals,
    server_credentials,
)
from aarm_pdp.auth.devtoken import DEV_TENANT
from aarm_pdp.config import Config, ServerConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.decision.followups import Followups
from aarm_pdp.decision.idempotency import IdempotencyCache
from aarm_pdp.decision.ports import NoEvents
from aarm_pdp.errors import AarmError
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.observability.telemetry import TelemetryExporter
from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.port import PolicyEngine
from aarm_pdp.opa.sidecar import ManagedOpa, SidecarStartError
from aarm_pdp.receipts.factory import open_store
from aarm_pdp.receipts.keys import KeyRing
from aarm_pdp.receipts.log import ReceiptLog
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.factory import open_session_store
from aarm_pdp.session.store import SessionStore
from aarm_pdp.tasks import cancel_and_wait

log = logging.getLogger("aarm_pdp.server")

SERVICERS = (
    DecisionServicer,
    session_service.SessionServicer,
    approval_service.ApprovalServicer,
    approval_service.DeferralServicer,
    receipt_service.ReceiptServicer,
)
"""The servicer of every aarm.v1 service (a unit test checks none is missing)."""
# Named by their generated descriptors, for health and reflection.
_SERVICE_NAMES = tuple(servicer.SERVICE.full_name for servicer in SERVICERS)
_HEALTH_NAMES = ("", *_SERVICE_NAMES)
LIVENESS_NAME = "aarm.liveness"
"""A health name SERVING from start to stop whatever OPA and the stores do: the liveness
probe asks it, so a dependency down (readiness NOT_SERVING) never restarts the pod."""


class StartupError(RuntimeError):
    """The service refused to become ready; the message says why."""


KEEPALIVE_SECONDS = 60.0
"""A connection quiet this long is pinged; one that does not answer in
:data:`KEEPALIVE_TIMEOUT_SECONDS` is closed (a peer that vanished without a FIN)."""
KEEPALIVE_TIMEOUT_SECONDS = 20.0
MIN_CLIENT_PING_SECONDS = 10.0
"""Clients may ping this often (with or without calls); two pings sooner and the
connection is closed (GOAWAY ``too_many_pings``)."""
CONNECTION_AGE_GRACE_SECONDS = 30.0
PENDING_CALLS = 20_000
"""Calls gRPC core holds for the event loop to take (it takes them one by one). Past
its default (1000 soft, 3000 hard) core cancels them at random: that was the
unexplained CANCELLED of 3 000-5 000 in-flight Decides. This many are taken, in
order, and answered: admitted, or RESOURCE_EXHAUSTED ``overloaded``."""


def server_options(s: ServerConfig) -> list[tuple[str, int]]:
    """The grpc core channel arguments that bound connections, streams and messages.

    Each is honoured by grpcio's server (checked in tests/api/test_admission.py).
    """

    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    options = [
        ("grpc.max_receive_message_length", s.max_request_bytes + 4096),
        ("grpc.so_reuseport", 0),
        # Descriptors: connections past the limit are closed as they are accepted; idle
        # and half-open ones are reclaimed by the idle timeout, the handshake timeout
        # and keep-alive pings.
        ("grpc.max_allowed_incoming_connections", s.max_connections),
        ("grpc.max_concurrent_streams", s.max_streams_per_connection),
        ("grpc.server.max_pending_requests", PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS),
        ("grpc.max_connection_idle_ms", ms(s.connection_idle_seconds)),
        ("grpc.server_handshake_timeout_ms", ms(s.handshake_timeout_seconds)),
        ("grpc.keepalive_time_ms", ms(KEEPALIVE_SECONDS)),
        ("grpc.keepalive_timeout_ms", ms(KEEPALIVE_TIMEOUT_SECONDS)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(MIN_CLIENT_PING_SECONDS)),
        ("grpc.http2.max_ping_strikes", 2),
    ]
    if s.connection_age_seconds:
        options += [
            ("grpc.max_connection_age_ms", ms(s.connection_age_seconds)),
            ("grpc.max_connection_age_grace_ms", ms(CONNECTION_AGE_GRACE_SECONDS)),
        ]
    return options


PROBE_TIMEOUT_SECONDS = 2.0
"""A health check (OPA, session store, receipt store) that has not answered by then
counts as down: a hung store makes readiness NOT_SERVING, it does not stall it."""


class _Probe:
    """One part's health check, bounded by :data:`PROBE_TIMEOUT_SECONDS`; a check still
    running then is waited for again next round, not started a second time."""

    def __init__(self, check: Callable[[], Awaitable[bool]]) -> None:
        self._check = check
        self._task: asyncio.Future[bool] | None = None

    async def __call__(self) -> bool:
        if self._task is None:
            self._task = asyncio.ensure_future(self._check())
        done, _ = await asyncio.wait({self._task}, timeout=PROBE_TIMEOUT_SECONDS)
        if not done:
            return False
        task, self._task = self._task, None
        return not task.cancelled() and task.exception() is None and bool(task.result())

    @property
    def running(self) -> asyncio.Future[bool] | None:
        """The check still in flight, if any (stop cancels and awaits it)."""
        return self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class App:
    """A running service: what tests and ``serve`` start and stop."""

    cfg: Config
    metrics: Metrics
    engine: DecisionEngine
    policy: PolicyEngine
    grpc_server: grpc.aio.Server
    health: Any
    port: int
    store: SessionStore
    catalogue_box: list[Catalogue]
    sidecar: ManagedOpa | None = None
    metrics_server: Any = None
    shadow_sidecar: ManagedOpa | None = None
    """The shadow policy's OPA (opa.shadow_policy_paths), with ``shadow`` its client."""
    shadow: PolicyEngine | None = None
    notifier: WebhookNotifier | None = None
    receipts: ReceiptLog | None = None
    telemetry: TelemetryExporter | None = None
    metrics_port: int | None = None
    reload_revocations: Callable[[], Awaitable[int]] | None = None
    """Replays the durable revocations into the session store (a restarted Redis)."""
    revocations_current: Callable[[], Awaitable[bool]] = field(default=lambda: _always_true())
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _probes: list[_Probe] = field(default_factory=list)

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in _HEALTH_NAMES:
            await self.health.set(name, status)

    async def _watch(self) -> None:
        """Readiness follows the health of OPA, the session store and the receipt store
        (one that cannot write is down). Periodically, and when OPA comes back, the
        policy version and catalogue are re-read and revocations reloaded; a decision's
        receipt never uses that re-read, it names the policy of its own OPA answer."""
        loop = asyncio.get_running_loop()
        o = self.cfg.opa
        next_refresh = loop.time() + o.policy_refresh_seconds
        was_up: bool | None = None
        probes = [("policy engine", _Probe(self.policy.healthy))]
        probes.append(("session store", _Probe(self.store.healthy)))
        if self.receipts is not None:
            probes.append(("receipt store", _Probe(self.receipts.healthy)))
        self._probes.extend(probe for _, probe in probes)
        try:
            while True:
                was_up, next_refresh = await self._watch_once(probes, was_up, next_refresh)
                await asyncio.sleep(o.health_interval_seconds)
        finally:
            for _, probe in probes:
                probe.cancel()

    async def _watch_once(
        self, probes: list[tuple[str, _Probe]], was_up: bool | None, next_refresh: float
    ) -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        o = self.cfg.opa
        down = None
        for name, probe in probes:  # in order: the first one down is named
            healthy = await probe()
            if name == "policy engine":
                self.metrics.opa_up.set(1 if healthy else 0)
            if not healthy:
                down = name
                break
        up = down is None
        recovered = up and was_up is False
        if up and self.reload_revocations is not None:
            with contextlib.suppress(AarmError):
                recovered = recovered or not await self.revocations_current()
        if up != was_up:
            await self._set_serving(up)
            if was_up is not None and up:
                log.warning("readiness: SERVING again (policy engine and stores healthy)")
            elif was_up is not None:
                log.warning("readiness: NOT_SERVING, %s down: denying all", down)
            was_up = up
        if up and (loop.time() >= next_refresh or recovered):
            with contextlib.suppress(Exception):
                await self.engine.refresh_policy_version()  # also updates catalogue_box
            # Also right after a store comes back: a restarted Redis forgot them.
            if self.reload_revocations is not None:
                try:
                    await self.reload_revocations()
                except AarmError as exc:
                    log.error("revocations not reloaded: %s", exc)
            next_refresh = loop.time() + o.policy_refresh_seconds
        return up, next_refresh

    async def stop(self) -> None:
        """SIGTERM path: NOT_SERVING, drain in-flight calls, stop OPA, close.

        Every step runs even when an earlier one fails (a store that cannot close must
        not leave OPA running); the first failure is raised at the end. Background tasks
        and health checks in flight are cancelled and awaited, bounded
        (:func:`~aarm_pdp.tasks.cancel_and_wait`): none outlives the service, and a task
        that swallowed its cancellation cannot hang the stop."""
        await self._set_serving(False)
        background: list[asyncio.Future[Any]] = [*self._tasks]
        background += [p.running for p in self._probes if p.running is not None]
        left = await cancel_and_wait(background)
        if left:
            log.error("stop: %d background task(s) did not end: %s", len(left), left)
        failed: BaseException | None = None

        async def step(close: Callable[[], Awaitable[Any]]) -> None:
            nonlocal failed
            try:
                await close()
            except Exception as exc:
                log.error("stop: %s failed: %r", getattr(close, "__qualname__", close), exc)
                failed = failed or exc

        await step(lambda: self.grpc_server.stop(self.cfg.server.grace_seconds))
        for part in (self.sidecar, self.shadow_sidecar):
            if part is not None:
                await step(part.stop)
        for closing in (self.shadow, self.policy, self.receipts, self.telemetry, self.notifier):
            if closing is not None:
                await step(closing.aclose)
        await step(self.store.aclose)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if failed is not None:
            raise failed


async def _policy_engine(cfg: Config, metrics: Metrics) -> tuple[PolicyEngine, ManagedOpa | None]:
    o = cfg.opa
    if o.url is not None:
        client = OpaClient(
            o.url,
            entrypoint=o.entrypoint,
            max_connections=o.max_connections,
            ca_file=o.ca_file,
            client_cert=o.client_cert,
            client_key=o.client_key,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + o.startup_timeout_seconds
        while not await client.healthy():
            if loop.time() > deadline:
                await client.aclose()
                raise StartupError(
                    f"external OPA at {o.url} not healthy after {o.startup_timeout_seconds:.0f}s"
                )
            await asyncio.sleep(0.2)
        return client, None
    sidecar = ManagedOpa(
        binary=o.binary,
        policy_paths=list(o.policy_paths),
        startup_timeout=o.startup_timeout_seconds,
        on_state=lambda up: metrics.opa_up.set(1 if up else 0),
        on_restart=metrics.opa_restarts.inc,
        reload_seconds=o.reload_seconds or None,
        verification_key=o.verification_key,
        verification_key_id=o.verification_key_id,
        signing_alg=o.signing_alg,
        on_reload=lambda ok: metrics.policy_reloads.labels("ok" if ok else "refused").inc(),
    )
    managed = sidecar.client(entrypoint=o.entrypoint, max_connections=o.max_connections)
    try:
        await sidecar.start()
    except SidecarStartError as exc:
        await sidecar.stop()
        await managed.aclose()
        raise StartupError(str(exc)) from exc
    return managed, sidecar


async def _shadow_engine(cfg: Config) -> tuple[ManagedOpa, PolicyEngine]:
    """The shadow policy's own managed OPA (hot-reloaded, verified like the live one)."""
    o = cfg.opa
    sidecar = ManagedOpa(
        binary=o.binary,
        policy_paths=list(o.shadow_policy_paths),
        startup_timeout=o.startup_timeout_seconds,
        reload_seconds=o.reload_seconds or None,
        verification_key=o.verification_key,
        verification_key_id=o.verification_key_id,
        signing_alg=o.signing_alg,
    )
    client = sidecar.client(entrypoint=o.entrypoint, max_connections=o.max_connections)
    try:
        await sidecar.start()
    except SidecarStartError as exc:
        await sidecar.stop()
        await client.aclose()
        raise StartupError(f"shadow policy: {exc}") from exc
    log.info("shadow policy %s", ",".join(la.effective_revision for la in sidecar.layers))
    return sidecar, client


def _principals(cfg: Config) -> PrincipalDirectory:
    """The principals file's directory, or the development principal (loopback only)."""
    a = cfg.auth
    try:
        if a.principals_file is not None:
            return load_principals(a.principals_file)
        dev = ensure_dev_principal(a.dev_token_file)
    except AuthConfigError as exc:
        raise StartupError(str(exc)) from exc
    log.warning(
        "no principals configured: development principal %r (every role, tenant %r, "
        "loopback only); its token is in %s (mode 0600)%s",
        dev.principal.id,
        DEV_TENANT,
        dev.token_file,
        " (new)" if dev.created else "",
    )
    # The header itself, once, straight to the terminal: it names the file, not the token
    # (and the log's secret redaction would mangle an "authorization:" line).
    header = f'-H "authorization: Bearer $(cat {dev.token_file})"'
    print(f"aarm-pdp: call with: grpcurl -plaintext {header}", file=sys.stderr, flush=True)
    return dev.directory


def _public_keys(rlog: ReceiptLog) -> dict[str, Any]:
    return rlog.keyring.jwks()


async def _always_true() -> bool:
    return True


def _tenants(directory: PrincipalDirectory) -> set[str]:
    return {t for p in directory.principals.values() for t in p.roles}


async def _load_catalogue(policy: PolicyEngine) -> Catalogue:
    """The tool catalogue; empty (every output untrusted) if the policy has none."""
    try:
        return Catalogue.from_policy_data(
            await policy.tool_catalogue(), await policy.request_scope()
        )
    except AarmError as exc:
        log.error("tool catalogue unreadable (%s): treating every tool output as untrusted", exc)
        return Catalogue()


async def start(
    cfg: Config,
    *,
    metrics: Metrics | None = None,
    policy_engine: PolicyEngine | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> App:
    """Start OPA (or reach it), then the gRPC server and the metrics endpoint.

    ``policy_engine`` replaces OPA entirely (the benchmark's stub lane, API tests).
    ``clock_ns``: the time decisions, sessions, tickets and receipts are stamped with
    (Unix ns; a test's simulated day). Credentials and timeouts keep the real clock.
    """
    metrics = metrics or Metrics()
    sidecar: ManagedOpa | None = None
    if policy_engine is not None:
        policy: PolicyEngine = policy_engine
    else:
        policy, sidecar = await _policy_engine(cfg, metrics)
    shadow_sidecar, shadow = None, None
    if cfg.opa.shadow_policy_paths and policy_engine is None:
        try:
            shadow_sidecar, shadow = await _shadow_engine(cfg)
        except BaseException:
            if sidecar is not None:
                await sidecar.stop()
            await policy.aclose()
            raise
    store = open_session_store(cfg.session, cfg.approvals)
    metrics.watch_bounds(store.bound_stats)
    rlog: ReceiptLog | None = None
    try:
        rc = cfg.receipts
        keyring = KeyRing.open(rc.key_dir)
        if "://" not in rc.store:
            Path(rc.store).parent.mkdir(parents=True, exist_ok=True)
        rlog = ReceiptLog(open_store(rc.store), keyring)
        try:
            await rlog.start()
        except AarmError as exc:
            raise StartupError(f"receipt store {rc.store!r} unavailable: {exc.detail}") from exc
        if not await store.healthy():
            raise StartupError(f"session store {cfg.session.state!r} does not answer")
        catalogue_box = [await _load_catalogue(policy)]
        sessions = SessionContext(
            store, lambda: catalogue_box[0], state_version=cfg.session.state_version
        )
        tc = cfg.telemetry
        telemetry = (
            TelemetryExporter(
                metrics,
                file=tc.file,
                webhook_url=tc.webhook_url,
                flush_seconds=tc.flush_seconds,
                decisions=frozenset(tc.decisions) or None,
                max_bytes=tc.max_bytes,
                keep=tc.keep,
            )
            if tc.file is not None or tc.webhook_url
            else None
        )
        ap = cfg.approvals
        directory = _principals(cfg)
        guard = CallGuard(
            Authenticator(directory, client_certificates=cfg.auth.tls_client_ca is not None),
            metrics,
            end_users=directory.end_user_identity,
        )
        notifier = WebhookNotifier(ap.webhook_url) if ap.webhook_url else None

        followups = Followups(
            sessions,
            rlog,
            telemetry if telemetry is not None else NoEvents(),
            metrics,
            clock_ns=clock_ns,
        )
        workflow = Workflow(
            store,
            settle=followups.settle_ticket,
            notifier=notifier,
            token_ttl_seconds=ap.token_ttl_seconds,
            max_defer_attempts=ap.max_defer_attempts,
        )
        dc = cfg.decision
        cache = IdempotencyCache(
            dc.idempotency_entries,
            dc.idempotency_ttl_seconds * 10**9,
            tenant_bytes=dc.idempotency_tenant_bytes,
            total_bytes=dc.idempotency_total_bytes,
        )
        metrics.watch_bounds(cache.bound_stats)
        engine = DecisionEngine(
            policy,
            metrics,
            sessions=sessions,
            workflow=workflow,
            receipts=rlog,
            telemetry=telemetry,
            opa_timeout=cfg.opa.timeout_seconds,
            cache=cache,
            on_catalogue=functools.partial(catalogue_box.__setitem__, 0),
            shadow=shadow,
            clock_ns=clock_ns,
        )
        await engine.refresh_policy_version()
        public_keys = functools.partial(_public_keys, rlog)
        try:
            revoked = await followups.load_revocations(_tenants(directory), rlog.store, public_keys)
        except AarmError as exc:
            raise StartupError(f"revocations not loaded: {exc.detail}") from exc
        if revoked:
            log.info("%d revocations loaded from the receipt store", revoked)
        # No maximum_concurrent_rpcs: grpc.aio does not refuse past it, it stops taking
        # calls, which then wait in core (health checks too) until core cancels them.
        server = grpc.aio.server(options=server_options(cfg.server))
        admission = Admission(
            metrics,
            max_decisions=cfg.server.max_inflight_decisions,
            max_calls=cfg.server.max_inflight_calls,
            max_watches=cfg.server.max_inflight_watches,
            max_per_stream=cfg.server.max_inflight_per_stream,
            max_bytes=cfg.server.inflight_bytes,
            decide_methods=(f"/{DecisionServicer.SERVICE.full_name}/Decide",),
        )

        def add_admitted(*handlers: grpc.GenericRpcHandler) -> None:  # type: ignore[type-arg]
            server.add_generic_rpc_handlers(tuple(admission.wrap(h) for h in handlers))

        servicer = DecisionServicer(
            engine, metrics, cfg.limits, guard, max_request_bytes=cfg.server.max_request_bytes
        )
        add_admitted(servicer.handler())
        session_servicer = session_service.SessionServicer(
            sessions, followups, metrics, cfg.limits, guard, clock_ns
        )
        add_admitted(session_servicer.handler())
        approvals = approval_service.ApprovalServicer(
            workflow, followups, metrics, guard, clock_ns, limits=cfg.limits
        )
        deferrals = approval_service.DeferralServicer(engine, workflow, metrics, cfg.limits, guard)
        add_admitted(approvals.handler(), deferrals.handler())
        keyring = rlog.keyring
        receipts_servicer = receipt_service.ReceiptServicer(
            rlog.store, lambda: keyring, metrics, guard
        )
        add_admitted(receipts_servicer.handler())
        health_servicer = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        await health_servicer.set(LIVENESS_NAME, health_pb2.HealthCheckResponse.SERVING)
        if cfg.server.reflection:
            reflection.enable_server_reflection(
                (*_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
                server,
            )
        a = cfg.auth
        if a.tls_cert is not None and a.tls_key is not None:
            try:
                creds = server_credentials(TlsFiles(a.tls_cert, a.tls_key, a.tls_client_ca))
            except AuthConfigError as exc:
                raise StartupError(str(exc)) from exc
            port = server.add_secure_port(cfg.server.listen, creds)
        else:
            port = server.add_insecure_port(cfg.server.listen)
        if port == 0:
            raise StartupError(f"cannot listen on {cfg.server.listen}")
        await server.start()
    except BaseException:
        if sidecar is not None:
            await sidecar.stop()
        if shadow_sidecar is not None:
            await shadow_sidecar.stop()
        if shadow is not None:
            await shadow.aclose()
        await policy.aclose()
        await store.aclose()
        if rlog is not None:
            await rlog.aclose()
        raise
    app_tasks = [
        *([asyncio.get_running_loop().create_task(telemetry.run())] if telemetry else []),
        asyncio.get_running_loop().create_task(
            workflow.run_sweeper(clock_ns, cfg.approvals.sweep_interval_seconds)
        ),
    ]
    app = App(
        cfg,
        metrics,
        engine,
        policy,
        server,
        health_servicer,
        port,
        store,
        catalogue_box,
        sidecar,
    )
    if cfg.metrics.listen:
        host, _, mport = cfg.metrics.listen.rpartition(":")
        bind = host.strip("[]") or "0.0.0.0"  # noqa: S104 - documented default
        httpd, _thread = start_http_server(int(mport), addr=bind, registry=metrics.registry)
        app.metrics_server = httpd
        app.metrics_port = httpd.server_port
    await app._set_serving(True)
    metrics.opa_up.set(1)
    app.notifier = notifier
    app.reload_revocations = functools.partial(
        followups.load_revocations, _tenants(directory), rlog.store, public_keys
    )
    app.revocations_current = followups.revocations_current
    app.receipts = rlog
    app.telemetry = telemetry
    app.shadow_sidecar, app.shadow = shadow_sidecar, shadow
    app._tasks.extend(app_tasks)
    app._tasks.append(asyncio.get_running_loop().create_task(app._watch()))
    log.info(
        "serving aarm.v1 on port %d (policy revision %s, hash %s)",
        port,
        engine.policy_version.revision,
        engine.policy_version.hash[:12],
    )
    return app


async def serve(cfg: Config) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    from aarm_pdp.observability import tracing

    try:
        provider = tracing.setup(cfg.tracing)
    except RuntimeError as exc:
        raise StartupError(str(exc)) from exc
    app = await start(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining in-flight calls for up to %.0fs", cfg.server.grace_seconds)
    await app.stop()
    if provider is not None:
        provider.shutdown()  # flush the spans still batched
    log.info("stopped")
