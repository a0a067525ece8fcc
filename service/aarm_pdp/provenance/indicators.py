"""Find indicator values in text and parameters, and fingerprint them. PURE.

Indicators are the parts of a value an attacker would want to steer: e-mail
addresses, URLs and domains, account numbers (IBANs), file paths and phone numbers.
Each is normalised and hashed (BLAKE2b-128), so session state never holds the raw
value: the index answers "was this exact value seen before, and where?" only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@([A-Za-z0-9\-]{1,63}\.)+[A-Za-z]{2,24}")
URL_RE = re.compile(r"\bhttps?://[^\s\"'<>]{1,2048}", re.IGNORECASE)
DOMAIN_RE = re.compile(r"\b((?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b", re.I)
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
PATH_RE = re.compile(r"(?:(?<=\s)|^)(/[A-Za-z0-9._\-]+(?:/[A-Za-z0-9._\-*]+)*/?)")
TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+\-]{2,127}")
# Words of a phrase: a channel (#eng-platform) or handle (@jonas.keller) keeps its sigil.
WORD_RE = re.compile(r"[#@]?[a-z0-9][a-z0-9._@+\-/:']{0,127}")
_WORD_TRIM = ".,;:!?'"
PHONE_RE = re.compile(r"(?<![\w])\+?\d[\d \-().]{7,18}\d(?![\w])")

MAX_TEXT = 65_536
MAX_INDICATORS = 256
PHRASE_WORDS = 3
"""Phrases of up to this many words are indexed; a longer value is matched by its shingles."""
MAX_PHRASE_TEXT_WORDS = 4000
"""Only the first words of a long text are indexed as phrases (a value found nowhere is
``unseen``, which policy treats as at least as suspicious as untrusted)."""

Indicator = tuple[str, str]  # (kind, normalised value)


def _domain_of_url(url: str) -> str:
    rest = url.split("://", 1)[1]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return host.rsplit("@", 1)[-1].split(":", 1)[0].lower().rstrip(".")


def indicators_in_text(text: str) -> list[Indicator]:
    """Indicators found in ``text`` (bounded), in order of appearance, de-duplicated."""
    text = text[:MAX_TEXT]
    found: dict[Indicator, None] = {}
    for m in EMAIL_RE.finditer(text):
        email = m.group(0).lower()
        found[("email", email)] = None
        found[("domain", email.rsplit("@", 1)[1])] = None
    for m in URL_RE.finditer(text):
        url = m.group(0).rstrip(".,);]")
        found[("url", url)] = None
        found[("domain", _domain_of_url(url))] = None
    for m in IBAN_RE.finditer(text):
        found[("account", m.group(0).replace(" ", ""))] = None
    for m in PHONE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 8 <= len(digits) <= 15:
            found[("phone", digits)] = None
    for m in PATH_RE.finditer(text):
        found[("path", m.group(1).rstrip("/") or "/")] = None
    if not found or len(text) < 256:
        for m in DOMAIN_RE.finditer(text):
            dom = m.group(1).lower()
            if "." in dom and not dom.replace(".", "").isdigit():
                found.setdefault(("domain", dom), None)
    return list(found)[:MAX_INDICATORS]


def tokens_in_text(text: str) -> list[Indicator]:
    """Every word-like token (names, amounts, ids) as a ``value`` indicator, bounded."""
    out: dict[Indicator, None] = {}
    for m in TOKEN_RE.finditer(text[:MAX_TEXT]):
        out[("value", m.group(0).rstrip(".,;:").lower())] = None
        if len(out) >= MAX_INDICATORS:
            break
    return list(out)


def words(text: str) -> list[str]:
    """The normalised words of ``text``: lower case, trailing punctuation trimmed."""
    out = []
    for m in WORD_RE.finditer(text[:MAX_TEXT].lower()):
        word = m.group(0).rstrip(_WORD_TRIM)
        if word:
            out.append(word)
    return out


def phrases_in_text(text: str) -> list[Indicator]:
    """Every phrase of 1..PHRASE_WORDS consecutive words, for the provenance index.

    A multi-word value (a person's full name, a hotel, an event title, a postal
    address) is then matched as a whole or by its shingles, not word by word.
    """
    ws = words(text)[:MAX_PHRASE_TEXT_WORDS]
    out: dict[Indicator, None] = {}
    for n in range(1, PHRASE_WORDS + 1):
        for i in range(len(ws) - n + 1):
            out[("phrase", " ".join(ws[i : i + n]))] = None
    return list(out)


def value_phrases(value: str) -> tuple[list[Indicator], bool]:
    """The phrase indicators of one parameter value, and whether they are shingles.

    A value of up to PHRASE_WORDS words is one phrase; a longer value is its
    PHRASE_WORDS-word shingles (bounded), all of which must have been seen in a
    source for the value to count as seen there.
    """
    ws = words(value)
    if not ws:
        return [], False
    if len(ws) <= PHRASE_WORDS:
        return [("phrase", " ".join(ws))], False
    shingles: dict[Indicator, None] = {}
    for i in range(len(ws) - PHRASE_WORDS + 1):
        shingles[("phrase", " ".join(ws[i : i + PHRASE_WORDS]))] = None
        if len(shingles) >= MAX_INDICATORS:
            break
    return list(shingles), True


def fingerprint(ind: Indicator) -> str:
    """A 32-hex-digit BLAKE2b digest of an indicator: what session state stores."""
    kind, value = ind
    return hashlib.blake2b(f"{kind}\0{value}".encode(), digest_size=16).hexdigest()


def _walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    if depth > 8:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, str(value)
    elif isinstance(value, dict):
        for k in sorted(value):
            yield from _walk(value[k], f"{path}.{k}" if path else k, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value[:64]):
            yield from _walk(item, f"{path}[{i}]", depth + 1)


def parameter_strings(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, string) for every string inside the parameters, bounded in depth and count."""
    out = []
    for item in _walk(parameters, "", 0):
        out.append(item)
        if len(out) >= MAX_INDICATORS:
            break
    return out
