"""Receipt signing keys: the key directory, rotation, the JWKS, no leaked key material."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest
from aarm_pdp.errors import AarmError
from aarm_pdp.receipts import cli
from aarm_pdp.receipts.keys import KeyRing, init_key_dir, jwks, rotate
from aarm_pdp.receipts.verify import PublicKeys
from cryptography.hazmat.primitives import serialization


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_use_creates_the_directory_and_one_private_key(tmp_path: Path) -> None:
    d = tmp_path / "var" / "keys"
    kid = init_key_dir(d)
    assert _mode(d) == 0o700
    assert (d / "active").read_text().strip() == kid
    key_file = d / f"{kid}.pem"
    assert _mode(key_file) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert init_key_dir(d) == kid  # idempotent
    ring = KeyRing.open(d)
    assert ring.active.key_id == kid
    assert ring.key_ids == [kid]


def test_rotation_adds_a_key_and_keeps_the_old_ones(tmp_path: Path) -> None:
    first = init_key_dir(tmp_path)
    second = rotate(tmp_path)
    third = rotate(tmp_path)
    assert len({first, second, third}) == 3
    ring = KeyRing.load(tmp_path)
    assert ring.active.key_id == third
    assert ring.key_ids == sorted([first, second, third])
    assert all(_mode(tmp_path / f"{k}.pem") == 0o600 for k in ring.key_ids)
    doc = jwks(tmp_path)
    assert next(k["kid"] for k in doc["keys"]) == third
    assert {k["kid"] for k in doc["keys"]} == {first, second, third}


def test_jwks_shape_and_round_trip(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path)
    (entry,) = ring.jwks()["keys"]
    assert set(entry) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (entry["kty"], entry["crv"], entry["alg"], entry["use"]) == (
        "OKP",
        "Ed25519",
        "EdDSA",
        "sig",
    )
    assert "=" not in entry["x"] and "+" not in entry["x"] and "/" not in entry["x"]
    raw = base64.urlsafe_b64decode(entry["x"] + "==")
    assert raw == ring.active.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert "d" not in entry  # never the private scalar
    keys = PublicKeys.from_jwks(ring.jwks())
    assert keys.key_ids == [ring.active.key_id]
    sig = ring.active.sign(b"payload")
    pub = keys.get(ring.active.key_id)
    assert pub is not None
    pub.verify(sig, b"payload")


def test_non_ed25519_jwks_entries_are_ignored() -> None:
    doc = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"}]}
    assert PublicKeys.from_jwks(doc).key_ids == []


def test_key_material_never_appears_in_repr_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    init_key_dir(tmp_path)
    rotate(tmp_path)
    ring = KeyRing.load(tmp_path)
    pem_bodies = [
        line
        for p in tmp_path.glob("*.pem")
        for line in p.read_text().splitlines()
        if not line.startswith("-----")
    ]
    text = repr(ring) + repr(ring.active) + caplog.text
    assert pem_bodies and not any(body in text for body in pem_bodies)
    assert ring.active.key_id in repr(ring.active)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda d: None, "cannot read key directory"),
        (lambda d: (d / "active").write_text("nope\n"), "has no nope.pem"),
        (
            lambda d: ((d / "k1.pem").write_text("garbage"), (d / "active").write_text("k1")),
            "not an unencrypted PEM",
        ),
    ],
)
def test_broken_key_directories_fail_loudly(tmp_path: Path, setup, match: str) -> None:
    setup(tmp_path)
    with pytest.raises(AarmError, match=match):
        KeyRing.load(tmp_path)


def test_cli_keys_and_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.rotate(tmp_path) == 0
    kid = capsys.readouterr().out.strip()
    assert cli.keys(tmp_path) == 0
    out = capsys.readouterr().out
    assert kid in out and "PRIVATE" not in out
    assert cli.keys(tmp_path / "missing") == 2
