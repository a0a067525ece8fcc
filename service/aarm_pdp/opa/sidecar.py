"""A managed OPA sidecar: a real ``opa run --server`` child process, supervised.

The child listens on a unix socket in a private directory, loads the policy layers
(the pack, then overlays: :mod:`aarm_pdp.opa.layers`) as bundles staged there with
their effective revisions, and is restarted with backoff whenever it exits. Every
spawn stages the layers afresh, so a restarted OPA and the revision it reports always
name the files it loaded. While it is down, every
query fails with ``OpaUnavailable`` and the engine answers DENY: there is no other
path. Start-up fails loudly, with OPA's own error text, if the policy does not load.
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
from collections.abc import Callable
from pathlib import Path

from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.layers import Layer, LayerError, load_layers, stage

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


class SidecarStartError(RuntimeError):
    """OPA did not become ready; the message carries OPA's last words."""


def launcher_argv(argv: list[str]) -> list[str]:
    """``argv`` run through the parent-death launcher (see ``_LAUNCHER``)."""
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]


class ManagedOpa:
    """Starts, watches and restarts one OPA child process."""

    def __init__(
        self,
        *,
        binary: str,
        policy_paths: list[Path],
        startup_timeout: float = 20.0,
        restart_backoff: tuple[float, float] = (0.2, 5.0),
        on_state: Callable[[bool], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self._binary = binary
        self._paths = policy_paths
        self._startup_timeout = startup_timeout
        self._backoff = restart_backoff
        self._on_state = on_state or (lambda up: None)
        self._on_restart = on_restart or (lambda: None)
        self._dir = tempfile.mkdtemp(prefix="aarm-opa-")
        os.chmod(self._dir, 0o700)
        self.socket_path = os.path.join(self._dir, "opa.sock")
        self.url = f"unix://{self.socket_path}"
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._supervisor: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._stopping = False
        self.exit_codes: list[int] = []
        """Status of every exit of a child, in order (negative: killed by that signal)."""
        self._noted: set[int] = set()
        self.layers: list[Layer] = []
        """The layers of the running (or last started) child, as staged for it."""
        self._staged: list[Path] = []

    @property
    def pid(self) -> int | None:
        """The OPA child's pid while it runs."""
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    def _argv(self) -> list[str]:
        argv = [
            self._binary,
            "run",
            "--server",
            "--addr",
            self.url,
            "--log-level",
            "error",
            "--log-format",
            "json",
            "--skip-version-check",
        ]
        for p in self._staged:
            argv += ["--bundle", str(p)]
        return argv

    def _stage(self) -> None:
        """Check the layers and write each as a bundle in the private directory."""
        scratch = Path(self._dir) / "unpacked"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        try:
            layers = load_layers(self._paths, scratch=scratch)
        except LayerError as exc:
            raise SidecarStartError(f"policy layers unusable: {exc}") from exc
        bundles = Path(self._dir) / "bundles"
        shutil.rmtree(bundles, ignore_errors=True)
        self._staged = [stage(la, bundles / f"{i}-{la.name}") for i, la in enumerate(layers)]
        self.layers = layers

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._stage()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._stderr.clear()
        proc = await asyncio.create_subprocess_exec(
            *launcher_argv(self._argv()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # opa prints load errors on stdout
            stderr=asyncio.subprocess.STDOUT,
        )
        self._drainer = asyncio.get_running_loop().create_task(self._drain(proc))
        return proc

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line and "root privileges" not in line:
                self._stderr.append(line)
                log.warning("opa: %s", line[:2000])

    def last_words(self) -> str:
        """OPA's recent stderr, for start-up errors."""
        return "\n".join(self._stderr) or "(opa printed nothing)"

    async def _wait_ready(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        probe = OpaClient(self.url, max_connections=1)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                if proc.returncode is not None:
                    if self._drainer is not None:  # read OPA's last words to EOF
                        await asyncio.wait({self._drainer}, timeout=2.0)
                    raise SidecarStartError(
                        f"opa exited with status {proc.returncode} while loading "
                        f"{', '.join(map(str, self._paths))}:\n{self.last_words()}"
                    )
                if await probe.healthy():
                    return
                await asyncio.sleep(0.05)
            raise SidecarStartError(f"opa not ready after {timeout:.0f}s:\n{self.last_words()}")
        finally:
            await probe.aclose()

    async def start(self) -> None:
        """Spawn OPA, wait until its bundles are active, then supervise it."""
        self._proc = await self._spawn()
        try:
            await self._wait_ready(self._proc, self._startup_timeout)
        except BaseException:
            await self._terminate()
            raise
        self._on_state(True)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = self._backoff[0]
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            self._note_exit(self._proc)
            if self._stopping:
                return
            self._on_state(False)
            log.error("opa exited with status %s; restarting in %.1fs", code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            self._on_restart()
            try:
                self._proc = await self._spawn()
                await self._wait_ready(self._proc, self._startup_timeout)
            except (SidecarStartError, OSError) as exc:
                log.error("opa restart failed: %s", exc)
                await self._terminate()
                self._note_exit(self._proc)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self._on_state(True)
            log.warning("opa restarted (pid %s)", self._proc.pid)

    def _note_exit(self, proc: asyncio.subprocess.Process | None) -> None:
        if proc is not None and proc.returncode is not None and proc.pid not in self._noted:
            self._noted.add(proc.pid)
            self.exit_codes.append(proc.returncode)

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        """Stop supervising and terminate the child."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._terminate()
        self._on_state(False)
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)
