"""Approver authentication: bearer tokens mapped to approver identities and groups.

Approvers hold their own credentials, issued out of band and configured as sha256
hashes (never in clear). An agent's identity is never an approver: the registry
refuses to load an entry whose id is also listed as an agent, and resolution
refuses an approver who is the acting agent, service or human of the ticket
(four-eyes). Anything else is ``identity_verified = false``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Approver:
    """An authenticated approver."""

    id: str
    groups: frozenset[str]


class ApproverRegistry:
    """Token hash -> approver, loaded from a JSON file."""

    def __init__(self, entries: list[tuple[str, Approver]] | None = None) -> None:
        self._by_hash = dict(entries or [])

    @classmethod
    def load(cls, path: Path) -> ApproverRegistry:
        """Read ``{"approvers": [{"id", "groups": [...], "token_sha256"}]}``."""
        doc: Any = json.loads(path.read_text())
        entries = []
        for item in doc.get("approvers", []):
            digest = str(item["token_sha256"]).lower()
            if len(digest) != 64:
                raise ValueError(f"approver {item.get('id')!r}: token_sha256 must be 64 hex")
            entries.append((digest, Approver(str(item["id"]), frozenset(item.get("groups", [])))))
        return cls(entries)

    def authenticate(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Approver | None:
        """The approver behind an ``authorization: Bearer <token>`` header, or None."""
        for key, value in metadata or ():
            if key.lower() != "authorization":
                continue
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            digest = hashlib.sha256(token.strip().encode()).hexdigest()
            for known, approver in self._by_hash.items():
                if hmac.compare_digest(known, digest):
                    return approver
            return None
        return None

    def __len__(self) -> int:
        return len(self._by_hash)
