"""A managed OPA sidecar: a real ``opa run --server`` child process, supervised.

The child listens on a unix socket in a private directory, loads the policy layers
(the pack, then overlays: :mod:`aarm_pdp.opa.layers`) as bundles staged there with
their effective revisions, and is restarted with backoff whenever it exits. Every
spawn stages the layers afresh, so a restarted OPA and the revision it reports always
name the files it loaded. While it is down, every
query fails with ``OpaUnavailable`` and the engine answers DENY: there is no other
path. Start-up fails loudly, with OPA's own error text, if the policy does not load.

Hot reload (``reload_seconds``): the layers' sources are fingerprinted every so often;
a change that has settled (the same fingerprint on two polls in a row) starts a second
OPA on freshly staged bundles. Once it is ready, the client is switched to it
(:class:`~aarm_pdp.opa.switching.SwitchingOpaClient`: new queries go to the new OPA,
queries in flight finish on the old one) and the old OPA is stopped when none is left.
A policy that does not load (a syntax error, a signature that does not verify) leaves
the running OPA as it is; the refusal is logged and counted. docs/policy-lifecycle.md.

Signed bundles (``verification_key``): OPA verifies each layer's ``.signatures.json``
itself (``opa run --verification-key``). The layers are then handed to OPA as they
are, not re-staged (that would change what was signed): build them with
``aarm-pdp policy build --signing-key`` so their manifests carry the effective revision.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.layers import Layer, LayerError, load_layers, source_fingerprint, stage
from aarm_pdp.opa.switching import SwitchingOpaClient

log = logging.getLogger("aarm_pdp.opa.sidecar")

# The child must die with the service, even when the service dies by SIGKILL: the
# parent-death signal. Setting it needs code in the child between fork and exec, and
# Python code there (``preexec_fn``) forces a real fork() of a process that already
# runs gRPC threads, whose fork handlers then abort the child now and then (seen as
# status -6, "epoll_wait: Bad file descriptor"). So the child is spawned without
# preexec_fn (CPython then uses vfork + exec, which runs no fork handlers) as a tiny
# stdlib-only launcher that sets the signal, checks its parent is still the service
# (else the signal was set too late) and execs opa in its own place (same pid).
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


OPA_FLAGS: tuple[str, ...] = ("--optimize-store-for-read-speed",)
"""Flags every managed OPA runs with. The read-optimised store keeps the bundles' data
(the config, the catalogue) as evaluation-ready values, so a query no longer converts
what it reads of them: -6 to -12 % OPA CPU per decision on the pack, 17 % fewer
allocations (docs/performance.md, "OPA levers"). The deploy manifests set the same."""

OPA_ENV: dict[str, str] = {"GOGC": "400"}
"""Environment every managed OPA starts with, unless the service's own environment
sets the variable (it then passes through). ``GOGC=400``: Go collects garbage once
the heap has grown by 400 % of what is live instead of 100 %; a decision allocates
~200 KB, and collecting it was a quarter of OPA's CPU. -17 to -27 % OPA CPU per
decision on the pack (-26 to -33 % with the store flag), for a larger heap: OPA's
peak RSS ~110 -> ~200-250 MiB under load (docs/performance.md, "OPA levers"). The
deploy manifests set the same, with GOMEMLIMIT under the container's memory limit."""


def opa_env() -> dict[str, str]:
    """The environment of a managed OPA: the service's, plus ``OPA_ENV`` where unset."""
    return {**OPA_ENV, **os.environ}


class SidecarStartError(RuntimeError):
    """OPA did not become ready; the message carries OPA's last words."""


def launcher_argv(argv: list[str]) -> list[str]:
    """``argv`` run through the parent-death launcher (see ``_LAUNCHER``)."""
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]


@dataclass(eq=False)
class _Child:
    """One OPA process of one generation and the bundles staged for it."""

    gen: int
    dir: Path
    socket_path: str
    layers: list[Layer]
    bundles: list[Path]
    proc: asyncio.subprocess.Process | None = None
    drainer: asyncio.Task[None] | None = None
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


class ManagedOpa:
    """Starts, watches, restarts and hot-reloads one OPA child process."""

    def __init__(
        self,
        *,
        binary: str,
        policy_paths: list[Path],
        startup_timeout: float = 20.0,
        restart_backoff: tuple[float, float] = (0.2, 5.0),
        on_state: Callable[[bool], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        reload_seconds: float | None = None,
        verification_key: Path | None = None,
        verification_key_id: str = "default",
        signing_alg: str = "RS256",
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self._binary = binary
        self._paths = policy_paths
        self._startup_timeout = startup_timeout
        self._backoff = restart_backoff
        self._on_state = on_state or (lambda up: None)
        self._on_restart = on_restart or (lambda: None)
        self._on_reload = on_reload or (lambda ok: None)
        self._reload_seconds = reload_seconds
        self._verify = None
        if verification_key is not None:
            self._verify = (verification_key, verification_key_id, signing_alg)
        self._dir = tempfile.mkdtemp(prefix="aarm-opa-")
        os.chmod(self._dir, 0o700)
        self._gen = 0
        self._child: _Child | None = None
        self._children: set[_Child] = set()
        self.socket_path = os.path.join(self._dir, "opa-0.sock")
        self.url = f"unix://{self.socket_path}"
        self._supervisor: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._switch_to: Callable[[str], Awaitable[None]] | None = None
        self._warm_up: Callable[[str], Awaitable[None]] | None = None
        self._stopping = False
        self.exit_codes: list[int] = []
        """Status of every exit of a child, in order (negative: killed by that signal);
        an OPA stopped because a reload replaced it is not counted."""
        self._noted: set[int] = set()
        self.layers: list[Layer] = []
        """The layers of the running (or last started) child, as staged for it."""
        self.reloads: list[tuple[bool, str]] = []
        """Every reload attempt: (activated, the revision or why it was refused)."""
        self._reloaded = asyncio.Condition()
        self._fingerprint: str | None = None
        self._refused: str | None = None

    @property
    def pid(self) -> int | None:
        """The current OPA child's pid while it runs."""
        proc = self._child.proc if self._child else None
        return proc.pid if proc and proc.returncode is None else None

    @property
    def generation(self) -> int:
        """How many reloads have been activated."""
        return self._gen

    def client(self, *, entrypoint: str, max_connections: int) -> SwitchingOpaClient:
        """The policy engine over this sidecar's current OPA, switched at every reload."""
        client = SwitchingOpaClient(
            self.url, entrypoint=entrypoint, max_connections=max_connections
        )
        self._switch_to = client.switch
        self._warm_up = client.warm_up
        return client

    def _argv(self, child: _Child) -> list[str]:
        argv = [
            self._binary,
            "run",
            "--server",
            "--addr",
            child.url,
            "--log-level",
            "error",
            "--log-format",
            "json",
            "--skip-version-check",
            *OPA_FLAGS,
        ]
        if self._verify is not None:
            key, key_id, alg = self._verify
            argv += ["--verification-key", str(key), "--verification-key-id", key_id]
            argv += ["--signing-alg", alg]
        for p in child.bundles:
            argv += ["--bundle", str(p)]
        return argv

    def _stage(self, gen: int) -> _Child:
        """Check the layers and write each as a bundle in the generation's directory."""
        gdir = Path(self._dir) / f"gen-{gen}"
        shutil.rmtree(gdir, ignore_errors=True)
        (gdir / "unpacked").mkdir(parents=True)
        try:
            layers = load_layers(self._paths, scratch=gdir / "unpacked")
        except LayerError as exc:
            raise SidecarStartError(f"policy layers unusable: {exc}") from exc
        bundles = gdir / "bundles"
        staged = []
        for i, la in enumerate(layers):
            dest = bundles / f"{i}-{la.name}"
            if self._verify is None:
                staged.append(stage(la, dest))
            elif la.source.is_dir():  # as signed: OPA checks .signatures.json itself
                staged.append(Path(shutil.copytree(la.source, dest)))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                staged.append(Path(shutil.copyfile(la.source, dest.with_suffix(".tar.gz"))))
        return _Child(
            gen=gen,
            dir=gdir,
            socket_path=os.path.join(self._dir, f"opa-{gen}.sock"),
            layers=layers,
            bundles=staged,
        )

    async def _spawn(self, gen: int) -> _Child:
        child = await asyncio.to_thread(self._stage, gen)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(child.socket_path)
        self._children.add(child)
        child.proc = await asyncio.create_subprocess_exec(
            *launcher_argv(self._argv(child)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # opa prints load errors on stdout
            stderr=asyncio.subprocess.STDOUT,
            env=opa_env(),
        )
        child.drainer = asyncio.get_running_loop().create_task(self._drain(child))
        return child

    async def _drain(self, child: _Child) -> None:
        assert child.proc is not None
        assert child.proc.stdout is not None
        async for raw in child.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line and "root privileges" not in line:
                child.output.append(line)
                log.warning("opa: %s", line[:2000])

    def last_words(self) -> str:
        """The current OPA's recent output, for start-up errors."""
        out = self._child.output if self._child else ()
        return "\n".join(out) or "(opa printed nothing)"

    async def _wait_ready(self, child: _Child, timeout: float) -> None:
        proc = child.proc
        assert proc is not None
        probe = OpaClient(child.url, max_connections=1)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                if proc.returncode is not None:
                    if child.drainer is not None:  # read OPA's last words to EOF
                        await asyncio.wait({child.drainer}, timeout=2.0)
                    words = "\n".join(child.output) or "(opa printed nothing)"
                    raise SidecarStartError(
                        f"opa exited with status {proc.returncode} while loading "
                        f"{', '.join(map(str, self._paths))}:\n{words}"
                    )
                if await probe.healthy():
                    return
                await asyncio.sleep(0.05)
            words = "\n".join(child.output) or "(opa printed nothing)"
            raise SidecarStartError(f"opa not ready after {timeout:.0f}s:\n{words}")
        finally:
            await probe.aclose()

    def _fingerprint_now(self) -> str | None:
        try:
            return source_fingerprint(self._paths)
        except OSError:
            return None  # mid-edit (a file renamed away): look again next time

    async def start(self) -> None:
        """Spawn OPA, wait until its bundles are active, then supervise it."""
        if self._reload_seconds is not None:
            self._fingerprint = await asyncio.to_thread(self._fingerprint_now)
        self._child = child = await self._spawn(0)
        self.layers = child.layers
        try:
            await self._wait_ready(child, self._startup_timeout)
        except BaseException:
            await self._retire(child)
            raise
        self._on_state(True)
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise())
        if self._reload_seconds is not None:
            self._poller = loop.create_task(self._poll(self._reload_seconds))

    async def _supervise(self) -> None:
        delay = self._backoff[0]
        while not self._stopping:
            child = self._child
            assert child is not None
            assert child.proc is not None
            code = await child.proc.wait()
            if child is not self._child:
                continue  # replaced by a reload: watch the new one
            self._note_exit(child.proc)
            if self._stopping:
                return
            self._on_state(False)
            log.error("opa exited with status %s; restarting in %.1fs", code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            async with self._lock:
                if child is not self._child:
                    continue  # a reload replaced it meanwhile
                self._on_restart()
                self._children.discard(child)
                try:
                    fresh = await self._spawn(child.gen)  # same socket: the client's url
                    self._child = fresh
                    self.layers = fresh.layers
                    await self._wait_ready(fresh, self._startup_timeout)
                except (SidecarStartError, OSError) as exc:
                    log.error("opa restart failed: %s", exc)
                    if self._child is not None and self._child.proc is not None:
                        await self._terminate(self._child.proc)
                        self._note_exit(self._child.proc)
                    delay = min(delay * 2, self._backoff[1])
                    continue
            delay = self._backoff[0]
            self._on_state(True)
            log.warning("opa restarted (pid %s)", self.pid)

    async def _poll(self, interval: float) -> None:
        """Reload when the sources' fingerprint changed and held still for one poll."""
        pending: str | None = None
        while not self._stopping:
            await asyncio.sleep(interval)
            now = await asyncio.to_thread(self._fingerprint_now)
            if now is None or now in (self._fingerprint, self._refused):
                pending = None
                continue
            if now != pending:
                pending = now  # changed: wait until it holds still
                continue
            pending = None
            if not await self.reload(fingerprint=now):
                self._refused = now

    async def reload(self, *, fingerprint: str | None = None) -> bool:
        """Start an OPA on the layers as they are now and switch to it; False (and the
        running OPA kept) when it does not become ready."""
        async with self._lock:
            if self._stopping or self._child is None:
                return False
            if fingerprint is None:
                fingerprint = await asyncio.to_thread(self._fingerprint_now)
            gen = self._gen + 1
            child: _Child | None = None
            try:
                child = await self._spawn(gen)
                await self._wait_ready(child, self._startup_timeout)
            except (SidecarStartError, OSError) as exc:
                if child is not None:
                    await self._retire(child)
                reason = str(exc).strip()
                log.error("policy reload refused, the running policy stays: %s", reason)
                await self._record(False, reason)
                return False
            except BaseException:
                if child is not None:
                    await self._retire(child)
                raise
            if self._warm_up is not None:  # before it counts as active (generation)
                await self._warm_up(child.url)
            old = self._child
            self._child, self._gen, self.layers = child, gen, child.layers
            self.socket_path, self.url = child.socket_path, child.url
            self._fingerprint, self._refused = fingerprint, None
            if self._switch_to is not None:
                await self._switch_to(child.url)  # returns once nothing is left on old
            await self._retire(old)
            revision = ",".join(la.effective_revision for la in child.layers)
            log.warning("policy reloaded (generation %d): %s", gen, revision)
            await self._record(True, revision)
            return True

    async def _record(self, ok: bool, what: str) -> None:
        self.reloads.append((ok, what))
        self._on_reload(ok)
        async with self._reloaded:
            self._reloaded.notify_all()

    async def wait_reloads(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` reloads have been attempted (for tests and tools)."""
        async with asyncio.timeout(timeout), self._reloaded:
            await self._reloaded.wait_for(lambda: len(self.reloads) >= count)

    def _note_exit(self, proc: asyncio.subprocess.Process | None) -> None:
        if proc is not None and proc.returncode is not None and proc.pid not in self._noted:
            self._noted.add(proc.pid)
            self.exit_codes.append(proc.returncode)

    async def _retire(self, child: _Child) -> None:
        """Stop ``child`` (not counted as an exit) and remove its files."""
        self._children.discard(child)
        if child.proc is not None:
            self._noted.add(child.proc.pid)
            await self._terminate(child.proc)
        if child is not self._child:
            with contextlib.suppress(OSError):
                os.unlink(child.socket_path)
            shutil.rmtree(child.dir, ignore_errors=True)

    @staticmethod
    async def _terminate(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        """Stop supervising and reloading; terminate every child."""
        self._stopping = True
        for task in (self._poller, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for child in list(self._children):
            if child.proc is not None:
                await self._terminate(child.proc)
        self._on_state(False)
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)
