"""The OPA sidecar client: one pooled, keep-alive async HTTP connection set.

httpx errors are translated here into :mod:`aarm_pdp.errors` types; none escapes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx

from aarm_pdp.decision.model import PolicyVersion
from aarm_pdp.errors import OpaBadResponse, OpaTimeout, OpaUnavailable, PolicyEngineError

ENTRYPOINT_RE = re.compile(r"[a-z_][a-z0-9_]*(/[a-z_][a-z0-9_]*)*")
_MAX_BODY = 4 * 1024 * 1024


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise OpaTimeout(f"opa timed out: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise OpaUnavailable(f"opa unreachable: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise OpaBadResponse(f"opa http error: {type(exc).__name__}") from exc


def _decode(resp: httpx.Response) -> Any:
    if resp.status_code != 200:
        raise OpaBadResponse(f"opa answered HTTP {resp.status_code}: {resp.text[:300]}")
    if len(resp.content) > _MAX_BODY:
        raise OpaBadResponse("opa answer larger than 4 MiB")
    try:
        return json.loads(resp.content)
    except ValueError as exc:
        raise OpaBadResponse("opa answer is not JSON") from exc


def transport_for(url: str) -> tuple[str, httpx.AsyncHTTPTransport]:
    """The base URL and transport for ``http://host:port`` or ``unix:///path.sock``."""
    if url.startswith("unix://"):
        return "http://opa", httpx.AsyncHTTPTransport(uds=url[len("unix://") :], retries=0)
    return url.rstrip("/"), httpx.AsyncHTTPTransport(retries=0)


class OpaClient:
    """Queries one OPA sidecar over its REST Data API."""

    def __init__(
        self,
        url: str,
        *,
        entrypoint: str = "aarm/main/decision",
        max_connections: int = 64,
        file_hash: str | None = None,
    ) -> None:
        if not ENTRYPOINT_RE.fullmatch(entrypoint):
            raise ValueError(f"invalid entrypoint path {entrypoint!r}")
        base, transport = transport_for(url)
        self._path = f"/v1/data/{entrypoint}"
        self._file_hash = file_hash
        self._http = httpx.AsyncClient(
            base_url=base,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=60.0,
            ),
            headers={"content-type": "application/json"},
            timeout=httpx.Timeout(5.0),
        )

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
        body = json.dumps({"input": input_doc}, separators=(",", ":"), ensure_ascii=False)
        with _translate_errors():
            resp = await self._http.post(self._path, content=body.encode(), timeout=timeout)
        return _decode(resp)

    async def _get(self, path: str, timeout: float = 2.0) -> Any:
        with _translate_errors():
            resp = await self._http.get(path, timeout=timeout)
        return _decode(resp)

    async def tool_catalogue(self) -> Any:
        """``data.aarm.catalogue.tools`` as OPA holds it ({} when the policy has none)."""
        return (await self._get("/v1/data/aarm/catalogue/tools")).get("result") or {}

    async def healthy(self) -> bool:
        try:
            with _translate_errors():
                resp = await self._http.get("/health", params={"bundles": "true"}, timeout=1.0)
        except PolicyEngineError:
            return False
        return resp.status_code == 200

    async def policy_version(self) -> PolicyVersion:
        """Revisions from the loaded bundle manifests; hash of the files or the policies.

        In managed mode the hash covers the policy files handed to OPA (modules and
        data); against an external sidecar it covers the raw modules OPA reports
        plus every bundle's manifest and etag.
        """
        bundles = (await self._get("/v1/data/system/bundles")).get("result") or {}
        revisions = sorted(
            str(b.get("manifest", {}).get("revision", ""))
            for b in bundles.values()
            if isinstance(b, dict)
        )
        revision = ",".join(r for r in revisions if r)
        if self._file_hash is not None:
            return PolicyVersion(revision=revision, hash=self._file_hash)
        policies = (await self._get("/v1/policies")).get("result") or []
        raws = sorted(str(p.get("raw", "")) for p in policies if isinstance(p, dict))
        meta = sorted(
            json.dumps({"manifest": b.get("manifest"), "etag": b.get("etag")}, sort_keys=True)
            for b in bundles.values()
            if isinstance(b, dict)
        )
        digest = hashlib.sha256(json.dumps([raws, meta]).encode()).hexdigest()
        return PolicyVersion(revision=revision, hash=digest)

    async def aclose(self) -> None:
        await self._http.aclose()
