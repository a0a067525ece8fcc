"""Plain functions behind ``aarm-pdp receipts verify|export|keys|rotate|archive``.

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
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from aarm_pdp.errors import AarmError
from aarm_pdp.receipts.archive import (
    ArchiveReport,
    ArchiveSection,
    export_lines,
    read_archive,
    verify_with_archives,
)
from aarm_pdp.receipts.archive import archive as archive_store
from aarm_pdp.receipts.factory import open_store
from aarm_pdp.receipts.keys import DEFAULT_RETIRE_AFTER, KeyRing
from aarm_pdp.receipts.keys import rotate as rotate_keys
from aarm_pdp.receipts.store import SessionKey
from aarm_pdp.receipts.verify import (
    NOT_AFTER,
    PublicKeys,
    VerifyResult,
    format_timestamp,
    parse_timestamp,
    split_export,
    verify_chain,
)
from aarm_pdp.receipts.verify import verify_export as verify_export_lines

__all__ = [
    "archive",
    "export",
    "export_lines",
    "keys",
    "parse_cutoff",
    "parse_duration",
    "rotate",
    "verify",
]

OK: Final = 0
FAILED: Final = 1
ERROR: Final = 2


def _load_keys(jwks_path: str | os.PathLike[str]) -> PublicKeys:
    return PublicKeys.from_jwks(Path(jwks_path).read_bytes())


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
    archives: Sequence[str | os.PathLike[str]] = (),
    out: TextIO | None = None,
) -> int:
    """Verify an export or archive file, or every chain (or one session's) in a store.

    ``path_or_dsn`` is a SQLite path or a ``postgresql://`` DSN; ignored when
    ``export_file`` is given. ``session`` (optionally with ``tenant``) picks one
    session. A chain may begin with a checkpoint (an archived prefix); with
    ``archives`` (files ``receipts archive`` wrote) each checkpoint found in them is
    replaced by its archived records and the chain verified end to end. Prints the
    first bad receipt and why, or ``ok: N receipts, M chains``.
    """
    out = out or sys.stdout
    try:
        keys = _load_keys(jwks_path)
    except (OSError, AarmError) as exc:
        print(f"error: cannot load JWKS {jwks_path}: {exc}", file=out)
        return ERROR
    try:
        sections = [x for path in archives for x in read_archive(path)]
    except (OSError, UnicodeDecodeError, AarmError) as exc:
        print(f"error: cannot read archive: {exc}", file=out)
        return ERROR
    if export_file is not None:
        return _verify_file(export_file, keys, sections, require_complete, out)
    if path_or_dsn is None:
        print("error: give a store (path or DSN) or an export file", file=out)
        return ERROR
    try:
        return asyncio.run(
            _verify_store(path_or_dsn, keys, session, tenant, require_complete, sections, out)
        )
    except AarmError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=out)
        return ERROR


def _verify_file(
    export_file: str | os.PathLike[str],
    keys: PublicKeys,
    archived: Sequence[ArchiveSection],
    require_complete: bool,
    out: TextIO,
) -> int:
    """An export file (one section) or an archive (one section per chain)."""
    try:
        # Lines end at "\n" only: str.splitlines() would also split inside a receipt
        # at U+2028, U+2029 or U+0085, which RFC 8785 leaves unescaped in strings.
        lines = Path(export_file).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {export_file}: {exc}", file=out)
        return ERROR
    sections = split_export(lines) or [[]]
    total = resolved = 0
    for n, section in enumerate(sections):
        where = str(export_file) if len(sections) == 1 else f"{export_file} section {n + 1}"
        result = verify_export_lines(section, keys, require_complete=require_complete)
        if result.ok and archived:
            result, k = verify_with_archives(
                [str(x) for x in section[1:]], keys, archived, require_complete=require_complete
            )
            resolved += k
        if not result.ok:
            _print_failure(out, where, result)
            return FAILED
        total += result.receipts
    print(f"ok: {total} receipts, {len(sections)} chains{_resolved(resolved)}", file=out)
    return OK


def _resolved(n: int) -> str:
    return f" ({n} checkpoints verified against their archives)" if n else ""


async def _verify_store(
    path_or_dsn: str,
    keys: PublicKeys,
    session: str | None,
    tenant: str | None,
    require_complete: bool,
    archived: Sequence[ArchiveSection],
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
        total = resolved = 0
        for t, s in chains:
            texts = await store.export(t, s)
            if archived:
                result, k = verify_with_archives(
                    texts, keys, archived, require_complete=require_complete, session=(t, s)
                )
                resolved += k
            else:
                result = verify_chain(texts, keys, require_complete=require_complete)
            if not result.ok:
                _print_failure(out, f"tenant={t!r} session={s!r}", result)
                return FAILED
            total += result.receipts
        print(f"ok: {total} receipts, {len(chains)} chains{_resolved(resolved)}", file=out)
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


def parse_cutoff(text: str, *, now_ns: int | None = None) -> int:
    """``--before``: an RFC 3339 date-time, or a duration back from now (``30d``, ``12h``),
    as nanoseconds since the epoch.

    Raises:
        ValueError: neither.
    """
    try:
        return parse_timestamp(text.strip())
    except ValueError:
        pass
    try:
        age = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"not an RFC 3339 date-time or a duration: {text!r} (use e.g. 30d, 12h, "
            "2026-05-01T00:00:00Z)"
        ) from None
    now = now_ns if now_ns is not None else time.time_ns()
    return now - age // timedelta(microseconds=1) * 1000


def archive(
    path_or_dsn: str,
    before: str,
    out_file: str | os.PathLike[str],
    *,
    key_dir: str | os.PathLike[str],
    jwks_path: str | os.PathLike[str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Move every chain's receipts issued before ``before`` into the new file ``out_file``
    and replace each archived prefix by a checkpoint signed with ``key_dir``'s active key.

    Each prefix is verified first, against ``jwks_path`` if given, else the key
    directory's public keys. Exit 0: done (or nothing to archive); 1: some chains were
    left untouched (they did not verify, or the store refused); 2: nothing was done
    (bad arguments, keys, store, or ``out_file`` exists).
    """
    out = out or sys.stdout
    try:
        cutoff = parse_cutoff(before)
    except ValueError as exc:
        print(f"error: --before: {exc}", file=out)
        return ERROR
    try:
        keyring = KeyRing.load(key_dir)
        keys = _load_keys(jwks_path) if jwks_path is not None else None
    except (OSError, AarmError) as exc:
        print(f"error: {getattr(exc, 'detail', exc)}", file=out)
        return ERROR
    try:
        report = asyncio.run(_archive(path_or_dsn, keyring, cutoff, out_file, keys))
    except AarmError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=out)
        return ERROR
    except OSError as exc:
        print(f"error: cannot write {out_file}: {exc}", file=out)
        return ERROR
    for failure in report.failed:
        print(f"FAIL {failure} (left in the store)", file=out)
    if report.out is None and not report.failed:
        print(f"nothing to archive before {format_timestamp(cutoff)}", file=out)
    elif report.out is not None:
        print(
            f"archived {report.receipts} receipts of {report.chains} chains to {report.out}"
            f" (sha256 {report.sha256})",
            file=out,
        )
    return FAILED if report.failed else OK


async def _archive(
    path_or_dsn: str,
    keyring: KeyRing,
    cutoff: int,
    out_file: str | os.PathLike[str],
    keys: PublicKeys | None,
) -> ArchiveReport:
    store = open_store(path_or_dsn)
    try:
        return await archive_store(store, keyring, before_ns=cutoff, out=out_file, keys=keys)
    finally:
        await store.aclose()
