"""The development principal for ``make run``: one command, still authenticated.

When no principals file is configured, :func:`ensure_dev_principal` gives a principal
``dev`` holding every role in tenant ``default``, established by a random bearer
token kept in a file (default ``var/dev-token``):

- first start: the parent directory is created (0700), a fresh token
  (``aarm-dev-`` + 256 random bits, URL-safe) is written to a new file with mode 0600
  (atomically: a temporary file hard-linked into place, so two processes starting at
  once agree on one token);
- later starts: the token in the file is reused, never overwritten while it is valid;
  a file with other content is replaced; a symlink, a non-regular file, a file of
  another owner or one readable by group or others is refused (like ssh refuses a
  key with loose permissions: the token may have leaked, delete the file);
- the server keeps only the token's hash (:class:`PrincipalDirectory`).

The caller prints :attr:`DevPrincipal.grpcurl_header` (``-H 'authorization: Bearer
...'``) at start. It is for loopback listeners only: the server wiring must refuse
the development principal on any other address (:func:`aarm_pdp.auth.tls.is_loopback_listen`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aarm_pdp.auth._problems import AuthConfigError
from aarm_pdp.auth.principals import (
    Principal,
    PrincipalDirectory,
    PrincipalKind,
    PrincipalRecord,
    Role,
    token_hash,
)

DEFAULT_DEV_TOKEN_FILE = Path("var/dev-token")
DEV_TENANT = "default"
DEV_PRINCIPAL_ID = "dev"
TOKEN_PREFIX = "aarm-dev-"  # noqa: S105 - a prefix, not a secret
_TOKEN_RE = re.compile(r"aarm-dev-[A-Za-z0-9_\-]{43}")


def new_dev_token() -> str:
    """``aarm-dev-`` and 32 random bytes, URL-safe base64 (43 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class DevPrincipal:
    """The development principal, its one-entry directory and how to use its token."""

    principal: Principal
    directory: PrincipalDirectory
    token_file: Path
    created: bool
    """True when this start wrote a new token."""
    grpcurl_header: str
    """``-H 'authorization: Bearer <token>'``, to print for the developer."""


def _read_existing(path: Path) -> str | None:
    """The valid token in ``path``; None if absent or not a token; refuses unsafe files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthConfigError(str(path), [f"cannot open the dev token file: {exc}"]) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuthConfigError(str(path), ["the dev token file is not a regular file"])
        if st.st_uid != os.getuid():
            raise AuthConfigError(str(path), ["the dev token file belongs to another user"])
        if st.st_mode & 0o077:
            raise AuthConfigError(
                str(path),
                [
                    f"the dev token file has mode {stat.S_IMODE(st.st_mode):04o}; it must be "
                    "0600 (the token may have leaked: delete the file to get a new one)"
                ],
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    text = data.decode("utf-8", "replace").strip()
    return text if _TOKEN_RE.fullmatch(text) else None


def _write_new(path: Path, token: str, *, replace: bool) -> bool:
    """Write ``token`` to ``path`` (0600). Returns False if another process won the race."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (token + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def ensure_dev_principal(
    path: Path = DEFAULT_DEV_TOKEN_FILE, *, new_token: Callable[[], str] = new_dev_token
) -> DevPrincipal:
    """The development principal; creates its token file on first start (see module doc).

    Raises:
        AuthConfigError: the token file exists but is unsafe (symlink, not regular,
            another owner, permissions looser than 0600), or cannot be written.
    """
    created = False
    token = _read_existing(path)
    if token is None:
        replace = path.is_file() and not path.is_symlink()
        candidate = new_token()
        if not _TOKEN_RE.fullmatch(candidate):
            raise ValueError("new_token() must return an aarm-dev- token")
        try:
            won = _write_new(path, candidate, replace=replace)
        except OSError as exc:
            raise AuthConfigError(str(path), [f"cannot write the dev token file: {exc}"]) from exc
        if won:
            token, created = candidate, True
        else:
            token = _read_existing(path)
            if token is None:
                raise AuthConfigError(str(path), ["the dev token file changed while starting"])
    principal = Principal(
        DEV_PRINCIPAL_ID,
        PrincipalKind.DEVELOPMENT,
        {DEV_TENANT: frozenset(Role)},
        approver_groups=frozenset({"*"}),
    )
    directory = PrincipalDirectory.build(
        [PrincipalRecord(principal, token_hashes=(token_hash(token),))], source=str(path)
    )
    return DevPrincipal(
        principal=principal,
        directory=directory,
        token_file=path,
        created=created,
        grpcurl_header=f"-H 'authorization: Bearer {token}'",
    )


__all__ = [
    "DEFAULT_DEV_TOKEN_FILE",
    "DEV_PRINCIPAL_ID",
    "DEV_TENANT",
    "DevPrincipal",
    "ensure_dev_principal",
    "new_dev_token",
]
