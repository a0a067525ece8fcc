"""Path facts: lexical POSIX resolution, system and protected paths, traversal, encodings."""

from __future__ import annotations

import pytest
from aarm_pdp.analysis import Limits, analyse_value


@pytest.mark.parametrize(
    ("raw", "normalized", "system", "protected"),
    [
        ("/etc/..", "/", True, True),
        ("/boot/../etc", "/etc", True, True),
        ("//etc", "/etc", True, True),
        ("/usr/./", "/usr", True, True),
        ("/var/log/../../", "/", True, True),
        ("/..", "/", True, True),
        ("~", "~", False, True),
        ("~/", "~", False, True),
        ("~alice/x", "~/x", False, False),
        ("~/../..", "/", True, True),
        ("/home/alice/../../etc/passwd", "/etc/passwd", True, False),
        ("/etc/./ssh/", "/etc/ssh", True, False),
        ("/home", "/home", False, True),
        ("/home/alice", "/home/alice", False, True),
        ("/home/alice/project/notes..txt", "/home/alice/project/notes..txt", False, False),
        ("/var/tmp/etc", "/var/tmp/etc", False, False),
        ("/tmp/../etc/shadow", "/etc/shadow", True, False),
        ("/usr/local", "/usr/local", True, True),
        ("relative/../x", "x", False, False),
    ],
)
def test_resolution(raw: str, normalized: str, system: bool, protected: bool) -> None:
    facts = analyse_value("path", raw)
    assert facts["parsed"] is True
    assert (facts["normalized"], facts["system"], facts["protected"]) == (
        normalized,
        system,
        protected,
    )


def test_seen_flags() -> None:
    facts = analyse_value("path", "//etc/./x/../y/")
    assert (
        facts["traversal"]
        and facts["dot_segments"]
        and facts["empty_segments"]
        and facts["trailing_slash"]
    )
    assert facts["top"] == "/etc"
    assert analyse_value("path", "/..")["escapes"] is True
    assert analyse_value("path", "../../x")["escapes"] is True
    assert analyse_value("path", "../../x")["relative"] is True


def test_percent_encoding_is_read_both_ways() -> None:
    facts = analyse_value("path", "/%65tc")
    assert facts["percent_encoded"] is True
    assert facts["normalized"] == "/%65tc" and facts["decoded"] == "/etc"
    assert facts["system"] is True and facts["protected"] is True
    creds = analyse_value("path", "/home/alice/.aws/%63redentials")
    assert creds["decoded"] == "/home/alice/.aws/credentials"


def test_globs_are_read_by_their_base() -> None:
    facts = analyse_value("path", "/[a-z]*")
    assert facts["glob"] is True and facts["glob_base"] == "/"
    assert facts["protected"] is True
    assert analyse_value("path", "/tmp/x/*.log")["glob_base"] == "/tmp/x"


@pytest.mark.parametrize(
    ("value", "reason"),
    [("/etc/\x00x", "nul_byte"), ("", "empty"), (5, "not_a_string"), (["/etc"], "not_a_string")],
)
def test_unparseable_paths_are_protected(value: object, reason: str) -> None:
    facts = analyse_value("path", value)
    assert facts["parsed"] is False and facts["reason"] == reason
    assert facts["system"] is True and facts["protected"] is True


def test_length_limit() -> None:
    facts = analyse_value("path", "/a" * 10, limits=Limits(max_path_chars=4))
    assert facts["reason"] == "too_long" and facts["protected"] is True


def test_deterministic() -> None:
    assert analyse_value("path", "/a/../%2e%2e/etc") == analyse_value("path", "/a/../%2e%2e/etc")
