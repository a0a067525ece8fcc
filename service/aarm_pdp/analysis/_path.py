"""File paths read the way the kernel resolves them, without touching the file system.

POSIX rules, lexically (no symlink is followed: there is no file system to ask):
runs of ``/`` are one separator (``//etc`` is ``/etc``), ``.`` segments vanish, ``..``
removes the segment before it and stops at the root (``/etc/..`` is ``/``, ``/..`` is
``/``), a trailing slash is dropped. ``~`` and ``~user`` stand for a home directory and
are kept as the anchor ``~``; ``..`` above it is read as the root (the most dangerous
reading). A relative path is joined to the working directory when one is known.

A value with percent-escapes (``/%65tc``) is also decoded and resolved; the facts that
flag danger (``system``, ``protected``) hold when either reading has them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

# Top-level trees that belong to the operating system. Deleting one of them, or the
# root, or all homes, wipes the machine: those are "protected". Anything inside them
# is a "system" path. Scratch trees inside them are neither.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/usr",
    "/var",
)
SCRATCH_TREES = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 (names to compare, not files to use)
# Besides the system trees themselves: the root, the homes, and the trees below them
# whose loss stops the system as surely as the top level's.
PROTECTED_EXTRA = (
    "/",
    "/home",
    "~",
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var/lib",
    "/var/log",
)
_PROTECTED = frozenset(SYSTEM_TREES) | frozenset(PROTECTED_EXTRA)
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_GLOB = re.compile(r"[*?\[]")


def resolve(raw: str, cwd: str | None = None) -> tuple[str, dict[str, bool]]:
    """Lexically resolved path and what the resolution saw.

    Returns ``(path, seen)``: ``path`` is absolute (``/...``), home-anchored (``~`` or
    ``~/...``) or, when relative and no absolute ``cwd`` is known, relative;
    ``seen`` has ``traversal`` (a ``..`` segment), ``escapes`` (``..`` above the root,
    above ``~`` or out of an unknown directory), ``dot_segments``, ``empty_segments``,
    ``trailing_slash``.
    """
    seen = {
        "traversal": False,
        "escapes": False,
        "dot_segments": False,
        "empty_segments": False,
        "trailing_slash": len(raw) > 1 and raw.endswith("/"),
    }
    text = raw
    anchor: str
    if text.startswith("~"):
        anchor, text = "~", text.partition("/")[2]
    elif text.startswith("/"):
        anchor = "/"
    elif cwd is not None and cwd.startswith(("/", "~")):
        base, _ = resolve(cwd)
        joined, joined_seen = resolve(("" if base == "/" else base) + "/" + text)
        joined_seen["trailing_slash"] = seen["trailing_slash"]
        return joined, joined_seen
    else:
        anchor = ""
    if "//" in text:
        seen["empty_segments"] = True
    parts: list[str] = []
    for seg in text.split("/"):
        if seg == "":
            continue
        if seg == ".":
            seen["dot_segments"] = True
            continue
        if seg == "..":
            seen["traversal"] = True
            if parts and parts[-1] != "..":
                parts.pop()
            elif anchor == "/":
                seen["escapes"] = True
            elif anchor == "~":
                # Above the home directory: read as the root, the most dangerous reading.
                seen["escapes"] = True
                anchor = "/"
            else:
                seen["escapes"] = True
                parts.append("..")
            continue
        parts.append(seg)
    if anchor == "/":
        return "/" + "/".join(parts), seen
    if anchor == "~":
        return ("~/" + "/".join(parts)) if parts else "~", seen
    return ("/".join(parts) or "."), seen


def is_system(path: str) -> bool:
    """Inside an operating-system tree (and not in a scratch tree)."""
    if any(path == t or path.startswith(t + "/") for t in SCRATCH_TREES):
        return False
    return path == "/" or any(path == t or path.startswith(t + "/") for t in SYSTEM_TREES)


def is_protected(path: str) -> bool:
    """The root, a home anchor, or a top-level system tree: deleting it wipes the machine."""
    return path in _PROTECTED or (path.startswith("/home/") and path.count("/") == 2)


def glob_base(path: str) -> str:
    """The directory a glob expands in: the segments before the first one with a glob."""
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if _GLOB.search(seg):
            base = "/".join(segments[:i])
            return base or ("/" if path.startswith("/") else ".")
    return path


def has_glob(text: str) -> bool:
    """Contains a glob metacharacter (``*``, ``?``, ``[``)."""
    return _GLOB.search(text) is not None


def path_facts(raw: str, cwd: str | None = None) -> dict[str, Any]:
    """Facts of one path string (the ``path`` analysis type and shell arguments)."""
    resolved, seen = resolve(raw, cwd)
    readings = [resolved]
    facts: dict[str, Any] = {
        "normalized": resolved,
        "absolute": resolved.startswith("/"),
        "home": resolved == "~" or resolved.startswith("~/"),
        "relative": not (resolved.startswith("/") or resolved.startswith("~")),
        **seen,
        "percent_encoded": False,
    }
    if _PERCENT.search(raw):
        decoded, dseen = resolve(unquote(raw), cwd)
        facts["percent_encoded"] = True
        facts["decoded"] = decoded
        facts["traversal"] = facts["traversal"] or dseen["traversal"]
        facts["escapes"] = facts["escapes"] or dseen["escapes"]
        readings.append(decoded)
    glob = has_glob(raw)
    facts["glob"] = glob
    if glob:
        facts["glob_base"] = glob_base(resolved)
        readings.append(facts["glob_base"])
    facts["system"] = any(is_system(r) for r in readings)
    facts["protected"] = any(is_protected(r) for r in readings)
    top = resolved.split("/")[1] if resolved.startswith("/") and resolved != "/" else ""
    facts["top"] = "/" + top if resolved.startswith("/") else ("~" if facts["home"] else "")
    return facts


def analyse_path(value: object, *, max_chars: int) -> dict[str, Any]:
    """Facts for a parameter typed ``path``; unparseable values read as protected."""
    if not isinstance(value, str):
        return _unparsed("not_a_string")
    if len(value) > max_chars:
        return _unparsed("too_long", length=len(value))
    if "\x00" in value:
        return _unparsed("nul_byte")
    if value == "":
        return _unparsed("empty")
    return {"type": "path", "parsed": True, **path_facts(value)}


def _unparsed(reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "path",
        "parsed": False,
        "reason": reason,
        **extra,
        "system": True,
        "protected": True,
    }
