"""The OPA sidecar client: keep-alive HTTP/1.1 connections to OPA's REST Data API.

Transport is :mod:`aarm_pdp.opa.http`, a minimal client for exactly this peer,
chosen by measurement over aiohttp, which had replaced httpx (docs/performance.md).
Its errors are translated here into :mod:`aarm_pdp.errors` types; none escapes.
An ``https://`` OPA is TLS with verification and host name check (TLS 1.2 or newer,
``ca_file`` or the system trust store, optionally a client certificate); every TLS
failure is :class:`~aarm_pdp.errors.OpaUnavailable`, so the decision fails closed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from aarm_pdp.config import ENTRYPOINT_RE
from aarm_pdp.errors import OpaBadResponse, OpaTimeout, OpaUnavailable
from aarm_pdp.model.decision import PolicyVersion
from aarm_pdp.opa.http import (
    HttpPool,
    HttpProtocolError,
    HttpTimeout,
    HttpUnavailable,
    tls_context,
)
from aarm_pdp.opa.layers import is_effective, policy_version

log = logging.getLogger("aarm_pdp.opa.client")
_MAX_BODY = 4 * 1024 * 1024
_VERSIONS_CACHED = 64
_VERSION_PROBE = "/v1/data/aarm/layers/overlay_names?provenance=true"
"""A cheap query whose answer names the loaded bundles (any data path would do)."""


def _decode(status: int, content: bytes) -> Any:
    if status != 200:
        raise OpaBadResponse(f"opa answered HTTP {status}: {content[:300]!r}")
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise OpaBadResponse("opa answer is not JSON") from exc


def _warn_unbuilt(bundles: tuple[tuple[str, Any], ...]) -> None:
    """Say once per new set of bundles when receipts cannot name their files' digest."""
    if not bundles:
        log.warning("OPA reports no bundles: receipts carry an empty policy revision and hash")
    for name, revision in bundles:
        if not is_effective(str(revision or "")):
            log.warning(
                "OPA bundle %s has revision %r, no content digest: receipts name it as it is "
                "(build the layers with `aarm-pdp policy build`, docs/overlays.md)",
                name,
                revision,
            )


_REQUEST_SCOPE_PATHS = tuple(
    f"/v1/data/aarm/{root}/{key}/request_scope"
    for root in ("layers/config", "config")
    for key in ("intents", "provenance")
)


class OpaClient:
    """Queries one OPA over its REST Data API (``http(s)://host:port`` or ``unix://``).

    ``ca_file``, ``client_cert`` and ``client_key`` apply to ``https://`` only: the
    CAs trusted for OPA's certificate (None: the system store) and a client
    certificate for mutual TLS. Unusable files raise :class:`ValueError`.
    """

    def __init__(
        self,
        url: str,
        *,
        entrypoint: str = "aarm/main/decision",
        max_connections: int = 64,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
    ) -> None:
        if not ENTRYPOINT_RE.fullmatch(entrypoint):
            raise ValueError(f"invalid entrypoint path {entrypoint!r}")
        https = url.startswith("https://")
        if not https and (ca_file or client_cert or client_key):
            raise ValueError("ca_file, client_cert and client_key need an https:// OPA url")
        if url.startswith("unix://"):
            self._pool = HttpPool(
                unix_path=url[len("unix://") :], max_connections=max_connections, max_body=_MAX_BODY
            )
            self._prefix = ""
        else:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"OPA url must be http(s)://host:port or unix:///path, not {url!r}"
                )
            tls = None
            if https:
                try:
                    tls = tls_context(ca_file, client_cert, client_key)
                except OSError as exc:  # ssl.SSLError too: not PEM, key does not match
                    raise ValueError(f"OPA TLS files unusable: {exc}") from exc
            self._pool = HttpPool(
                host=parts.hostname,
                port=parts.port or (443 if https else 80),
                max_connections=max_connections,
                max_body=_MAX_BODY,
                tls=tls,
            )
            self._prefix = parts.path.rstrip("/")
        self._decide_path = f"{self._prefix}/v1/data/{entrypoint}?provenance=true"
        self._versions: dict[tuple[tuple[str, Any], ...], PolicyVersion] = {}

    async def _request(self, method: str, path: str, timeout: float, body: bytes = b"") -> Any:
        head = self._pool.head(method, path, len(body) if method == "POST" else None)
        try:
            status, content = await self._pool.request(head, body, timeout)
        except HttpTimeout as exc:
            raise OpaTimeout("opa timed out") from exc
        except HttpUnavailable as exc:
            raise OpaUnavailable(f"opa unreachable: {exc}") from exc
        except HttpProtocolError as exc:
            raise OpaBadResponse(f"opa answer unreadable: {exc}") from exc
        return _decode(status, content)

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
        if timeout <= 0:
            raise OpaTimeout("no time left before the caller's deadline")
        body = orjson.dumps({"input": input_doc})
        return await self._request("POST", self._decide_path, timeout, body)

    async def _get(self, path: str, timeout: float = 2.0) -> Any:
        return await self._request("GET", f"{self._prefix}{path}", timeout)

    async def tool_catalogue(self) -> Any:
        """The merged catalogue of every layer (``data.aarm.layers.tools``) as OPA holds
        it; a pack without layers: ``data.aarm.catalogue.tools``; {} when neither."""
        merged = (await self._get("/v1/data/aarm/layers/tools")).get("result")
        if merged is not None:
            return merged
        return (await self._get("/v1/data/aarm/catalogue/tools")).get("result") or {}

    async def request_scope(self) -> Any:
        """The config's request patterns (category -> regex over the request text) as the
        merged layers hold them: ``intents.request_scope``, else the older
        ``provenance.request_scope``; a pack without layers: the same keys of
        ``data.aarm.config``; {} when none."""
        for path in _REQUEST_SCOPE_PATHS:
            found = (await self._get(path)).get("result")
            if found is not None:
                return found
        return {}

    async def healthy(self) -> bool:
        head = self._pool.head("GET", f"{self._prefix}/health?bundles=true", None)
        try:
            status, _ = await self._pool.request(head, b"", 1.0)
        except (HttpTimeout, HttpUnavailable, HttpProtocolError):
            return False
        return status == 200

    def answer_policy(self, body: Any) -> PolicyVersion:
        """The policy that gave ``body`` (an :meth:`evaluate` answer): from the bundle
        revisions OPA returned with it (``provenance.bundles``).

        Cached by those revisions, so a decision pays a few dictionary look-ups.
        """
        try:
            bundles = body["provenance"].get("bundles") or {}  # none: files, not bundles
            key = tuple((k, v.get("revision")) for k, v in bundles.items())
        except (KeyError, TypeError, AttributeError):
            raise OpaBadResponse("opa answer carries no provenance") from None
        version = self._versions.get(key)
        if version is None:
            if len(self._versions) >= _VERSIONS_CACHED:
                self._versions.clear()
            version = policy_version(str(rev or "") for _, rev in key)
            self._versions[key] = version
            _warn_unbuilt(key)
        return version

    async def policy_version(self) -> PolicyVersion:
        """The policy OPA runs now: its bundles' effective revisions (docs/overlays.md)."""
        return self.answer_policy(await self._get(_VERSION_PROBE))

    async def aclose(self) -> None:
        await self._pool.aclose()
