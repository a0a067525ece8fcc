"""URLs and hosts read as a WHATWG client reads them (ada-url), with the PSL's registrable domain.

ada is the URL parser of Node.js and conforms to the WHATWG URL Standard that browsers,
Node and most HTTP stacks follow: ``\\`` is a path separator in special schemes, the host
is percent-decoded and IDNA-mapped (``evil%2ecom``, ``evil\u3002com`` and full-width
letters all become ``evil.com``), and IPv4 hosts in decimal, hex, octal or with merged
parts are canonicalised (``0xa9fea9fe`` is ``169.254.169.254``). What the policy needs
is the host the client will contact, so that is what these facts describe.

The registrable domain (eTLD+1) comes from the Public Suffix List bundled with the
``publicsuffixlist`` package; it is never downloaded at run time. Unknown TLDs count as
public suffixes (``acme.example`` is registrable).

Python's own ``urllib.parse`` is asked too, only to flag a ``parser_differential``: a
URL on which it names another host is one where Python code elsewhere (provenance,
helpers) would disagree with the client.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import ada_url
from publicsuffixlist import PublicSuffixList

from aarm_pdp.analysis._names import skeleton

_PSL = PublicSuffixList()  # the list bundled with the package; no network
_DEFAULT_PORTS = {"http:": 80, "https:": 443, "ws:": 80, "wss:": 443, "ftp:": 21}
_HOST_FORBIDDEN = frozenset("/\\@?#")


def ip_facts(address: str) -> dict[str, Any] | None:
    """Classification of an IP literal (without brackets), or None for a name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    effective = mapped if mapped is not None else ip
    return {
        "version": ip.version,
        "address": str(ip),
        "ipv4_mapped": str(mapped) if mapped is not None else None,
        "private": effective.is_private,
        "loopback": effective.is_loopback,
        "link_local": effective.is_link_local,
        "multicast": effective.is_multicast,
        "reserved": effective.is_reserved,
        "unspecified": effective.is_unspecified,
        "global": effective.is_global,
    }


def _to_unicode(host: str) -> str:
    """The Unicode form of an ASCII (punycode) host; the host itself when it is not one."""
    try:
        return ada_url.idna_to_unicode(host) or host
    except Exception:  # not ASCII, or a label that is not valid punycode
        return host


def domain_facts(ascii_host: str) -> dict[str, Any]:
    """Registrable domain, public suffix and look-alike skeleton of an ASCII host name."""
    host = ascii_host.rstrip(".").lower()
    unicode_host = _to_unicode(host)
    registrable = _PSL.privatesuffix(host) if host else None
    return {
        "host": host,
        "trailing_dot": ascii_host.endswith("."),
        "unicode_host": unicode_host,
        "idn": any(label.startswith("xn--") for label in host.split(".")),
        "registrable_domain": registrable,
        "public_suffix": _PSL.publicsuffix(host) if host else None,
        "skeleton": skeleton(unicode_host),
        "registrable_skeleton": skeleton(_to_unicode(registrable)) if registrable else None,
    }


def _host_facts(hostname: str, host_type: int) -> dict[str, Any]:
    """Facts of the host part ada returned (``hostname``, bracketed for IPv6); same keys always."""
    if host_type in (1, 2) or hostname == "":  # IPv4, IPv6, or no host at all
        literal = hostname.strip("[]").lower()
        kind = {1: "ipv4", 2: "ipv6"}.get(host_type, "none") if hostname else "none"
        return {
            "host": literal,
            "host_type": kind,
            "ip": ip_facts(literal) if literal else None,
            "trailing_dot": False,
            "unicode_host": literal,
            "idn": False,
            "registrable_domain": None,
            "public_suffix": None,
            "skeleton": literal,
            "registrable_skeleton": None,
        }
    return {"host_type": "domain", "ip": None, **domain_facts(hostname)}


def _python_host(text: str) -> str | None:
    """The host ``urllib.parse`` reads, lower-cased, without a trailing dot or brackets."""
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def _same_host(python_host: str | None, host: str) -> bool:
    """Whether urllib's host names the same host as ada's (spelling aside)."""
    if python_host is None or python_host == host:
        return python_host == host or (python_host is None and host == "")
    try:
        return ipaddress.ip_address(python_host) == ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        ascii_host = ada_url.idna_to_ascii(python_host)
        text = ascii_host.decode("ascii") if isinstance(ascii_host, bytes) else str(ascii_host)
        return text.rstrip(".") == host
    except Exception:
        return False


def analyse_url(value: object, *, max_chars: int) -> dict[str, Any]:
    """Facts for a parameter typed ``url``; an unparseable URL has no host to allow."""
    if not isinstance(value, str):
        return _unparsed("url", "not_a_string")
    if len(value) > max_chars:
        return _unparsed("url", "too_long", length=len(value))
    try:
        parts = ada_url.parse_url(value)
    except ValueError:
        return _unparsed("url", "invalid_url")
    scheme = parts["protocol"]
    port_text = parts["port"]
    port = int(port_text) if port_text else _DEFAULT_PORTS.get(scheme)
    host = _host_facts(parts["hostname"], int(parts["host_type"]))
    python_host = _python_host(value)
    return {
        "type": "url",
        "parsed": True,
        "href": parts["href"],
        "scheme": scheme.rstrip(":"),
        **host,
        "port": port,
        "explicit_port": bool(port_text),
        "userinfo": bool(parts["username"] or parts["password"]),
        "path": parts["pathname"],
        "query": bool(parts["search"]),
        "fragment": bool(parts["hash"]),
        "python_host": python_host,
        "parser_differential": not _same_host(python_host, host["host"]),
    }


def analyse_host(value: object, *, max_chars: int) -> dict[str, Any]:
    """Facts for a bare host name or IP literal (typed ``host``), read as a URL's host."""
    if not isinstance(value, str):
        return _unparsed("host", "not_a_string")
    if len(value) > max_chars:
        return _unparsed("host", "too_long", length=len(value))
    if value == "" or any(ch in _HOST_FORBIDDEN for ch in value):
        return _unparsed("host", "not_a_host")
    try:
        parts = ada_url.parse_url("http://" + value.strip() + "/")
    except ValueError:
        return _unparsed("host", "invalid_host")
    port_text = parts["port"]
    return {
        "type": "host",
        "parsed": True,
        **_host_facts(parts["hostname"], int(parts["host_type"])),
        "port": int(port_text) if port_text else None,
    }


def _unparsed(kind: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "parsed": False, "reason": reason, **extra, "host": None}
