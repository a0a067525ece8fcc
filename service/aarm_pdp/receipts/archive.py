"""Receipt retention: move old chain prefixes to an archive file, leave a signed checkpoint.

``aarm-pdp receipts archive --before 30d --out var/archive/receipts-2026-06.jsonl``:

1. For every chain of the store (internal ``aarm:`` chains excepted: the revocation
   chain is replayed at start and must stay whole), the *prefix* to archive is its
   longest run of records whose ``issued_at`` is before the cutoff: a leading
   checkpoint of an earlier archive, then receipts. A chain with no receipt before the
   cutoff is left alone. Each prefix is verified first (a broken chain is reported and
   left alone: a checkpoint must never vouch for a tampered history).
2. The archive file is written: one export section per chain (a header signed by the
   active key declaring the count and last hash, then the records), to a temporary
   file, fsynced, then linked to ``--out`` (never replacing an existing file) and the
   directory fsynced. ``receipts verify --export`` checks it on its own.
3. Per chain, in ONE store transaction (:meth:`ReceiptStore.replace_prefix`): the
   prefix is deleted and a **checkpoint** signed by the active key is inserted in its
   place: the chain, the archived head (its seq, hash and kind), the first seq and
   count archived, the archive file's sha256, the time and key (docs/receipts.md §9).

A crash before step 3 leaves every receipt in the store (the archive is a copy); a
crash during step 3 leaves every chain either archived (its records in the file) or
untouched. Run again with a new ``--out``. Appends continue after a checkpoint: its
row carries the head hash and seq, so the next receipt is seq + 1 with prev = head,
and the store refuses any insert at or below a checkpoint's seq (a stale head
conflicts and is re-read instead of restarting the chain at seq 1).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aarm_pdp.errors import AarmError, ErrorCode, ReceiptStoreUnavailable
from aarm_pdp.receipts.canonical import canonicalize, parse
from aarm_pdp.receipts.envelope import (
    ALGORITHM,
    CANONICALIZATION,
    CHECKPOINT_KIND,
    VERSION,
    b64encode,
    index_fields,
    receipt_hash,
    signing_payload,
)
from aarm_pdp.receipts.keys import KeyRing
from aarm_pdp.receipts.store import ReceiptStore, StoreConflict, StoredReceipt
from aarm_pdp.receipts.verify import (
    CHECKPOINT_TYPE,
    EXPORT_TYPE,
    PublicKeys,
    Reason,
    VerifyResult,
    export_header,
    format_timestamp,
    is_checkpoint,
    parse_timestamp,
    split_export,
    verify_chain,
    verify_export,
)

__all__ = [
    "INTERNAL_PREFIX",
    "ArchiveReport",
    "ArchiveSection",
    "archive",
    "export_lines",
    "make_checkpoint",
    "read_archive",
    "verify_with_archives",
]

INTERNAL_PREFIX: Final = "aarm:"
"""Chains whose session_id starts with this are the service's own (the revocation chain,
replayed whole at start): never archived."""


@dataclass
class ArchiveReport:
    """What one ``archive`` run did."""

    out: Path | None = None
    sha256: str | None = None
    chains: int = 0
    """Chains archived (prefix replaced by a checkpoint)."""
    receipts: int = 0
    """Receipts moved to the archive (leading checkpoints of earlier archives not counted)."""
    failed: list[str] = field(default_factory=list)
    """Chains left untouched, and why (their prefix did not verify, the store failed)."""


@dataclass(frozen=True)
class _Cut:
    tenant: str
    session_id: str
    lines: list[str]
    """The records to archive: a leading checkpoint (if any), then receipts."""
    head: Mapping[str, Any]
    """The last archived receipt."""
    first_seq: int
    count: int
    previous_checkpoint: str | None


def _cut(tenant: str, session_id: str, texts: Sequence[str], before_ns: int) -> _Cut | None:
    """The prefix of one chain issued before ``before_ns``, or None if nothing is."""
    records = [parse(t) for t in texts]
    start = 1 if records and is_checkpoint(records[0]) else 0
    end = start
    while end < len(records):
        try:
            when = parse_timestamp(records[end].get("issued_at"))
        except ValueError:
            break  # not archived; verification of the whole chain names it
        if when >= before_ns:
            break
        end += 1
    if end == start:
        return None
    head = records[end - 1]
    previous = receipt_hash(texts[0]) if start else None
    first_seq = int(records[0]["chain"]["seq"]) + 1 if start else 1
    return _Cut(
        tenant,
        session_id,
        list(texts[:end]),
        head,
        first_seq,
        end - start,
        previous,
    )


def export_lines(
    tenant: str, session_id: str, receipts: list[str], *, keyring: KeyRing | None = None
) -> list[str]:
    """A JSONL export (``receipts export``, and each section of an archive): the header
    line, then each record's canonical text.

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


def make_checkpoint(
    keyring: KeyRing,
    *,
    tenant: str,
    session_id: str,
    head_seq: int,
    head_hash: str,
    head_kind: str,
    first_seq: int,
    count: int,
    archive_sha256: str,
    previous_checkpoint: str | None,
    issued_at_ns: int,
    receipt_id: str | None = None,
) -> str:
    """A checkpoint signed by the ring's active key, as its canonical signed text.

    Raises:
        AarmError: ``issued_at_ns`` is outside the active key's validity window.
    """
    key = keyring.active
    if key.window.check(issued_at_ns) is not None:
        raise AarmError(
            f"receipt keys: active key {key.key_id!r} is not valid now: rotate first",
            code=ErrorCode.INTERNAL,
        )
    cp: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "version": VERSION,
        "canonicalization": CANONICALIZATION,
        "receipt_id": receipt_id or f"checkpoint-{uuid.uuid4().hex}",
        "kind": CHECKPOINT_KIND,
        "issued_at": format_timestamp(issued_at_ns),
        "chain": {"tenant": tenant, "session_id": session_id, "seq": head_seq},
        "head": {"hash": head_hash, "kind": head_kind},
        "archive": {"first_seq": first_seq, "count": count, "sha256": archive_sha256},
        "previous_checkpoint": previous_checkpoint,
    }
    cp["signature"] = {
        "algorithm": ALGORITHM,
        "key_id": key.key_id,
        "value": b64encode(key.sign(signing_payload(cp))),
    }
    return canonicalize(cp).decode("utf-8")


def _refuse_existing(path: Path) -> None:
    if os.path.lexists(path):
        raise FileExistsError(f"{path} exists: an archive is never overwritten")


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably, refusing to replace an existing file:
    temporary file, fsync, hard link into place (fails if ``path`` exists), fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_existing(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


async def archive(
    store: ReceiptStore,
    keyring: KeyRing,
    *,
    before_ns: int,
    out: str | os.PathLike[str],
    keys: PublicKeys | None = None,
    now_ns: int | None = None,
) -> ArchiveReport:
    """Archive every chain's records issued before ``before_ns`` into the new file ``out``.

    ``keys`` verify each prefix before it is archived (default: the ring's public keys).

    Raises:
        FileExistsError: ``out`` exists.
        OSError: the archive file could not be written (the store is untouched).
        ReceiptStoreUnavailable: the store could not be read.
        AarmError: the active key is not valid now.
    """
    path = Path(out)
    _refuse_existing(path)
    keys = keys or keyring.public_keys()
    now = now_ns if now_ns is not None else time.time_ns()
    report = ArchiveReport()
    cuts: list[_Cut] = []
    for tenant, session_id in await store.sessions():
        if session_id.startswith(INTERNAL_PREFIX):
            continue
        texts = await store.export(tenant, session_id)
        cut = _cut(tenant, session_id, texts, before_ns)
        if cut is None:
            continue
        checked = verify_chain(cut.lines, keys, session=(tenant, session_id))
        if not checked.ok:
            report.failed.append(f"tenant={tenant!r} session={session_id!r}: {checked}")
            continue
        cuts.append(cut)
    if not cuts:
        return report
    data = "".join(
        f"{line}\n"
        for cut in cuts
        for line in export_lines(cut.tenant, cut.session_id, cut.lines, keyring=keyring)
    ).encode("utf-8")
    _write_new(path, data)
    digest = hashlib.sha256(data).hexdigest()
    report.out, report.sha256 = path, digest
    for cut in cuts:
        head_chain = cut.head["chain"]
        head_hash = receipt_hash(cut.lines[-1])
        text = make_checkpoint(
            keyring,
            tenant=cut.tenant,
            session_id=cut.session_id,
            head_seq=int(head_chain["seq"]),
            head_hash=head_hash,
            head_kind=str(cut.head["kind"]),
            first_seq=cut.first_seq,
            count=cut.count,
            archive_sha256=digest,
            previous_checkpoint=cut.previous_checkpoint,
            issued_at_ns=now,
        )
        row = StoredReceipt(index_fields(parse(text)), head_hash, text)
        try:
            await store.replace_prefix(
                cut.tenant,
                cut.session_id,
                through_seq=int(head_chain["seq"]),
                through_hash=head_hash,
                expected_rows=len(cut.lines),
                checkpoint=row,
            )
        except (StoreConflict, ReceiptStoreUnavailable) as exc:
            report.failed.append(f"tenant={cut.tenant!r} session={cut.session_id!r}: {exc}")
            continue
        report.chains += 1
        report.receipts += cut.count
    return report


# --- verifying with archives -----------------------------------------------------------


@dataclass(frozen=True)
class ArchiveSection:
    """One chain's section of an archive file: its header and records."""

    file: Path
    file_sha256: str
    tenant: str
    session_id: str
    last_hash: str
    header: str
    lines: list[str]
    """The records (header excluded)."""


def read_archive(path: str | os.PathLike[str]) -> list[ArchiveSection]:
    """The sections of an archive (or export) file, with the file's sha256.

    Sections whose header is unreadable are skipped here (``verify --export`` of the
    file names them).

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read.
    """
    file = Path(path)
    raw = file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    out: list[ArchiveSection] = []
    for section in split_export(raw.decode("utf-8").split("\n")):
        header = parse(section[0])
        if not isinstance(header, Mapping) or header.get("type") != EXPORT_TYPE:
            continue
        tenant, session_id, last = (header.get(k) for k in ("tenant", "session_id", "last_hash"))
        if isinstance(tenant, str) and isinstance(session_id, str) and isinstance(last, str):
            lines = [str(x) for x in section[1:]]
            out.append(
                ArchiveSection(file, digest, tenant, session_id, last, str(section[0]), lines)
            )
    return out


def _archive_fail(message: str, checked: int = 0) -> VerifyResult:
    return VerifyResult(False, 0, None, Reason.ARCHIVE_MISMATCH, message, checked)


def verify_with_archives(
    texts: Sequence[str],
    keys: PublicKeys,
    sections: Sequence[ArchiveSection],
    *,
    require_complete: bool = False,
    session: tuple[str, str] | None = None,
) -> tuple[VerifyResult, int]:
    """Verify a chain from the store end to end with the archive sections given.

    While the chain begins with a checkpoint and a given archive holds this chain's
    section ending at the checkpoint's head (its signed header's ``last_hash``), the
    checkpoint is replaced by that section's records (which may begin with an older
    checkpoint, resolved the same way): the archive file's sha256 must be the
    checkpoint's ``archive.sha256``, the section must verify on its own and hold the
    checkpoint's ``archive.count`` receipts from ``archive.first_seq``. Then the whole
    chain is verified in one pass, so an archived receipt altered, a gap between the
    archive and the store, or a checkpoint that does not match its archive fails.

    Returns the result (indexes count records of the assembled chain) and how many
    checkpoints were resolved into archived records.
    """
    chain = list(texts)
    resolved = 0
    while chain:
        first = parse(chain[0])
        if not (isinstance(first, Mapping) and is_checkpoint(first)):
            break
        # The checkpoint itself first: only a valid one may point at an archive.
        alone = verify_chain(chain[:1], keys, session=session)
        if not alone.ok:
            return alone, resolved
        t, s = first["chain"]["tenant"], first["chain"]["session_id"]
        head = first["head"]["hash"]
        arch = first["archive"]
        matches = [x for x in sections if (x.tenant, x.session_id, x.last_hash) == (t, s, head)]
        if not matches:
            if any(x.file_sha256 == arch["sha256"] for x in sections):
                return _archive_fail(
                    f"the archive {arch['sha256'][:12]}... given holds no section ending at "
                    f"seq {first['chain']['seq']} of this chain"
                ), resolved
            break  # its archive was not given: the chain is verified from the checkpoint
        # The file the checkpoint names; another copy (an archive whose run crashed
        # before its checkpoints were stored) does not count.
        section = next((x for x in matches if x.file_sha256 == arch["sha256"]), matches[0])
        if section.file_sha256 != arch["sha256"]:
            return _archive_fail(
                f"{section.file}: sha256 {section.file_sha256} is not the checkpoint's "
                f"archive.sha256 {arch['sha256']} (the archive file was changed)"
            ), resolved
        checked = verify_export([section.header, *section.lines], keys)
        if not checked.ok:
            where = f"{section.file} (archived records of tenant={t!r} session={s!r})"
            return VerifyResult(
                False,
                checked.index,
                checked.receipt_id,
                checked.reason,
                f"{where}: {checked.message}",
                checked.receipts,
            ), resolved
        archived = [parse(x) for x in section.lines]
        receipts = [r for r in archived if not is_checkpoint(r)]
        if len(receipts) != arch["count"] or (
            receipts and receipts[0]["chain"]["seq"] != arch["first_seq"]
        ):
            return _archive_fail(
                f"{section.file}: {len(receipts)} archived receipts, the checkpoint says "
                f"{arch['count']} from seq {arch['first_seq']}"
            ), resolved
        previous = receipt_hash(section.lines[0]) if is_checkpoint(archived[0]) else None
        if previous != first.get("previous_checkpoint"):
            return _archive_fail(
                f"{section.file}: the section does not begin with the checkpoint's "
                "previous_checkpoint"
            ), resolved
        chain = section.lines + chain[1:]
        resolved += 1
    return verify_chain(chain, keys, require_complete=require_complete, session=session), resolved
