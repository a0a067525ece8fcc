"""Redaction by name and by value: the detector's construction, exact outputs, JSON
values, receipts byte for byte unchanged without secrets, logging, and the cost.

The corpus of credential shapes and the sinks (receipts, telemetry, logs) are in
``test_redaction_corpus.py``.
"""

from __future__ import annotations

import importlib
import inspect
import io
import logging
import pkgutil
import random
import re
import statistics
import sys
import time
from typing import Any

import detect_secrets.plugins
import pytest
from aarm_pdp.model import redaction
from aarm_pdp.model.decision import Decision, DecisionResult, PolicyVersion, Reason
from aarm_pdp.model.redaction import (
    DETECT_SECRETS_PLUGINS,
    DETECTOR,
    GROUPS_ARE_THE_SECRET,
    MAX_REDACT_DEPTH,
    MIN_SECRET_LEN,
    REDACTED,
    RULES,
    is_secret_name,
    redact,
    redact_strings,
    redact_values,
)
from aarm_pdp.model.request import Action, ActionRequest, Identity, identity_doc
from aarm_pdp.observability import logging as aarm_logging
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts.canonical import canonicalize
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ip_public import IPPublicDetector
from detect_secrets.plugins.keyword import DENYLIST

from tests.unit.test_redaction_corpus import NEGATIVES, SHAPES, Shape

GHP = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

# -- the detector -----------------------------------------------------------------------


def test_detector_is_detect_secrets_and_names_its_version() -> None:
    assert re.fullmatch(r"detect-secrets \d+\.\d+\.\d+", DETECTOR)
    names = {rule.name for rule in RULES}
    assert {p.__name__ for p in DETECT_SECRETS_PLUGINS} <= names
    assert "KeywordDetector" in names
    # the detect-secrets patterns are the package's own objects' sources, not copies
    for plugin in DETECT_SECRETS_PLUGINS:
        sources = {r.pattern.pattern for r in RULES if r.name == plugin.__name__}
        assert sources == {p.pattern for p in plugin.denylist}  # type: ignore[attr-defined]


def _shipped_regex_plugins() -> set[type[RegexBasedDetector]]:
    found: set[type[RegexBasedDetector]] = set()
    for info in pkgutil.iter_modules(detect_secrets.plugins.__path__):
        module = importlib.import_module(f"detect_secrets.plugins.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, RegexBasedDetector) and not inspect.isabstract(cls):
                found.add(cls)
    return found


def test_every_shipped_regex_plugin_is_used_or_left_out_on_purpose() -> None:
    """A detect-secrets upgrade that adds a plugin fails here until it is wired in."""
    left_out = {IPPublicDetector}  # an address is not a credential
    assert _shipped_regex_plugins() == set(DETECT_SECRETS_PLUGINS) | left_out
    assert not any("Entropy" in p.__name__ for p in DETECT_SECRETS_PLUGINS)


def test_grouped_patterns_are_classified() -> None:
    """Capture groups are either the secret or a prefix alternative: each plugin is one."""
    grouped = {
        p
        for p in DETECT_SECRETS_PLUGINS
        if any(r.groups for r in p.denylist)  # type: ignore[attr-defined]
    }
    prefix_alternatives = {GitHubTokenDetector, GitLabTokenDetector, BasicAuthDetector}
    assert grouped == GROUPS_ARE_THE_SECRET | prefix_alternatives


def test_keyword_gate_is_in_every_denylist_entry() -> None:
    for entry in DENYLIST:
        for variant in (re.sub(r".\?", "", entry), entry.replace("?", "")):
            assert any(word in variant for word in redaction._KEYWORD_GATE), entry


def test_no_pattern_matches_fewer_than_min_secret_len_characters() -> None:
    widths = {
        rule.name: re._parser.parse(rule.pattern.pattern, rule.pattern.flags).getwidth()[0]  # type: ignore[attr-defined]
        for rule in RULES
    }
    assert min(widths.values()) >= MIN_SECRET_LEN
    assert min(widths.values()) == MIN_SECRET_LEN  # and the bound is tight


def _mixed_texts(n: int) -> list[str]:
    rnd = random.Random(11)
    pieces = [s.text for s in SHAPES] + NEGATIVES
    glue = [" ", "\n", ", ", " = ", ": ", "'", '"', "(", ")", "/", "@", ";"]
    return [
        "".join(rnd.choice(pieces) + rnd.choice(glue) for _ in range(rnd.randint(1, 6)))
        for _ in range(n)
    ]


def test_gates_and_start_literals_change_no_result() -> None:
    """The gated matcher finds exactly what every pattern tried everywhere finds."""
    for text in _mixed_texts(300):
        assert redact_values(text) == redact_values(text, gated=False)


# -- exact outputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("postgresql://u:p@db/x", "postgresql://<redacted>@db/x"),
        ("https://user:pass@host/", "https://<redacted>@host/"),
        ("see https://user:pass@host/a?b=c#d.", "see https://<redacted>@host/a?b=c#d."),
        (f"git clone https://{GHP}@github.com/o/r", "git clone https://<redacted>@github.com/o/r"),
        ('password="hunter2" ok', 'password="<redacted>" ok'),
        ("{'api_key': 'abc123xyz'}", "{'api_key': '<redacted>'}"),
        ("Authorization: Bearer abc.def-123 done", "Authorization: <redacted> done"),
        ("Bearer abc.def-123", "Bearer <redacted>"),
        (f"token={GHP}&x=1", "token=<redacted>&x=1"),
        ("key AKIAIOSFODNN7EXAMPLE here", "key <redacted> here"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nok",
            "<redacted>\nok",
        ),
        ("cut: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIL", "cut: <redacted>"),
        ("two: AKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLF", "two: <redacted> <redacted>"),
        # a failed eyJ attempt skips only its own run (the plugin's class has no "-")
        (f"x eyJab-{JWT} y", "x <redacted> y"),
        (f"eyJeyJeyJ {JWT}", f"eyJeyJeyJ {REDACTED}"),
    ],
)
def test_exact_redactions(text: str, want: str) -> None:
    assert redact_values(text) == want


def test_text_without_secret_is_the_same_object() -> None:
    for text in [*NEGATIVES, "", "abcd", "x" * 10_000]:
        assert redact_values(text) is text


def test_a_secret_is_never_kept_in_the_clean_cache() -> None:
    text = f"t {GHP}"
    assert redact_values(text) == "t <redacted>"
    assert text not in redaction._clean
    assert redact_values(text) == "t <redacted>"
    assert redact_values("payments.transfer") == "payments.transfer"
    assert "payments.transfer" in redaction._clean


def test_the_clean_cache_is_bounded() -> None:
    for i in range(redaction.CLEAN_CACHE_SIZE + 10):
        redact_values(f"plain value number {i}")
    assert len(redaction._clean) <= redaction.CLEAN_CACHE_SIZE
    long = "x" * (redaction.CLEAN_CACHE_MAX_LEN + 1)
    assert redact_values(long) is long
    assert long not in redaction._clean


# -- JSON values ------------------------------------------------------------------------


def test_redact_by_name_and_by_value_keys_too() -> None:
    doc = {
        "password": "hunter2",
        "apiKey": {"nested": "x"},
        "note": f"use {GHP}",
        GHP: 1,
        "list": [f"Bearer {GHP}", 2.0, 2.5, True, None],
        "to": "DE89370400440532013000",
    }
    assert redact(doc) == {
        "password": REDACTED,
        "apiKey": REDACTED,
        "note": "use <redacted>",
        REDACTED: 1,
        "list": ["Bearer <redacted>", 2, 2.5, True, None],
        "to": "DE89370400440532013000",
    }


def test_redacted_keys_that_collide_stay_apart_deterministically() -> None:
    other = GHP[:-1] + "Z"
    doc = {GHP: 1, other: 2, REDACTED: 3}
    assert redact(doc) == {REDACTED: 1, f"{REDACTED}#2": 2, f"{REDACTED}#3": 3}
    assert list(redact(doc).values()) == [1, 2, 3]
    assert redact_strings(doc) == redact(doc)


def test_redact_strings_is_value_only_and_keeps_numbers() -> None:
    doc = {"session_id": "s-1", "token_sha256": "ab" * 32, "drift": 0.0, "t": ("a", GHP)}
    assert redact_strings(doc) == {
        "session_id": "s-1",
        "token_sha256": "ab" * 32,
        "drift": 0.0,
        "t": ("a", REDACTED),
    }
    assert isinstance(redact_strings(doc)["drift"], float)


def test_depth_is_bounded() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_REDACT_DEPTH + 5):
        deep = {"a": [deep]}
    for fn in (redact, redact_strings):
        text = repr(fn(deep))
        assert REDACTED in text
        assert "leaf" not in text


def test_secret_names_are_unchanged() -> None:
    assert is_secret_name("X-Api-Key")
    assert is_secret_name("client_secret")
    assert not is_secret_name("amount")


# -- receipts: byte for byte the same without a secret ------------------------------------


def _name_only(value: Any, depth: int = 0) -> Any:
    """The receipt redaction before value redaction existed (name-based only)."""
    if depth > MAX_REDACT_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_name(k) else _name_only(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_name_only(v, depth + 1) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _bodies() -> list[dict[str, Any]]:
    params = {
        "to": "DE89370400440532013000",
        "memo": NEGATIVES[0],
        "ids": NEGATIVES[3:8],
        "password": "hunter2",
        "amount": 12.0,
        "nested": {"email": "alice@example.com", "when": "2026-05-01T10:00:00Z"},
        "rows": [{"sql": NEGATIVES[-3]}, {"url": NEGATIVES[17]}],
    }
    request = ActionRequest(
        request_id="req-1",
        identity=Identity(tenant="acme", human="alice@example.com", agent="a", session_id="s"),
        action=Action(tool="payments", operation="transfer", parameters=params),
    )
    decision = DecisionResult(
        decision=Decision.MODIFY,
        reasons=(Reason("amount_capped", "aarm.limits.cap", "amount over 10 EUR capped"),),
        matched_rules=("aarm.limits.cap",),
        modified_parameters={**params, "amount": 10},
    )
    bodies = [
        receipt_body.decision_receipt(
            receipt_id="r-1",
            decision_id="d-1",
            request=request,
            decision=decision,
            policy=PolicyVersion("rev-1", "ab" * 32),
            context={"session": {"action_count": 3}},
            context_hash="cd" * 32,
            now_ns=1_777_600_000_000_000_000,
        )
    ]
    follow_ups: list[tuple[str, dict[str, Any]]] = [
        (
            "outcome",
            {"success": False, "error": "upstream 503: try later", "output_hash": "ef" * 32},
        ),
        (
            "approval",
            {"approver": "bob@example.com", "granted": True, "reason": "ok", "result": "GRANTED"},
        ),
        ("deferral_resolution", {"verdict": "ALLOW", "method": "context_provided"}),
        ("session_end", {"context_hash": "01" * 32, "action_count": 3}),
    ]
    for kind, detail in follow_ups:
        bodies.append(
            receipt_body.follow_up_receipt(
                receipt_id=f"r-{kind}",
                kind=kind,
                tenant="acme",
                session_id="s",
                decision_id="d-1",
                identity=identity_doc(request.identity),
                detail=detail,
                now_ns=1_777_600_000_000_000_001,
            )
        )
    return bodies


def test_receipt_bytes_without_secrets_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [canonicalize(b) for b in _bodies()]
    monkeypatch.setattr(receipt_body, "redact", _name_only)
    monkeypatch.setattr(receipt_body, "redact_strings", lambda v: v)
    before = [canonicalize(b) for b in _bodies()]
    assert now == before
    assert b'"password":"<redacted>"' in now[0]  # name-based redaction as before


# -- logs ---------------------------------------------------------------------------------


def _record(msg: str, *args: Any, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"failed with {GHP}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("aarm_pdp.x", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_filter_redacts_message_arguments_and_exception_text() -> None:
    record = _record("retry %s after %d s", f"Bearer {GHP}", 3, exc=True)
    assert aarm_logging.RedactingFilter().filter(record)
    assert record.getMessage() == "retry Bearer <redacted> after 3 s"
    assert record.exc_text is not None
    assert "Traceback" in record.exc_text
    assert GHP not in record.exc_text
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert GHP not in text
    assert aarm_logging.JsonFormatter().format(record).count(GHP) == 0


def test_filter_lets_a_bad_format_call_through_to_logging() -> None:
    record = _record("two %s %s", "one")
    assert aarm_logging.RedactingFilter().filter(record)
    assert record.args == ("one",)


def test_text_format_setup_redacts_too() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        aarm_logging.setup("info", "text")
        buffer = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        logging.getLogger("aarm_pdp.api").warning("peer sent %s", f"postgresql://u:{GHP}@db/x")
        assert "peer sent postgresql://<redacted>@db/x" in buffer.getvalue()
        logging.getLogger("aarm_pdp.api").debug("below the level: %s", GHP)
        assert GHP not in buffer.getvalue()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


# -- cost ---------------------------------------------------------------------------------


def _per_call_us(fn: Any, arg: Any, n: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn(arg)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def test_cost_per_string() -> None:
    """Re-measures the numbers in the redaction module's docstring (loose bounds: CI
    machines are shared). Run with ``-s`` to see them."""
    prose = (
        "Refund of order 4711 for customer Jane Doe failed: the payment provider returned "
        "status 402 (insufficient funds); retry after 2026-05-01T10:00:00Z or contact "
        "support at https://help.example.com/t/4711 or alice@example.com. "
    )
    short = (prose * 2)[:100]
    short_secret = short[:60] + " " + GHP
    long = (prose * 100)[:10_000]
    long_secrets = " ".join(long[i : i + 1000] + " " + GHP for i in range(0, 10_000, 1000))

    def uncached(text: str) -> str:
        redaction._clean.clear()
        return redact_values(text)

    log_filter, formatter = aarm_logging.RedactingFilter(), aarm_logging.JsonFormatter()

    def log_line(call: tuple[str, tuple[Any, ...], bool]) -> str:
        redaction._clean.clear()
        msg, args, exc = call
        record = _record(msg, *args, exc=exc)
        log_filter.filter(record)
        return formatter.format(record)

    costs = {
        "100 chars": _per_call_us(uncached, short, 500),
        "100 chars + 1 secret": _per_call_us(uncached, short_secret, 500),
        "10 kB": _per_call_us(uncached, long, 20),
        "10 kB + 10 secrets": _per_call_us(uncached, long_secrets, 20),
        "100 chars, cached clean": _per_call_us(redact_values, short, 2000),
        "log line (filter + JSON), 100 chars": _per_call_us(
            log_line, ("peer %s", (short,), False), 500
        ),
        "log line with a traceback": _per_call_us(log_line, ("failed", (), True), 200),
    }
    print({k: f"{v:.1f} µs" for k, v in costs.items()})
    assert costs["100 chars"] < 500
    assert costs["100 chars + 1 secret"] < 1000
    assert costs["10 kB"] < 20_000
    assert costs["10 kB + 10 secrets"] < 40_000
    assert costs["100 chars, cached clean"] < 50


ADVERSARIAL = [
    "//x/" * 4 + ":_authToken=" + "//" * 8,  # NpmDetector: .+ from every //
    "eyJ",  # JwtTokenDetector: the run after every eyJ
    "password = `,",  # KeywordDetector: from every backtick to the next quote
    "=[key_`pw",
    ".password`;",
    "-----BEGIN RSA PRIVATE KEY-----\n",  # no END: to the end of the text, once
    "AKCAccountKey=",  # tokens widened over the same run
    ("a://" + "b" * 40),
]


def _best_of_5(text: str) -> float:
    """CPU seconds of this thread (the best of five): wall time on a busy machine counts
    the time other processes ran, which made a linear cost look quadratic."""
    runs = []
    for _ in range(5):
        start = time.thread_time()
        redact_values(text)
        runs.append(time.thread_time() - start)
    return min(runs)


@pytest.mark.parametrize("motif", ADVERSARIAL)
def test_crafted_input_costs_linear_time(motif: str) -> None:
    """Four times the text costs about four times the time (quadratic would be 16)."""
    small = _best_of_5(motif * (16_000 // len(motif)))
    large = _best_of_5(motif * (64_000 // len(motif)))
    assert large < 8 * small + 0.02, (small, large)
    assert large < 2.0  # a 64 kB parameter (the request limit) in well under a second


def test_too_many_keyword_starts_in_a_window_fail_closed() -> None:
    crafted = "key " * (redaction.MAX_ATTEMPTS + 5) + "password = 'hunter2'"
    out = redact_values(crafted)
    assert "hunter2" not in out
    assert out.startswith("key key ")  # the first attempts ran; the rest is withheld


def test_keyword_rules_see_a_long_line_in_windows() -> None:
    filler = "lorem ipsum " * 400  # one long line, many windows
    for where in (10, 2000, len(filler) - 10):
        text = filler[:where] + " password='hunter2' " + filler[where:]
        assert "hunter2" not in redact_values(text)


def test_corpus_shapes_are_real_strings() -> None:
    assert all(isinstance(s, Shape) and s.secrets for s in SHAPES)
