"""Redaction of secrets: by parameter name and by value shape. PURE.

One place decides what counts as a secret, for receipts, telemetry, the semantic
scorer's action text and logs. ``REDACTED`` replaces what is withheld.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
MAX_REDACT_DEPTH = 16

_SECRET_SUBSTRINGS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "token",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "privatekey",
    "private_key",
    "credential",
    "authorization",
    "cookie",
    "sessionid",
    "session_id",
    "bearer",
    "signature",
    "client_secret",
)
_SECRET_PARTS = frozenset({"auth", "pin", "cvv", "otp", "key"})
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|\bsk-[A-Za-z0-9_\-]{16,}"  # OpenAI/Stripe-style secret keys
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack tokens
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"  # JWT
    r"|\b[Bb]earer\s+[A-Za-z0-9._~+/\-]{8,}=*"
)
_NAME_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """True when a parameter name looks like it holds a secret (case and style insensitive)."""
    snake = _CAMEL.sub("_", name).lower()
    norm = _NAME_SPLIT.sub("_", snake).strip("_")
    if any(s in norm for s in _SECRET_SUBSTRINGS):
        return True
    return any(part in _SECRET_PARTS for part in norm.split("_"))


def redact_values(text: str) -> str:
    """``text`` with every credential-shaped substring replaced by :data:`REDACTED`."""
    return SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any, depth: int = 0) -> Any:
    """A JSON value with secret-named members withheld; integral floats below 2**53 as ints."""
    if depth > MAX_REDACT_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_name(k) else redact(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
