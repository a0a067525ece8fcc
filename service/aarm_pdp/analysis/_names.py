"""Names compared by what they look like: NFKC, case folding, trimming, a confusable skeleton.

The skeleton follows the idea of UTS #39 (Unicode Security Mechanisms, "skeleton"):
each character is replaced by the prototype it is visually confusable with. We keep
only the mappings whose prototype is a single ASCII letter or digit, taken from the
Unicode confusables data that ``confusable_homoglyphs`` ships (its
``confusables.json``), so ``production`` spelled with a Cyrillic o (U+043E) and
``prod`` in full-width letters (U+FF50...) become ``production`` and ``prod``.
The steps, in order:

1. NFKC (full-width, circled and mathematical letters become plain letters);
2. drop format characters (Unicode category Cf: zero-width space and joiners, soft
   hyphen, bidi marks) and control characters;
3. case folding, then trimming and collapsing of whitespace;
4. each remaining non-ASCII character with an ASCII letter/digit prototype is
   replaced by it, and the result is case-folded again.

ASCII characters are never remapped (``0`` stays ``0``), so the skeleton only
removes disguises, not spellings.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from confusable_homoglyphs import confusables as _confusables  # type: ignore[import-untyped]

_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_LRM = "\u200e"
_SPACE_RUN = re.compile(r"\s+")
_TOKEN_SPLIT = re.compile(r"[\W_]+")
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


def _build_prototypes() -> dict[str, str]:
    """Map each non-ASCII character to its ASCII letter/digit look-alike (lower case)."""
    table: dict[str, str] = {}
    data: dict[str, list[dict[str, str]]] = _confusables.confusables_data
    for char, homoglyphs in sorted(data.items()):
        if len(char) != 1 or char.isascii():
            continue
        candidates = sorted(
            {
                h["c"].replace(_LRM, "").casefold()
                for h in homoglyphs
                if len(h["c"].replace(_LRM, "")) == 1
                and h["c"].replace(_LRM, "").isascii()
                and h["c"].replace(_LRM, "").casefold() in _ASCII_ALNUM
            }
        )
        if candidates:
            # Letters before digits: an "o"-shaped glyph reads as the letter o.
            letters = [c for c in candidates if c.isalpha()]
            table[char] = (letters or candidates)[0]
    return table


_PROTOTYPES = _build_prototypes()


def clean(text: str) -> str:
    """NFKC, without format/control characters, case-folded, trimmed, single-spaced."""
    nfkc = unicodedata.normalize("NFKC", text)
    kept = "".join(
        ch for ch in nfkc if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\t\n"
    )
    return _SPACE_RUN.sub(" ", kept.casefold()).strip()


def skeleton(text: str) -> str:
    """The confusable skeleton of ``text`` (see the module docstring)."""
    cleaned = clean(text)
    return "".join(_PROTOTYPES.get(ch, ch) for ch in cleaned).casefold()


def tokens(folded: str) -> list[str]:
    """Runs of letters or digits of a skeleton, split again where letters meet digits."""
    out: list[str] = []
    for part in _TOKEN_SPLIT.split(folded):
        if part:
            out.extend(p for p in _LETTER_DIGIT.split(part) if p)
    return out


def analyse_name(value: object, *, max_chars: int) -> dict[str, Any]:
    """Facts for a name compared against configured names (e.g. production-like ones)."""
    if not isinstance(value, str):
        return {"type": "name", "parsed": False, "reason": "not_a_string"}
    if len(value) > max_chars:
        return {"type": "name", "parsed": False, "reason": "too_long", "length": len(value)}
    normalized = clean(value)
    skel = skeleton(value)
    return {
        "type": "name",
        "parsed": True,
        "normalized": normalized,
        "skeleton": skel,
        "tokens": tokens(skel),
        "ascii": value.isascii(),
        "confusable": skel != normalized,
    }
