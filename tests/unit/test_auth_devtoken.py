"""The development principal: token file created once (0600), reused, never clobbered."""

from __future__ import annotations

import os
import stat

import pytest
from aarm_pdp.auth.devtoken import DEV_TENANT, ensure_dev_principal, new_dev_token
from aarm_pdp.auth.principals import AuthConfigError, PrincipalKind, Role


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def token_in(path) -> str:
    return path.read_text().strip()


def test_first_start_creates_a_0600_file_and_parent(tmp_path):
    path = tmp_path / "var" / "sub" / "dev-token"
    dev = ensure_dev_principal(path)
    assert dev.created
    assert path.is_file()
    assert mode(path) == 0o600
    assert mode(path.parent) & 0o077 == 0
    token = token_in(path)
    assert token.startswith("aarm-dev-")
    assert len(token) == len("aarm-dev-") + 43
    assert dev.grpcurl_header == f"-H 'authorization: Bearer {token}'"
    assert dev.directory.by_token(token) is dev.principal
    assert dev.principal.kind is PrincipalKind.DEVELOPMENT
    assert dev.principal.roles == {DEV_TENANT: frozenset(Role)}
    assert list(tmp_path.rglob(".*.tmp")) == []


def test_mode_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "dev-token"
        ensure_dev_principal(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_restart_reuses_the_token(tmp_path):
    path = tmp_path / "dev-token"
    first = ensure_dev_principal(path)
    before = path.read_bytes(), path.stat().st_mtime_ns
    again = ensure_dev_principal(path)
    assert not again.created
    assert again.grpcurl_header == first.grpcurl_header
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_tokens_are_random():
    assert len({new_dev_token() for _ in range(50)}) == 50


def test_invalid_content_is_replaced(tmp_path):
    path = tmp_path / "dev-token"
    path.write_text("not a token\n")
    path.chmod(0o600)
    dev = ensure_dev_principal(path)
    assert dev.created
    assert token_in(path).startswith("aarm-dev-")
    assert mode(path) == 0o600


def test_loose_permissions_are_refused(tmp_path):
    path = tmp_path / "dev-token"
    ensure_dev_principal(path)
    token = token_in(path)
    path.chmod(0o644)
    with pytest.raises(AuthConfigError, match="mode 0644; it must be 0600"):
        ensure_dev_principal(path)
    assert token_in(path) == token  # never overwritten


def test_symlink_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text(new_dev_token())
    target.chmod(0o600)
    link = tmp_path / "dev-token"
    link.symlink_to(target)
    with pytest.raises(AuthConfigError, match="cannot open"):
        ensure_dev_principal(link)


def test_directory_in_the_way_is_refused(tmp_path):
    (tmp_path / "dev-token").mkdir()
    with pytest.raises(AuthConfigError):
        ensure_dev_principal(tmp_path / "dev-token")


def test_lost_race_adopts_the_winner(tmp_path):
    path = tmp_path / "dev-token"
    winner = new_dev_token()

    def racing_token() -> str:
        # another process creates the file between our read and our link
        path.write_text(winner + "\n")
        path.chmod(0o600)
        return new_dev_token()

    dev = ensure_dev_principal(path, new_token=racing_token)
    assert not dev.created
    assert dev.directory.by_token(winner) is dev.principal
    assert token_in(path) == winner
