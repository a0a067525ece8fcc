"""E-mail addresses read with email-validator (RFC 5322/6531 syntax, no DNS).

Display names (``Alice <a@x>``), quoted local parts (``"a@b"@x``), domain literals
(``a@[203.0.113.7]``) and internationalised domains are accepted and taken apart; the
domain the message is delivered to is then IDNA-encoded (``ascii_domain``) and given
its registrable domain and look-alike skeleton like a URL host. Deliverability (DNS) is
never checked: the analysis does no I/O.

An address email-validator rejects still gets a ``fallback_domain``: the text after the
last ``@`` (and before a closing ``>``), IDNA-mapped, so a block list can still match it;
``parsed: false`` tells an allow list there is nothing to allow.
"""

from __future__ import annotations

from typing import Any

import ada_url
import email_validator

from aarm_pdp.analysis._url import domain_facts, ip_facts

_OPTIONS: dict[str, Any] = {
    "check_deliverability": False,  # no DNS
    "globally_deliverable": False,  # accept internal and reserved names (acme.example)
    "allow_smtputf8": True,
    "allow_quoted_local": True,
    "allow_domain_literal": True,
    "allow_display_name": True,
}


def _fallback_domain(text: str) -> str | None:
    """The most likely delivery domain of an address that does not validate."""
    if "@" not in text:
        return None
    domain = text.rsplit("@", 1)[1].split(">", 1)[0].strip().strip("[]").rstrip(".")
    if not domain:
        return None
    try:
        encoded = ada_url.idna_to_ascii(domain)
    except Exception:
        return domain.lower()
    ascii_domain = encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)
    return (ascii_domain or domain).lower()


def analyse_email(value: object, *, max_chars: int) -> dict[str, Any]:
    """Facts for one address typed ``email``; see the module docstring."""
    if not isinstance(value, str):
        return _unparsed("not_a_string", None)
    if len(value) > max_chars:
        return _unparsed("too_long", None, length=len(value))
    try:
        result = email_validator.validate_email(value, **_OPTIONS)
    except email_validator.EmailNotValidError as exc:
        return _unparsed("invalid_address", _fallback_domain(value), error=str(exc))
    local: str = result.local_part
    literal = getattr(result, "domain_address", None)
    facts: dict[str, Any] = {
        "type": "email",
        "parsed": True,
        "address": result.normalized,
        "local_part": local,
        "quoted_local": local.startswith('"'),
        "subaddress": local.split("+", 1)[1]
        if "+" in local and not local.startswith('"')
        else None,
        "display_name": result.display_name,
        "domain": result.domain,
        "ascii_domain": result.ascii_domain.lower(),
        "smtputf8": bool(result.smtputf8),
        "domain_literal": literal is not None,
    }
    if literal is not None:
        facts.update(
            {
                "ip": ip_facts(str(literal)),
                "registrable_domain": None,
                "skeleton": str(literal),
                "registrable_skeleton": None,
            }
        )
        return facts
    domain = domain_facts(facts["ascii_domain"])
    facts.update(
        {
            "ip": None,
            "unicode_domain": domain["unicode_host"],
            "idn": domain["idn"],
            "registrable_domain": domain["registrable_domain"],
            "skeleton": domain["skeleton"],
            "registrable_skeleton": domain["registrable_skeleton"],
        }
    )
    return facts


def _unparsed(reason: str, fallback: str | None, **extra: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "type": "email",
        "parsed": False,
        "reason": reason,
        **extra,
        "ascii_domain": None,
        "fallback_domain": fallback,
    }
    if fallback:
        domain = domain_facts(fallback)
        facts["fallback_registrable_domain"] = domain["registrable_domain"]
        facts["fallback_skeleton"] = domain["skeleton"]
    return facts
