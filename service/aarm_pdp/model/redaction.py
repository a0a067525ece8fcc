"""Redaction of secrets: by parameter name and by value shape. PURE.

One place decides what counts as a secret, for receipts, telemetry, the semantic
scorer's action text and logs. ``REDACTED`` replaces what is withheld.

By name: :func:`is_secret_name` (``password``, ``api_key``, ``authToken``...).

By value: one matcher built at import time (:data:`RULES` and the gate index behind
:func:`find_spans`) from the ``denylist`` patterns of Yelp's ``detect-secrets`` plugins
(imported from the package, not copied; see :data:`DETECT_SECRETS_PLUGINS`) plus the
quotes-required patterns of its ``KeywordDetector``, and a small supplement
(:data:`SUPPLEMENT`) for shapes the issue names that detect-secrets 1.5 has no plugin
for. The patterns are not joined into one alternation: Python's ``re`` tries every
alternative at every position and defeats each pattern's literal-prefix search, which
measured ~700 µs for 100 characters; instead every pattern has a *gate*
(:data:`PLUGIN_GATES`), literals a text must contain for the pattern to match at all,
found with one C substring search each, and only patterns whose gate is open run. The
entropy plugins (``Base64HighEntropyString``, ``HexHighEntropyString``) are left out on
purpose: they flag any random-looking string, our own sha256 digests, UUIDs and
signatures included; so is ``IPPublicDetector`` (an address is not a credential).

detect-secrets scans files line by line and some plugins lean on that:

- ``^``/``$`` in a pattern (Artifactory) mean *line* start/end there, so every pattern
  is compiled with MULTILINE;
- a pattern with capture groups reports the groups, not the whole match. Where the
  groups are the secret (the keyword and ``key = "..."`` assignment patterns, the AWS
  secret key, npm's ``.npmrc`` line: :data:`GROUPS_ARE_THE_SECRET`) only they are
  withheld and the context stays (``password="<redacted>"``); where they are a prefix
  alternative (GitHub's ``(ghp|gho|...)_``, which detect-secrets reports as ``ghp``)
  the match is treated as one without groups;
- a pattern without groups is withheld whole, trimmed of the delimiters it consumes
  and *widened* to the token it sits in (``GitHubTokenDetector`` stops after 36
  characters, ``StripeDetector`` after 24, ``JwtTokenDetector``'s lazy tail stops before
  the signature): a partial redaction would still leak the rest of the credential;
- ``PrivateKeyDetector`` only finds the ``BEGIN ... PRIVATE KEY`` line (it flags the
  file): here the whole block is withheld, up to its ``END`` line or, when there is none
  (a truncated text), to the end of the text;
- ``BasicAuthDetector`` reports the password of ``scheme://user:password@host``: here
  the whole userinfo goes, scheme and host stay (``https://<redacted>@host/``);
- ``JwtTokenDetector`` also decodes the parts as JSON (``is_formally_valid``); that
  filter is not used: a truncated or re-padded token is still a credential;
- ``KeywordDetector`` picks its patterns by file type: the quotes-required set (its
  default) is used, so ``password = 'x'`` is withheld and prose like ``password
  expired`` is not; like detect-secrets it is applied line by line (long lines in
  windows, :data:`WINDOW`); plugins' ``verify`` (network calls) is never used.

A caller controls the text (parameters up to 64 kB), and three detect-secrets patterns
backtrack quadratically on crafted input (``//`` runs for npm, ``eyJeyJ...`` for JWT,
backtick runs for the keyword patterns): each is bounded without changing its matches
(:data:`_NPM_STARTS`, :data:`_JWT_RUN`, :data:`WINDOW`), and the worst crafted text
found costs ~3 µs per character, linear (``test_crafted_input_costs_linear_time``).

Matches are applied until a pass changes nothing (at most :data:`MAX_PASSES`), so a
secret inside the context another pattern consumed is found on the next pass, and
redaction is idempotent.

Cost of :func:`redact_values` per string (CPython 3.11, the dev machine's 2 shared
cores under a load of ~3, median of 5 runs, clean cache emptied before each call;
``tests/unit/test_redaction.py::test_cost_per_string`` re-measures with loose bounds,
``-s`` prints them):

- shorter than :data:`MIN_SECRET_LEN`, or a clean string seen before (tenants, agents,
  tools, enums, policy texts: see :data:`CLEAN_CACHE_SIZE`): 0.1-0.2 µs;
- 100 characters without a secret: 12 µs (prose) to 23 µs (with a URL and an e-mail
  address, which open the userinfo patterns); with one secret: 30-50 µs (a second
  pass confirms nothing is left);
- 10 kB without a secret: 0.75-1.0 ms; with ten secrets: 1.6-2.5 ms;
- crafted worst case: ~3 µs per character (64 kB: ~0.2 s).

On the 40 requests of ``bench/corpus.py`` a decision receipt's ``redact(parameters)``
costs ~8 µs more than the name-only redaction did (cold cache), about nothing warm.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import DENYLIST as KEYWORD_DENYLIST
from detect_secrets.plugins.keyword import DENYLIST_REGEX as KEYWORD_DENYLIST_REGEX
from detect_secrets.plugins.keyword import QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

REDACTED = "<redacted>"
MAX_REDACT_DEPTH = 16
MAX_PASSES = 4
MIN_SECRET_LEN = 5
"""No pattern matches fewer characters (``://a@``); shorter strings are returned as they
are without a look (``tests/unit/test_redaction.py`` checks the widths)."""
DETECTOR = f"detect-secrets {version('detect-secrets')}"
"""The value detector and its version, as the docs and the tests name it."""

_SECRET_SUBSTRINGS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "token",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "privatekey",
    "private_key",
    "credential",
    "authorization",
    "cookie",
    "sessionid",
    "session_id",
    "bearer",
    "signature",
    "client_secret",
)
_SECRET_PARTS = frozenset({"auth", "pin", "cvv", "otp", "key"})
_NAME_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """True when a parameter name looks like it holds a secret (case and style insensitive)."""
    snake = _CAMEL.sub("_", name).lower()
    norm = _NAME_SPLIT.sub("_", snake).strip("_")
    if any(s in norm for s in _SECRET_SUBSTRINGS):
        return True
    return any(part in _SECRET_PARTS for part in norm.split("_"))


# -- the value detector --------------------------------------------------------------

How = Literal["token", "groups", "group", "userinfo", "pem"]
"""What a match withholds: the token it sits in, its capture groups, one group, the
userinfo of a URL, or a whole PEM block."""

DETECT_SECRETS_PLUGINS: tuple[type[RegexBasedDetector], ...] = (
    AWSKeyDetector,
    ArtifactoryDetector,
    AzureStorageKeyDetector,
    BasicAuthDetector,
    CloudantDetector,
    DiscordBotTokenDetector,
    GitHubTokenDetector,
    GitLabTokenDetector,
    IbmCloudIamDetector,
    IbmCosHmacDetector,
    JwtTokenDetector,
    MailchimpDetector,
    NpmDetector,
    OpenAIDetector,
    PrivateKeyDetector,
    PypiTokenDetector,
    SendGridDetector,
    SlackDetector,
    SoftlayerDetector,
    SquareOAuthDetector,
    StripeDetector,
    TelegramBotTokenDetector,
    TwilioKeyDetector,
)
"""The regex plugins of detect-secrets whose ``denylist`` patterns are used."""

GROUPS_ARE_THE_SECRET: frozenset[type[RegexBasedDetector]] = frozenset(
    {
        AWSKeyDetector,
        CloudantDetector,
        IbmCloudIamDetector,
        IbmCosHmacDetector,
        NpmDetector,
        SoftlayerDetector,
    }
)
"""Plugins whose capture groups hold the secret (``key = "<secret>"``). The groups of
the others are prefix alternatives (GitHub's ``(ghp|gho|...)_``, GitLab's): their
matches are withheld whole."""

Gate = tuple[tuple[str, ...], ...]
"""Literals a text must hold before a pattern is tried: one of each group. A literal
with an upper-case letter is looked for as it is, one without in the casefolded text."""

_TOKEN68 = r"(?:(?=[A-Za-z]*[0-9\-._~+/])[A-Za-z0-9\-._~+/]{8,}|[A-Za-z]{16,})=*"

SUPPLEMENT: tuple[tuple[str, str, How, int, Gate], ...] = (
    # RFC 6750 ``Bearer <token>`` wherever it is echoed (detect-secrets has no header
    # plugin; it finds a bearer token only when the token is also a JWT). The token must
    # look like one (a digit or symbol, or 16+ letters): "the bearer of" stays.
    ("bearer", r"(?i)\bbearer\s+(" + _TOKEN68 + ")", "group", 1, (("bearer",),)),
    # ``Authorization:`` / ``Proxy-Authorization=`` values (Basic, Digest, custom
    # schemes): the scheme word, when it is one, and the credential after it.
    (
        "authorization",
        r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?("
        r"(?:(?:bearer|basic|digest|token|negotiate|ntlm|apikey|key)\s+)?[^\s\"',;<>]+)",
        "group",
        1,
        (("authorization",),),
    ),
    # URL userinfo that BasicAuthDetector misses: a user without a password
    # (``https://ghp_...@github.com``) or one with characters it excludes (raw ``@$!``).
    (
        "url_userinfo",
        r"://(?<=[A-Za-z0-9+.\-]://)([^\s/?#<>\"']+)@",
        "group",
        1,
        (("://",), ("@",)),
    ),
    # Google API keys (detect-secrets 1.5 has no Google plugin).
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}", "token", 0, (("AIza",),)),
    # GitHub fine-grained tokens (GitHubTokenDetector knows only ghp_/gho_/ghu_/ghs_/ghr_).
    ("github_pat", r"\bgithub_pat_[0-9A-Za-z_]{22,}", "token", 0, (("github_pat_",),)),
    # npm tokens outside an ``.npmrc`` line (NpmDetector needs the ``//host/:_authToken=``
    # context of that file).
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}", "token", 0, (("npm_",),)),
    # ``sk-`` secret keys: OpenAI project / service-account / admin keys (OpenAIDetector
    # requires 20 letters or digits on each side of its ``T3BlbkFJ`` marker, which
    # ``sk-proj-...`` keys often break with ``-`` or ``_``) and the other providers that
    # use the prefix (Anthropic ``sk-ant-``, DeepSeek...).
    ("sk_key", r"\bsk-[A-Za-z0-9_\-]{16,}", "token", 0, (("sk-",),)),
    # AWS secret access keys without quotes (AWSKeyDetector, reading code, wants them
    # quoted): ``aws_secret_access_key=wJalr...`` in a config line or a message.
    (
        "aws_secret_unquoted",
        r"(?i)aws.{0,20}?(?:key|pwd|pw|password|pass|token).{0,20}?[=:]\s*"
        r"([0-9a-zA-Z/+]{40})(?![0-9a-zA-Z/+=])",
        "group",
        1,
        (("aws",), ("key", "pw", "pass", "token")),
    ),
    # Artifactory API keys next to punctuation: ArtifactoryDetector wants whitespace,
    # ``=``, ``:`` or ``"`` on both sides (its password pattern ``AP...`` is too generic
    # to loosen the same way).
    (
        "artifactory_api_key",
        r"(?<![A-Za-z0-9])AKC[a-zA-Z0-9]{10,}(?![A-Za-z0-9])",
        "token",
        0,
        (("AKC",),),
    ),
    # PKCS#8 encrypted keys (PrivateKeyDetector lists the other PEM private keys).
    (
        "encrypted_private_key",
        r"BEGIN ENCRYPTED PRIVATE KEY",
        "pem",
        0,
        (("PRIVATE KEY",),),
    ),
)
"""Shapes detect-secrets lacks: (name, pattern, how, group, gate)."""


_KEY_WORDS = ("key", "pw", "pass", "token")  # ``(?:key|pwd|pw|password|pass|token)``

PLUGIN_GATES: dict[type[RegexBasedDetector], tuple[Gate, ...]] = {
    AWSKeyDetector: ((("A3T", "ABIA", "ACCA", "AKIA", "ASIA"),), (("aws",), _KEY_WORDS)),
    ArtifactoryDetector: ((("AKC",),), (("AP",),)),
    AzureStorageKeyDetector: ((("AccountKey=",),),),
    BasicAuthDetector: ((("://",), ("@",)),),
    CloudantDetector: (
        (("cl",), _KEY_WORDS),
        (("cl",), _KEY_WORDS),
        (("cloudant.com",),),
        (("cloudant.com",),),
    ),
    DiscordBotTokenDetector: (((".",),),),
    GitHubTokenDetector: ((("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),),),
    GitLabTokenDetector: ((("gl",),), (("GR1348941",),), *((("gl",),),) * 5),
    IbmCloudIamDetector: ((_KEY_WORDS,),),
    IbmCosHmacDetector: ((("secret",), ("key",)),),
    JwtTokenDetector: ((("eyJ",),),),
    MailchimpDetector: ((("-us",),),),
    NpmDetector: (((":_authToken=",),),),
    OpenAIDetector: ((("T3BlbkFJ",),),),
    PrivateKeyDetector: (*((("PRIVATE KEY",),),) * 7, (("PuTTY-User-Key-File-2",),)),
    PypiTokenDetector: ((("pypi-AgEIcHlwaS5vcmc",),), (("pypi-AgENdGVzdC5weXBpLm9yZw",),)),
    SendGridDetector: ((("SG.",),),),
    SlackDetector: ((("xox",),), (("hooks.slack.com",),)),
    SoftlayerDetector: ((("softlayer", "sl"), _KEY_WORDS), (("softlayer",),)),
    SquareOAuthDetector: ((("sq0csp-",),),),
    StripeDetector: ((("k_live_",),),),
    TelegramBotTokenDetector: (((":",),),),
    TwilioKeyDetector: ((("AC",),), (("SK",),)),
}
"""Per plugin and pattern, a necessary condition: what a text must contain for the
pattern to match at all (short, shared literals: fewer substring searches). Python's
``re`` tries every alternative at every position, so one alternation of all patterns
costs ~0.7 ms for 100 characters; trying only the patterns whose literals are present
(``str.__contains__``, a C substring search) makes ordinary text cost a few µs.
``tests/unit/test_redaction.py`` checks that gating changes no result on the corpus."""


def _keyword_words() -> tuple[str, ...]:
    """The literal each KeywordDetector denylist entry starts with (``api_?key`` → ``api``)."""
    words = []
    for entry in KEYWORD_DENYLIST:
        m = re.match(r"[a-zñ]+", entry)
        if m is None:  # pragma: no cover - detect-secrets' entries are words
            raise ValueError(f"KeywordDetector entry {entry!r} does not start with a word")
        word = m.group()
        if entry[m.end() : m.end() + 1] == "?":
            word = word[:-1]
        words.append(word)
    return tuple(sorted(set(words)))


_KEYWORD_WORDS = _keyword_words()
_QUOTES = ("'", '"', "`")


_KEYWORD_GATE = ("key", "pass", "pwd", "secret", "contrase")
"""One of these is in every KeywordDetector denylist entry (``api_?key``, ``db_?pass``,
``passwd``, ``contraseña``...); ``tests/unit/test_redaction.py`` checks it."""


def _keyword_gate(pattern: re.Pattern[str]) -> Gate:
    """Denylist word, a quote, and the pattern's operator (``:``, ``=``, ``!``, ``;``)."""
    source = pattern.pattern
    operators: tuple[str, ...] = ("=", "!")
    if source.endswith(";"):  # ``(quote)(secret)(\2);``: a closing quote, then ``;``
        operators = ("';", '";', "`;")
    elif ")?:(" in source:
        operators = (":",)
    return (_KEYWORD_GATE, _QUOTES, operators)


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    how: How
    gate: Gate
    group: int = 0
    starts: tuple[str, ...] = ()
    """Literals every match starts with (casefolded if they have letters): the pattern is
    tried only there; () anywhere."""
    first_per_line: bool = False
    """Only the first start of each line can matter (see :data:`_NPM_STARTS`)."""
    skip_run: re.Pattern[str] | None = None
    """After a failed attempt at a start, no start inside this run can match either (see
    :data:`_JWT_RUN`)."""
    windowed: bool = False
    """Applied line by line, long lines in windows (see :data:`WINDOW`)."""


_NPM_STARTS = (("//",), True)
"""NpmDetector's ``//.+/:_authToken=...`` backtracks over the rest of the line from every
``//``: quadratic on a line of many ``//`` (0.6 s for 15 kB). A match from a later ``//``
of a line is also one from its first (``.+`` spans the later one), so only the first
``//`` of each line is tried: linear, same matches."""
_JWT_STARTS = (("eyJ",), False)
_JWT_RUN = re.compile(r"eyJ[A-Za-z0-9-_=]*")  # the plugin's class, ``9-_`` a range and all
"""JwtTokenDetector's ``eyJ[A-Za-z0-9-_=]+\\.`` rescans the run after every ``eyJ`` in it:
quadratic on ``eyJeyJeyJ...`` (75 ms for 12 kB, seconds for a 64 kB parameter). A later
``eyJ`` of the same run meets the same ``.`` (or none) with the same tail, so once an
attempt fails the rest of its run is skipped: linear, same matches."""
_STARTS: dict[type[RegexBasedDetector], tuple[tuple[str, ...], bool]] = {
    NpmDetector: _NPM_STARTS,
    JwtTokenDetector: _JWT_STARTS,
}
_SKIP_RUNS: dict[type[RegexBasedDetector], re.Pattern[str]] = {JwtTokenDetector: _JWT_RUN}

WINDOW = 512
WINDOW_OVERLAP = 128
MAX_ATTEMPTS = 32
"""KeywordDetector's patterns are applied as detect-secrets applies them, line by line
(its secret pattern excludes ``\\v``, not newlines, because it only ever sees one line),
and a line longer than ``WINDOW`` characters in windows overlapping by
``WINDOW_OVERLAP``: from each opening quote they scan to the next ``'``/``"``, so a long
line of backticks costs the square of its length (0.1 s for 12 kB); in windows it is
linear. Each window must pass the rule's gate itself, and at most ``MAX_ATTEMPTS``
starts are tried in it: past that (one denylist word every 16 characters: crafted text)
the rest of the window is withheld, fail closed. A keyword value longer than the
overlap, astride a window edge, in a line longer than a window, is the price."""


def _multiline(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """``pattern`` with ``^``/``$`` at line ends, as in detect-secrets' line scans."""
    return re.compile(pattern.pattern, pattern.flags | re.MULTILINE)


def _rules() -> tuple[_Rule, ...]:
    rules: list[_Rule] = []
    for plugin in DETECT_SECRETS_PLUGINS:
        denylist: list[re.Pattern[str]] = list(plugin.denylist)  # type: ignore[call-overload]
        gates = PLUGIN_GATES[plugin]
        if len(gates) != len(denylist):
            raise ValueError(f"{plugin.__name__}: {len(denylist)} patterns, {len(gates)} gates")
        for pattern, gate in zip(denylist, gates, strict=True):
            if plugin is BasicAuthDetector:
                how: How = "userinfo"
            elif plugin is PrivateKeyDetector:
                how = "pem"
            elif pattern.groups and plugin in GROUPS_ARE_THE_SECRET:
                how = "groups"
            else:
                how = "token"
            starts, first_per_line = _STARTS.get(plugin, ((), False))
            rules.append(
                _Rule(
                    plugin.__name__,
                    _multiline(pattern),
                    how,
                    gate,
                    starts=starts,
                    first_per_line=first_per_line,
                    skip_run=_SKIP_RUNS.get(plugin),
                )
            )
    for pattern, group in QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP.items():
        starts = _KEYWORD_WORDS if pattern.pattern.startswith(KEYWORD_DENYLIST_REGEX) else ()
        rules.append(
            _Rule(
                "KeywordDetector",
                _multiline(pattern),
                "group",
                _keyword_gate(pattern),
                group,
                starts,
                windowed=True,
            )
        )
    for name, source, how, group, gate in SUPPLEMENT:
        rules.append(
            _Rule(f"supplement.{name}", re.compile(source, re.MULTILINE), how, gate, group)
        )
    for rule in rules:
        if not rule.gate:
            raise ValueError(f"{rule.name}: no gate")
        ignorecase = rule.pattern.flags & re.IGNORECASE or rule.pattern.pattern.startswith("(?i)")
        if ignorecase and any(lit != lit.lower() for g in rule.gate for lit in g):
            raise ValueError(f"{rule.name}: case-insensitive pattern, case-sensitive gate")
    return tuple(rules)


RULES = _rules()
"""Every value pattern, built once at import: detect-secrets' first, then the supplement."""

_TOKEN_LEFT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-+/=.]*")
_DELIMITERS = frozenset(" \t\r\n\f\v=:\"'")
_PEM_END = re.compile(r"-{4,5} ?END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
"""The end of a PEM (``-----END RSA PRIVATE KEY-----``) or SSH2 (``---- END ... ----``)
private key block."""


def _token_span(text: str, start: int, end: int, floor: int) -> tuple[int, int]:
    """The match trimmed of delimiters and widened to its token (not left of ``floor``,
    where the rule's previous span ended: each character is walked once per rule)."""
    while start < end and text[start] in _DELIMITERS:
        start += 1
    while end > start and text[end - 1] in _DELIMITERS:
        end -= 1
    while start > floor and text[start - 1] in _TOKEN_LEFT:
        start -= 1
    tail = _TOKEN_TAIL.match(text, end)
    return start, tail.end() if tail else end


def _spans(text: str, rule: _Rule, m: re.Match[str], floor: int) -> Iterator[tuple[int, int]]:
    start, end = m.span()
    if rule.how == "token":
        yield _token_span(text, start, end, floor)
    elif rule.how == "groups":
        for k in range(1, rule.pattern.groups + 1):
            s, e = m.span(k)
            if e > s:
                yield s, e
    elif rule.how == "group":
        yield m.span(rule.group)
    elif rule.how == "userinfo":
        yield text.index("://", start) + 3, text.rindex("@", start, end)
    else:  # pem
        while start > 0 and text[start - 1] == "-":
            start -= 1
        block_end = _PEM_END.search(text, end)
        yield start, block_end.end() if block_end else len(text)


def _gate_index(
    rules: tuple[_Rule, ...],
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple[int, ...]]]:
    """Case-sensitive literals, casefolded literals, and first-group literal → rules."""
    literals = {lit for rule in rules for group in rule.gate for lit in group}
    by_first: dict[str, list[int]] = {}
    for i, rule in enumerate(rules):
        for lit in rule.gate[0]:
            by_first.setdefault(lit, []).append(i)
    return (
        tuple(sorted(lit for lit in literals if lit != lit.lower())),
        tuple(sorted(lit for lit in literals if lit == lit.lower())),
        {lit: tuple(ids) for lit, ids in by_first.items()},
    )


_AS_IS, _FOLDED, _BY_FIRST = _gate_index(RULES)


def _open_rules(text: str, folded: str) -> list[_Rule]:
    """The rules whose gate ``text`` passes, in :data:`RULES` order."""
    present = {lit for lit in _AS_IS if lit in text}
    present.update(lit for lit in _FOLDED if lit in folded)
    if not present:
        return []
    candidates = sorted({i for lit in present for i in _BY_FIRST.get(lit, ())})
    out = []
    for i in candidates:
        rule = RULES[i]
        if all(not present.isdisjoint(group) for group in rule.gate[1:]):
            out.append(rule)
    return out


def _matches(
    rule: _Rule, text: str, folded: str, start: int, end: int, overflow: list[tuple[int, int]]
) -> Iterator[re.Match[str]]:
    """``rule.pattern.finditer(text, start, end)``, tried only at the rule's start literals
    if it has any (and not again inside the run a failed attempt already covered)."""
    if not rule.starts:
        yield from rule.pattern.finditer(text, start, end)
        return
    haystack = text
    if not any(word != word.lower() for word in rule.starts) and any(
        c.isalpha() for word in rule.starts for c in word
    ):
        if len(folded) != len(text):  # casefolding moved positions: search everywhere
            yield from rule.pattern.finditer(text, start, end)
            return
        haystack = folded
    positions = sorted(
        {i for word in rule.starts for i in _occurrences(haystack, word, start, end)}
    )
    after = 0
    line_end = -1
    attempts = 0
    for pos in positions:
        if pos < after:
            continue
        attempts += 1
        if rule.windowed and attempts > MAX_ATTEMPTS:
            overflow.append((pos, end))  # fail closed: the rest of the window is withheld
            return
        if rule.first_per_line:
            if pos <= line_end:
                continue
            line_end = text.find("\n", pos, end)
            line_end = end if line_end < 0 else line_end
        m = rule.pattern.match(text, pos, end)
        if m is not None:
            yield m
            after = max(m.end(), pos + 1)
        elif rule.skip_run is not None:
            run = rule.skip_run.match(text, pos, end)
            after = run.end() if run else pos + 1


def _occurrences(text: str, word: str, start: int, end: int) -> Iterator[int]:
    i = text.find(word, start, end)
    while i >= 0:
        yield i
        i = text.find(word, i + 1, end)


def _segments(rule: _Rule, text: str) -> Iterator[tuple[int, int, bool]]:
    """Where ``rule`` is applied: the whole text, or (:attr:`_Rule.windowed`) each line,
    a line longer than :data:`WINDOW` in windows overlapping by :data:`WINDOW_OVERLAP`
    (the flag: a window of a long line)."""
    if not rule.windowed:
        yield 0, len(text), False
        return
    line_start = 0
    while line_start <= len(text):
        line_end = text.find("\n", line_start)
        line_end = len(text) if line_end < 0 else line_end
        pos = line_start
        long_line = line_end - line_start > WINDOW
        while True:
            yield pos, min(line_end, pos + WINDOW), long_line
            if pos + WINDOW >= line_end:
                break
            pos += WINDOW - WINDOW_OVERLAP
        line_start = line_end + 1


def _rule_matches(
    rule: _Rule, text: str, folded: str, gated: bool, overflow: list[tuple[int, int]]
) -> Iterator[re.Match[str]]:
    for start, end, window in _segments(rule, text):
        if not gated:
            yield from rule.pattern.finditer(text, start, end)
        elif not window or _window_open(rule.gate, text, folded, start, end):
            yield from _matches(rule, text, folded, start, end, overflow)


def _window_open(gate: Gate, text: str, folded: str, start: int, end: int) -> bool:
    """The gate, checked inside one window (casefolded literals need aligned positions)."""
    aligned = len(folded) == len(text)
    return all(
        any(
            (text if lit != lit.lower() or not aligned else folded).find(lit, start, end) >= 0
            or (not aligned and lit == lit.lower() and lit in folded)
            for lit in group
        )
        for group in gate
    )


def find_spans(text: str, *, gated: bool = True) -> list[tuple[int, int]]:
    """The (start, end) spans of ``text`` the value detector withholds, unsorted.

    ``gated=False`` tries every pattern everywhere (the reference the tests compare the
    gates and start literals against).
    """
    folded = text.casefold()
    spans: list[tuple[int, int]] = []
    overflow: list[tuple[int, int]] = []
    for rule in _open_rules(text, folded) if gated else RULES:
        floor = 0
        for m in _rule_matches(rule, text, folded, gated, overflow):
            if rule.how == "pem" and m.start() < floor:
                continue  # inside the block the previous BEGIN already withholds
            if rule.how == "token" and m.end() <= floor:
                continue  # inside the token the previous match was widened to
            for s, e in _spans(text, rule, m, floor):
                if e > s and text[s:e] != REDACTED:
                    spans.append((s, e))
                    floor = max(floor, e)
    spans.extend(overflow)
    return spans


def _one_pass(text: str, gated: bool) -> str:
    spans = find_spans(text, gated=gated)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    pos = 0
    for s, e in spans:
        if e <= pos:
            continue
        if s < pos:  # overlaps the previous redaction: extend it
            s = pos
        else:
            out.append(text[pos:s])
            out.append(REDACTED)
        pos = e
    out.append(text[pos:])
    return "".join(out)


CLEAN_CACHE_SIZE = 4096
CLEAN_CACHE_MAX_LEN = 256
_clean: dict[str, None] = {}
"""Short strings known to hold no secret (tenants, agents, tools, enums repeat on every
decision): a hit costs a dict lookup. Only clean strings are kept, never a secret; the
oldest goes first when full."""


def redact_values(text: str, *, gated: bool = True) -> str:
    """``text`` with every credential-shaped substring replaced by :data:`REDACTED`.

    URL userinfo goes but the scheme and host stay (``postgresql://<redacted>@db/x``).
    Text without a secret comes back unchanged (the same string).
    """
    if len(text) < MIN_SECRET_LEN or (gated and text in _clean):
        return text
    original = text
    for _ in range(MAX_PASSES):
        out = _one_pass(text, gated)
        if out is text or out == text:
            break
        text = out
    if text is original and gated and len(text) <= CLEAN_CACHE_MAX_LEN:
        if len(_clean) >= CLEAN_CACHE_SIZE:
            _clean.pop(next(iter(_clean)), None)
        _clean[text] = None
    return text


def _key(out: Mapping[str, Any], key: str) -> str:
    """``key`` value-redacted; one that collides with a member already in ``out`` (two
    redacted keys, or a redacted one and a literal ``<redacted>``) gets a ``#n`` suffix."""
    red = redact_values(key)
    if red not in out:
        return red
    n = 2
    while f"{red}#{n}" in out:
        n += 1
    return f"{red}#{n}"


def redact_strings(value: Any, depth: int = 0) -> Any:
    """Every string inside a JSON value (keys too) value-redacted; nothing else changes.

    For documents whose member names are ours (follow-up receipts, telemetry events), so
    that a name like ``session_id`` or ``token_sha256`` does not withhold our own data.
    """
    if isinstance(value, str):
        return redact_values(value)
    if depth > MAX_REDACT_DEPTH:
        return REDACTED
    # Inline what a call would return for the common leaves: short or known-clean strings
    # (the same checks redact_values makes first), empty lists and objects and, within the
    # depth limit, numbers, booleans and null. A decision record's input has ~100 of
    # them (docs/performance.md, "Receipt CPU").
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        keep = depth < MAX_REDACT_DEPTH
        for k, v in value.items():
            if type(k) is not str or not (len(k) < MIN_SECRET_LEN or k in _clean) or k in out:
                k = _key(out, k) if isinstance(k, str) else k
            t = type(v)
            clean = t is str and (len(v) < MIN_SECRET_LEN or v in _clean)
            if clean or (keep and (v is None or t is bool or t is int or t is float)):
                out[k] = v
            elif keep and (t is list or t is dict) and not v:
                out[k] = t()
            else:
                out[k] = redact_strings(v, depth + 1)
        return out
    if isinstance(value, list):
        return [
            v
            if type(v) is str and (len(v) < MIN_SECRET_LEN or v in _clean)
            else redact_strings(v, depth + 1)
            for v in value
        ]
    if isinstance(value, tuple):
        return tuple(redact_strings(v, depth + 1) for v in value)
    return value


def redact(value: Any, depth: int = 0) -> Any:
    """A JSON value with secret-named members withheld and every string value-redacted.

    Keys that hold a secret shape are value-redacted too; integral floats below 2**53
    become ints. Deterministic; deeper than :data:`MAX_REDACT_DEPTH` is withheld whole.
    """
    if depth > MAX_REDACT_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return redact_values(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                out[k] = redact(v, depth + 1)
                continue
            out[_key(out, k)] = REDACTED if is_secret_name(k) else redact(v, depth + 1)
        return out
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
