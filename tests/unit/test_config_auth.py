"""A listener off loopback needs TLS and real principals (issue 11 item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aarm_pdp.config import AuthConfig, Config, ConfigError, ServerConfig, is_loopback_listen


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.10.0.1:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        (":50051", False),
    ],
)
def test_loopback_is_told_apart(listen: str, loopback: bool) -> None:
    assert is_loopback_listen(listen) is loopback


def test_non_loopback_without_tls_or_principals_refuses_to_start() -> None:
    with pytest.raises(ConfigError) as err:
        Config(server=ServerConfig(listen="0.0.0.0:50051")).validate()
    text = str(err.value)
    assert "serve TLS" in text and "insecure_listen" in text
    assert "principals_file" in text


def test_non_loopback_plaintext_only_when_said_explicitly(tmp_path: Path) -> None:
    principals = tmp_path / "p.json"
    principals.write_text("{}")
    cfg = Config(
        server=ServerConfig(listen="0.0.0.0:50051"),
        auth=AuthConfig(principals_file=principals, insecure_listen=True),
    )
    assert cfg.validate() is cfg


def test_tls_files_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as err:
        Config(auth=AuthConfig(tls_cert=cert)).validate()
    assert "auth.tls_cert and auth.tls_key must be given together" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Config(auth=AuthConfig(tls_client_ca=cert)).validate()
    assert "mutual TLS" in str(err.value)
