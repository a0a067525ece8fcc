"""TLS credentials: file validation (all problems at once) and the reload fetcher."""

from __future__ import annotations

import os

import grpc
import pytest
from aarm_pdp.auth.principals import AuthConfigError
from aarm_pdp.auth.tls import (
    CertificateReloader,
    TlsFiles,
    channel_credentials,
    is_loopback_listen,
    load_material,
    server_credentials,
)

from tests.support.pki import CertificateAuthority


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def files(tmp_path, ca) -> TlsFiles:
    cert, key = ca.issue_server().write(tmp_path, "server")
    return TlsFiles(cert, key, ca.write(tmp_path))


def bump(*paths) -> None:
    """Give files a new mtime even on filesystems with coarse timestamps."""
    for i, p in enumerate(paths):
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 + i))


def test_good_files_load(files):
    m = load_material(files)
    assert m.client_ca is not None
    assert files.mutual
    assert isinstance(server_credentials(files), grpc.ServerCredentials)
    assert isinstance(server_credentials(files, reload=False), grpc.ServerCredentials)


def test_every_problem_at_once(tmp_path, ca):
    cert, _ = ca.issue_server().write(tmp_path, "a")
    _, other_key = ca.issue_server().write(tmp_path, "b")
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem")
    with pytest.raises(AuthConfigError) as info:
        load_material(TlsFiles(cert, other_key, junk))
    text = str(info.value)
    assert "does not match the certificate" in text
    assert "tls client CA" in text
    assert len(info.value.problems) == 2
    with pytest.raises(AuthConfigError) as info:
        load_material(TlsFiles(junk, tmp_path / "missing.key"))
    assert len(info.value.problems) == 2
    assert "cannot read" in str(info.value)


def test_reloader_returns_none_until_the_files_change(files, ca, tmp_path):
    reloader = CertificateReloader(files)
    assert reloader() is None
    assert reloader() is None
    ca.issue_server().write(tmp_path, "server")
    bump(files.cert, files.key)
    assert reloader() is not None
    assert reloader.reloads == 1
    assert reloader() is None


def test_reloader_keeps_the_current_set_when_the_new_one_is_bad(files, ca, tmp_path):
    reloader = CertificateReloader(files)
    # a half-done rotation: new cert, old key
    new = ca.issue_server()
    files.cert.write_bytes(new.cert_pem)
    bump(files.cert)
    assert reloader() is None
    assert reloader.reloads == 0
    # the key arrives: now it reloads
    files.key.write_bytes(new.key_pem)
    bump(files.key)
    assert reloader() is not None
    assert reloader.reloads == 1


def test_reloader_survives_missing_files(files):
    reloader = CertificateReloader(files)
    files.key.unlink()
    assert reloader() is None


def test_plain_tls_is_not_mutual(files):
    plain = TlsFiles(files.cert, files.key)
    assert not plain.mutual
    assert load_material(plain).client_ca is None


def test_channel_credentials(files):
    assert isinstance(channel_credentials(files.client_ca), grpc.ChannelCredentials)
    assert isinstance(
        channel_credentials(files.client_ca, cert=files.cert, key=files.key),
        grpc.ChannelCredentials,
    )
    with pytest.raises(ValueError, match="both"):
        channel_credentials(files.client_ca, cert=files.cert)


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.9.9.9:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("[::]:50051", False),
        ("0.0.0.0:50051", False),
        ("10.0.0.1:50051", False),
        ("example.com:50051", False),
        (":50051", False),
    ],
)
def test_is_loopback_listen(listen, loopback):
    assert is_loopback_listen(listen) is loopback
