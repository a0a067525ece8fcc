"""Bounds on the work one analysis may do; past a bound a value gets its most dangerous reading."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Maximum sizes and nesting depths. The defaults are module constants of the package."""

    max_sql_chars: int = 65_536
    """Longest SQL text parsed; longer is ``parsed: false, reason: too_long``."""
    max_sql_depth: int = 4
    """Deepest nesting of SQL in SQL (DO block -> EXECUTE -> ...) that is still read."""
    max_sql_statements: int = 256
    """Most statements (top-level and nested) classified; more sets ``truncated``."""
    max_shell_chars: int = 8_192
    """Longest shell command parsed."""
    max_shell_depth: int = 4
    """Deepest nesting of shells (sh -c, eval, substitutions, decoded payloads) still read."""
    max_shell_commands: int = 256
    """Most simple commands recorded; more sets ``truncated``."""
    max_url_chars: int = 8_192
    """Longest URL or host parsed."""
    max_email_chars: int = 1_024
    """Longest e-mail address parsed (with its display name)."""
    max_path_chars: int = 4_096
    """Longest path resolved (PATH_MAX)."""
    max_amount_chars: int = 64
    """Longest amount string read."""
    max_name_chars: int = 256
    """Longest name normalised."""
    max_items: int = 100
    """Most items of a list-valued parameter analysed; more sets ``truncated``."""


DEFAULT_LIMITS = Limits()
