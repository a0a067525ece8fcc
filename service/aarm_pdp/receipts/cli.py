"""Plain functions behind ``aarm-pdp receipts verify|export|keys|rotate``.

Each returns a process exit code: 0 success, 1 verification failed (or nothing to
verify), 2 the input could not be read (store unavailable, bad JWKS, bad file).
Output goes to ``out`` (stdout by default); nothing here prints key material except
public keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from aarm_pdp.errors import AarmError
from aarm_pdp.receipts.canonical import canonicalize
from aarm_pdp.receipts.envelope import ALGORITHM, b64encode, signing_payload
from aarm_pdp.receipts.factory import open_store
from aarm_pdp.receipts.keys import DEFAULT_RETIRE_AFTER, KeyRing
from aarm_pdp.receipts.keys import rotate as rotate_keys
from aarm_pdp.receipts.store import SessionKey
from aarm_pdp.receipts.verify import (
    NOT_AFTER,
    PublicKeys,
    VerifyResult,
    export_header,
    verify_chain,
)
from aarm_pdp.receipts.verify import verify_export as verify_export_lines

__all__ = ["export", "export_lines", "keys", "parse_duration", "rotate", "verify"]

OK: Final = 0
FAILED: Final = 1
ERROR: Final = 2


def _load_keys(jwks_path: str | os.PathLike[str]) -> PublicKeys:
    return PublicKeys.from_jwks(Path(jwks_path).read_bytes())


def export_lines(
    tenant: str, session_id: str, receipts: list[str], *, keyring: KeyRing | None = None
) -> list[str]:
    """A JSONL export: the header line, then each receipt's canonical text.

    With ``keyring`` the header is signed by its active key, so the declared count
    and last hash cannot be edited to hide a truncation.
    """
    header = export_header(tenant, session_id, receipts)
    if keyring is not None:
        key = keyring.active
        header["signature"] = {
            "algorithm": ALGORITHM,
            "key_id": key.key_id,
            "value": b64encode(key.sign(signing_payload(header))),
        }
    return [canonicalize(header).decode("utf-8"), *receipts]


def _print_failure(out: TextIO, where: str, result: VerifyResult) -> None:
    print(f"FAIL {where}: {result}", file=out)


def verify(
    path_or_dsn: str | None,
    jwks_path: str | os.PathLike[str],
    session: str | None = None,
    export_file: str | os.PathLike[str] | None = None,
    require_complete: bool = False,
    *,
    tenant: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Verify an export file, or every chain (or one session's) in a store.

    ``path_or_dsn`` is a SQLite path or a ``postgresql://`` DSN; ignored when
    ``export_file`` is given. ``session`` (optionally with ``tenant``) picks one
    session. Prints the first bad receipt and why, or ``ok: N receipts, M chains``.
    """
    out = out or sys.stdout
    try:
        keys = _load_keys(jwks_path)
    except (OSError, AarmError) as exc:
        print(f"error: cannot load JWKS {jwks_path}: {exc}", file=out)
        return ERROR
    if export_file is not None:
        try:
            # Lines end at "\n" only: str.splitlines() would also split inside a receipt
            # at U+2028, U+2029 or U+0085, which RFC 8785 leaves unescaped in strings.
            lines = Path(export_file).read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read {export_file}: {exc}", file=out)
            return ERROR
        result = verify_export_lines(lines, keys, require_complete=require_complete)
        if not result.ok:
            _print_failure(out, str(export_file), result)
            return FAILED
        print(f"ok: {result.receipts} receipts, 1 chains", file=out)
        return OK
    if path_or_dsn is None:
        print("error: give a store (path or DSN) or an export file", file=out)
        return ERROR
    try:
        return asyncio.run(_verify_store(path_or_dsn, keys, session, tenant, require_complete, out))
    except AarmError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=out)
        return ERROR


async def _verify_store(
    path_or_dsn: str,
    keys: PublicKeys,
    session: str | None,
    tenant: str | None,
    require_complete: bool,
    out: TextIO,
) -> int:
    store = open_store(path_or_dsn)
    try:
        chains: list[SessionKey] = [
            (t, s)
            for t, s in await store.sessions()
            if (session is None or s == session) and (tenant is None or t == tenant)
        ]
        if not chains:
            print("FAIL: no receipts" + (f" for session {session!r}" if session else ""), file=out)
            return FAILED
        total = 0
        for t, s in chains:
            texts = await store.export(t, s)
            result = verify_chain(texts, keys, require_complete=require_complete)
            if not result.ok:
                _print_failure(out, f"tenant={t!r} session={s!r}", result)
                return FAILED
            total += result.receipts
        print(f"ok: {total} receipts, {len(chains)} chains", file=out)
        return OK
    finally:
        await store.aclose()


def export(
    path_or_dsn: str,
    tenant: str,
    session_id: str,
    out_file: str | os.PathLike[str] | None = None,
    *,
    key_dir: str | os.PathLike[str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Write one session's receipts as JSONL (header line first) to ``out_file`` or stdout.

    With ``key_dir`` the header is signed with that directory's active key.
    """
    out = out or sys.stdout
    try:
        keyring = KeyRing.load(key_dir) if key_dir is not None else None
        texts = asyncio.run(_export(path_or_dsn, tenant, session_id))
    except AarmError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=out)
        return ERROR
    if not texts:
        print(f"FAIL: no receipts for tenant={tenant!r} session={session_id!r}", file=out)
        return FAILED
    data = "".join(f"{line}\n" for line in export_lines(tenant, session_id, texts, keyring=keyring))
    if out_file is None:
        out.write(data)
        return OK
    try:
        Path(out_file).write_text(data, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {out_file}: {exc}", file=out)
        return ERROR
    print(f"exported {len(texts)} receipts to {out_file}", file=out)
    return OK


async def _export(path_or_dsn: str, tenant: str, session_id: str) -> list[str]:
    store = open_store(path_or_dsn)
    try:
        return await store.export(tenant, session_id)
    finally:
        await store.aclose()


def keys(directory: str | os.PathLike[str], *, out: TextIO | None = None) -> int:
    """Print the JWKS of a key directory (public keys only)."""
    out = out or sys.stdout
    try:
        doc: dict[str, Any] = KeyRing.load(directory).jwks()
    except AarmError as exc:
        print(f"error: {exc.detail}", file=out)
        return ERROR
    print(json.dumps(doc, indent=2), file=out)
    return OK


_DURATION = re.compile(r"([0-9]+)([smhd]?)", re.ASCII)
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``0``, ``90``/``90s``, ``15m``, ``1h``, ``7d`` as a timedelta.

    Raises:
        ValueError: anything else.
    """
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 0, 90s, 15m, 1h, 7d)")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def rotate(
    directory: str | os.PathLike[str],
    *,
    retire_after: str | timedelta | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Add a new active key to a key directory and print its id (alone, on stdout).

    Older keys are kept and retired ``retire_after`` from now (default
    :data:`~aarm_pdp.receipts.keys.DEFAULT_RETIRE_AFTER`); the retirement time goes
    to ``err`` (stderr).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if retire_after is None:
            overlap = DEFAULT_RETIRE_AFTER
        elif isinstance(retire_after, str):
            overlap = parse_duration(retire_after)
        else:
            overlap = retire_after
    except ValueError as exc:
        print(f"error: --retire-after: {exc}", file=err)
        return ERROR
    try:
        kid = rotate_keys(directory, retire_after=overlap)
        ring = KeyRing.load(directory)
    except AarmError as exc:
        print(f"error: {exc.detail}", file=out)
        return ERROR
    print(kid, file=out)
    for jwk in ring.jwks()["keys"][1:]:
        if NOT_AFTER in jwk:
            print(f"key {jwk['kid']} retired from {jwk[NOT_AFTER]}", file=err)
    return OK
