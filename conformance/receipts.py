"""Receipts as a relying party sees them: fetched over gRPC, verified offline.

Two verifiers: ``aarm_pdp.receipts.verify`` (the project's offline verifier, pure) and a
minimal independent one here (the ``rfc8785`` package for JCS plus ``cryptography`` for
Ed25519), so a canonicalisation bug shared by signer and verifier does not hide.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import rfc8785
from aarm_pdp.receipts.verify import PublicKeys, verify_chain, verify_receipt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "find_values",
    "independent_verify",
    "leaf_values",
    "parse",
    "tamper",
    "verify_chain",
    "verify_receipt",
]


def parse(payload: str) -> dict[str, Any] | None:
    """The receipt JSON object of a ``Receipt.payload``, or None when there is none."""
    if not payload:
        return None
    obj = json.loads(payload)
    return obj if isinstance(obj, dict) else None


def find_values(obj: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in ``obj``."""
    out: list[Any] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.append(v)
            out.extend(find_values(v, key))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_values(v, key))
    return out


def leaf_values(obj: Any) -> Iterator[Any]:
    """Every scalar in ``obj``."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from leaf_values(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from leaf_values(v)
    else:
        yield obj


def has_leaf(obj: Any, value: Any) -> bool:
    return any(v == value for v in leaf_values(obj))


def tamper(receipt: dict[str, Any], key: str, value: Any, parent: str | None = None) -> bool:
    """Set the first ``key`` (under an object named ``parent`` if given) to ``value``."""

    def walk(node: Any, under: str | None) -> bool:
        if isinstance(node, dict):
            for k in list(node):
                if k == key and (parent is None or under == parent) and k != "signature":
                    node[k] = value
                    return True
            return any(walk(v, k) for k, v in node.items() if k != "signature")
        if isinstance(node, list):
            return any(walk(v, under) for v in node)
        return False

    return walk(receipt, None)


def tampered(
    receipt: dict[str, Any], key: str, value: Any, parent: str | None = None
) -> dict[str, Any] | None:
    copy_ = copy.deepcopy(receipt)
    return copy_ if tamper(copy_, key, value, parent) else None


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def independent_verify(receipt: dict[str, Any], jwks: dict[str, Any]) -> str | None:
    """None if the Ed25519 signature over the JCS bytes (minus ``signature``) verifies."""
    sig = receipt.get("signature")
    if not isinstance(sig, dict):
        return "no signature object"
    if sig.get("algorithm") not in ("Ed25519", "EdDSA"):
        return f"algorithm {sig.get('algorithm')!r} is not Ed25519"
    key = next(
        (
            k
            for k in jwks.get("keys", [])
            if k.get("kid") == sig.get("key_id") and k.get("crv") == "Ed25519"
        ),
        None,
    )
    if key is None:
        return f"key_id {sig.get('key_id')!r} not in the JWKS"
    body = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(_b64url(key["x"])).verify(
            base64.b64decode(sig["value"]), rfc8785.dumps(body)
        )
    except (InvalidSignature, ValueError, KeyError) as exc:
        return f"signature does not verify: {type(exc).__name__}"
    return None


def keys_from(jwks_text: str) -> tuple[dict[str, Any], PublicKeys]:
    doc = json.loads(jwks_text)
    return doc, PublicKeys.from_jwks(doc)
