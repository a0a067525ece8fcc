"""Signed, hash-chained, append-only action receipts (AARM R5).

Public API::

    canonicalize(value) -> bytes                    RFC 8785 bytes
    KeyRing.open(dir) / KeyRing.load(dir)           Ed25519 keys of a key directory
    init_key_dir(dir) -> key_id, rotate(dir, retire_after=) -> key_id, jwks(dir) -> dict
    ReceiptLog(store, keyring).append(body)         chain + sign + durably store
    SqliteReceiptStore(path), PostgresReceiptStore(dsn), open_store(path_or_dsn)
    MemoryReceiptStore()                            the fake, for unit tests
    PublicKeys.from_jwks(doc)                       verifier keys, with their KeyWindow
    verify_receipt / verify_chain / verify_export   offline, pure -> VerifyResult

The format, for an independent verifier, with test vectors: ``docs/receipts.md``.
"""

from __future__ import annotations

from aarm_pdp.receipts.canonical import canonicalize
from aarm_pdp.receipts.envelope import (
    ALGORITHM,
    CANONICALIZATION,
    GENESIS,
    TERMINAL_KIND,
    VERSION,
    Receipt,
    receipt_hash,
)
from aarm_pdp.receipts.factory import open_store
from aarm_pdp.receipts.keys import DEFAULT_KEY_DIR, KeyRing, SigningKey, init_key_dir, jwks, rotate
from aarm_pdp.receipts.log import LogStats, ReceiptLog
from aarm_pdp.receipts.memory_store import MemoryReceiptStore
from aarm_pdp.receipts.postgres_store import PostgresReceiptStore
from aarm_pdp.receipts.sqlite_store import SqliteReceiptStore
from aarm_pdp.receipts.store import ReceiptStore
from aarm_pdp.receipts.verify import (
    KeyWindow,
    PublicKeys,
    Reason,
    VerifyResult,
    verify_chain,
    verify_export,
    verify_receipt,
)

__all__ = [
    "ALGORITHM",
    "CANONICALIZATION",
    "DEFAULT_KEY_DIR",
    "GENESIS",
    "TERMINAL_KIND",
    "VERSION",
    "KeyRing",
    "KeyWindow",
    "LogStats",
    "MemoryReceiptStore",
    "PostgresReceiptStore",
    "PublicKeys",
    "Reason",
    "Receipt",
    "ReceiptLog",
    "ReceiptStore",
    "SigningKey",
    "SqliteReceiptStore",
    "VerifyResult",
    "canonicalize",
    "init_key_dir",
    "jwks",
    "open_store",
    "receipt_hash",
    "rotate",
    "verify_chain",
    "verify_export",
    "verify_receipt",
]
