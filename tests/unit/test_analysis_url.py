"""URL and host facts (ada-url, WHATWG): the host a client contacts, IP literals, PSL."""

from __future__ import annotations

import pytest
from aarm_pdp.analysis import Limits, analyse_value


@pytest.mark.parametrize(
    ("url", "host", "registrable"),
    [
        ("https://evil.com\\@api.stripe.com/v1", "evil.com", "evil.com"),
        ("https://api.stripe.com@evil.com/v1", "evil.com", "evil.com"),
        ("https://evil.com#@api.stripe.com", "evil.com", "evil.com"),
        ("https://evil.com?@api.stripe.com", "evil.com", "evil.com"),
        ("https://api.stripe.com%2eevil.com/v1", "api.stripe.com.evil.com", "evil.com"),
        ("http://evil\u3002com/", "evil.com", "evil.com"),
        ("http://evil\uff0ecom/", "evil.com", "evil.com"),
        ("http://\uff45\uff56\uff49\uff4c.com/", "evil.com", "evil.com"),
        ("http://EVIL.COM./x", "evil.com", "evil.com"),
        ("http:/\\evil.com/x", "evil.com", "evil.com"),
        ("HTTP://EVIL.COM\t/x", "evil.com", "evil.com"),
        ("http://ev\u00adil.com/", "evil.com", "evil.com"),
        ("https://\u0430pi.stripe.com/", "xn--pi-6kc.stripe.com", "stripe.com"),
        ("https://a.b.co.uk/", "a.b.co.uk", "b.co.uk"),
        ("https://eu.acme.example/", "eu.acme.example", "acme.example"),
        ("https://api%2estripe%2ecom/v1", "api.stripe.com", "stripe.com"),
    ],
)
def test_host_is_the_one_a_whatwg_client_contacts(url: str, host: str, registrable: str) -> None:
    facts = analyse_value("url", url)
    assert facts["parsed"] is True
    assert (facts["host"], facts["registrable_domain"]) == (host, registrable)


@pytest.mark.parametrize(
    ("url", "address", "flag"),
    [
        ("http://169.254.169.254/latest", "169.254.169.254", "link_local"),
        ("http://2852039166/latest", "169.254.169.254", "link_local"),
        ("http://0xa9fea9fe/", "169.254.169.254", "link_local"),
        ("http://0251.0376.0251.0376/", "169.254.169.254", "link_local"),
        ("http://169.254.43518/", "169.254.169.254", "link_local"),
        ("http://127.1:8500/", "127.0.0.1", "loopback"),
        ("http://0/", "0.0.0.0", "unspecified"),
        ("http://10.1.2.3/", "10.1.2.3", "private"),
        ("http://[::1]:2375/", "::1", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe", "link_local"),
    ],
)
def test_ip_literals_in_legacy_forms(url: str, address: str, flag: str) -> None:
    facts = analyse_value("url", url)
    assert facts["host_type"] in ("ipv4", "ipv6")
    assert facts["ip"]["address"] == address
    assert facts["ip"][flag] is True
    assert facts["registrable_domain"] is None


def test_scheme_port_userinfo_path() -> None:
    facts = analyse_value("url", "https://user:pw@API.Stripe.com:8443/a/./b/../c?q=1#f")
    assert facts["scheme"] == "https"
    assert facts["port"] == 8443 and facts["explicit_port"] is True
    assert facts["userinfo"] is True
    assert facts["path"] == "/a/c"
    assert facts["query"] is True and facts["fragment"] is True
    assert analyse_value("url", "https://api.stripe.com:443/")["port"] == 443
    assert analyse_value("url", "https://api.stripe.com:443/")["explicit_port"] is False


def test_homoglyph_skeletons() -> None:
    facts = analyse_value("url", "https://xn--vil-qdd.com/")
    assert facts["idn"] is True
    assert facts["unicode_host"] == "\u0435vil.com"
    assert facts["skeleton"] == "evil.com"
    assert facts["registrable_skeleton"] == "evil.com"
    plain = analyse_value("url", "https://m\u00fcnchen.example/")
    assert plain["skeleton"] == "m\u00fcnchen.example"


@pytest.mark.parametrize(
    ("url", "differs"),
    [
        ("https://evil.com\\@api.stripe.com/v1", True),
        ("http://evil%2ecom/", True),
        ("http://2852039166/", True),
        ("https://api.stripe.com/v1", False),
        ("https://m\u00fcnchen.example/", False),
        ("http://[::ffff:169.254.169.254]/", False),
    ],
)
def test_parser_differential_with_urllib(url: str, differs: bool) -> None:
    assert analyse_value("url", url)["parser_differential"] is differs


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not a url", "invalid_url"),
        ("http://", "invalid_url"),
        ("https://[::1/", "invalid_url"),
        (3, "not_a_string"),
    ],
)
def test_unparseable_url_has_no_host(value: object, reason: str) -> None:
    facts = analyse_value("url", value)
    assert facts["parsed"] is False and facts["reason"] == reason
    assert facts["host"] is None


def test_url_length_limit() -> None:
    assert (
        analyse_value("url", "https://a.example/", limits=Limits(max_url_chars=5))["reason"]
        == "too_long"
    )


@pytest.mark.parametrize(
    ("value", "host", "kind"),
    [
        ("evil.com", "evil.com", "domain"),
        ("EVIL.com.", "evil.com", "domain"),
        ("0x7f.1", "127.0.0.1", "ipv4"),
        ("[::1]", "::1", "ipv6"),
        ("evil\u3002com", "evil.com", "domain"),
        ("api.stripe.com:8080", "api.stripe.com", "domain"),
    ],
)
def test_hosts(value: str, host: str, kind: str) -> None:
    facts = analyse_value("host", value)
    assert facts["parsed"] is True
    assert (facts["host"], facts["host_type"]) == (host, kind)


@pytest.mark.parametrize("value", ["a/b", "user@evil.com", "evil.com?x", "", "bad host"])
def test_unparseable_hosts(value: str) -> None:
    facts = analyse_value("host", value)
    assert facts["parsed"] is False and facts["host"] is None


def test_deterministic() -> None:
    url = "https://user@xn--pi-6kc.stripe.com:444/a%2e/b"
    assert analyse_value("url", url) == analyse_value("url", url)
