"""Open the receipt store a configuration names: the adapters, chosen in one place.

The port (:mod:`aarm_pdp.receipts.store`) knows no adapter; each adapter imports the
port; only this module imports the adapters.
"""

from __future__ import annotations

from aarm_pdp.receipts.postgres_store import PostgresReceiptStore
from aarm_pdp.receipts.sqlite_store import SqliteReceiptStore
from aarm_pdp.receipts.store import ReceiptStore

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def open_store(path_or_dsn: str) -> ReceiptStore:
    """A PostgresReceiptStore for a ``postgres://``/``postgresql://`` DSN, else SQLite."""
    if path_or_dsn.startswith(POSTGRES_SCHEMES):
        return PostgresReceiptStore(path_or_dsn)
    return SqliteReceiptStore(path_or_dsn)
