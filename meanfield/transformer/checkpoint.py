"""Load a local Hugging Face-format checkpoint folder into JAX (no torch at run time).

A folder holds config.json, the weights as model.safetensors or as shards listed in
model.safetensors.index.json, and optionally tokenizer.json. `load_checkpoint(path)` reads
`model_type` from config.json and builds, through the registry `ARCHITECTURES`:

    bert                     `BertEncoder` (bidirectional; `encode` and `attention`)
    gpt2                     `Decoder` around `gpt2.GPT2`
    llama, mistral, qwen2    `Decoder` around `llama.Llama` (RoPE, GQA, RMSNorm, SwiGLU)

Safetensors are parsed here (8-byte little-endian header length, a JSON header of
{name: {dtype, shape, data_offsets}}, then the raw little-endian bytes), memory-mapped, so
a tensor is read only when the model asks for it; BF16 and F16 are widened exactly to float32.

Every problem with the folder is one ValueError line naming the file and, where it
applies, the tensor: no such folder, no config.json, an unsupported model_type (listing the
supported ones), a missing weights file or shard, a missing tensor, a tensor whose shape
differs from what config.json implies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from ._decoder import DecoderOutput, attention_probs, visible
from ._load import AttentionMaps, BertEncoder, _require, bert_config, bert_from_state_dict
from .gpt2 import gpt2_config, gpt2_from_state_dict
from .llama import llama_config, llama_from_state_dict

__all__ = [
    "ARCHITECTURES",
    "Decoder",
    "SafetensorsFolder",
    "load_checkpoint",
    "read_safetensors_header",
]

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened by a 16-bit shift
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}

#: prefixes that task heads add in front of the base model's tensor names.
_PREFIXES = ("", "model.", "transformer.", "bert.")

#: Elements of (L, H, n, n) that `attention` builds at most (two arrays of this size).
MAX_MAP_ELEMENTS = 1 << 27


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """(header dict, byte offset of the data) of one .safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        size = int.from_bytes(raw, "little")
        if size > 100 * 2**20:
            raise ValueError(f"{path}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(f.read(size))
        except json.JSONDecodeError:
            raise ValueError(f"{path}: not a safetensors file (bad JSON header)") from None
    header.pop("__metadata__", None)
    return header, 8 + size


class SafetensorsFolder:
    """The tensors of a checkpoint folder (single file or index + shards), read lazily.

    `get(name, shape)` returns a NumPy array (float32 for BF16/F16 storage), trying the
    task-head prefixes ``model.``, ``transformer.``, ``bert.``; ValueError naming the tensor
    and the file when it is missing or its shape differs from `shape`.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        single = folder / "model.safetensors"
        index = folder / "model.safetensors.index.json"
        self.where: dict[str, Path] = {}
        if single.is_file():
            self.files = [single]
        elif index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{index}: no weight_map (not a safetensors index)") from None
            self.files = sorted({folder / f for f in weight_map.values()})
            for f in self.files:
                if not f.is_file():
                    raise ValueError(f"{index}: lists the shard {f.name}, which is missing")
        else:
            raise ValueError(
                f"{folder}: no model.safetensors or model.safetensors.index.json (only "
                "safetensors weights are read; convert .bin checkpoints with transformers)"
            )
        self.headers: dict[Path, tuple[dict, int]] = {}
        for f in self.files:
            header, offset = read_safetensors_header(f)
            self.headers[f] = (header, offset)
            for name in header:
                self.where[name] = f
        self._maps: dict[Path, np.memmap] = {}

    @property
    def source(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else f"{self.folder} (sharded)"

    def names(self) -> list[str]:
        return sorted(self.where)

    def _resolve(self, name: str) -> str:
        for prefix in _PREFIXES:
            if prefix + name in self.where:
                return prefix + name
        raise ValueError(f"tensor {name!r} is missing from {self.source}")

    def get(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        full = self._resolve(name)
        path = self.where[full]
        header, offset = self.headers[path]
        info = header[full]
        stored = tuple(int(s) for s in info["shape"])
        if shape is not None and stored != tuple(shape):
            raise ValueError(
                f"tensor {full!r} in {path} has shape {stored}, but config.json implies "
                f"{tuple(shape)}"
            )
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"tensor {full!r} in {path} has unsupported dtype {info['dtype']}")
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        start, end = (int(v) for v in info["data_offsets"])
        raw = self._maps[path][offset + start : offset + end]
        arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            arr = arr.astype(np.float32)
        return arr.reshape(stored)


def _tokenizer(folder: Path):
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None

    tokenizers = _require("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _bucket(n: int, step: int, cap: int) -> int:
    return min(cap, step * math.ceil(max(n, 1) / step))


@eqx.filter_jit
def _forward(model, ids):
    return model(ids)


@eqx.filter_jit
def _maps(out: DecoderOutput, beta, window):
    heads, groups = out.q.shape[1], out.k.shape[1]
    k = jnp.repeat(out.k, heads // groups, axis=1)  # query head a uses kv head a // (H/G)
    f = jax.vmap(jax.vmap(lambda q_, k_: attention_probs(q_, k_, beta, window)))
    return f(out.q, k)


class Decoder:
    """A decoder-only checkpoint (GPT-2 or Llama family) with its tokenizer (or None).

    Attributes: `net` (the equinox module), `config`, `tokenizer`, `name`, `path`,
    `beta` (the model's own scale, 1/sqrt(d_h)), `context` (the positions it accepts),
    `train_length` (the pre-training context: original_max_position_embeddings of a scaled
    RoPE, else `context`), `window` (sliding window or None), `causal` = True.
    """

    causal = True

    def __init__(self, net, tokenizer, name: str, path: Path | None = None):
        self.net = net
        self.config = net.config
        self.tokenizer = tokenizer
        self.name = name
        self.path = path

    @property
    def beta(self) -> float:
        return float(self.net.beta)

    @property
    def context(self) -> int:
        return int(self.config.max_positions)

    @property
    def train_length(self) -> int:
        return int(getattr(self.config, "train_length", self.context))

    @property
    def window(self) -> int | None:
        return self.net.window

    @property
    def layers(self) -> int:
        return int(self.config.layers)

    @property
    def heads(self) -> int:
        return int(self.config.heads)

    @property
    def dtype(self):
        return jax.tree_util.tree_leaves(self.net)[0].dtype

    def token_ids(self, text_or_ids, max_tokens: int | None = None, *, truncate: bool = False):
        """(tokens, ids (n,) int32) of a text (tokenizer.json) or of given token ids.

        Longer than `max_tokens` (default: the model's context) is refused with the limit,
        unless ``truncate=True``, which keeps the first `max_tokens` tokens (a window).
        """
        cap = self.context if max_tokens is None else int(max_tokens)
        if not 1 <= cap <= self.context:
            raise ValueError(f"`max_tokens` must be in [1, {self.context}]; got {cap}")
        if isinstance(text_or_ids, str):
            if self.tokenizer is None:
                where = self.path if self.path is not None else "the checkpoint"
                raise ValueError(f"no tokenizer.json in {where}; pass token ids instead of text")
            enc = self.tokenizer.encode(text_or_ids)
            ids, tokens = np.asarray(enc.ids, np.int64), list(enc.tokens)
        else:
            ids = np.asarray(text_or_ids)
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(
                    f"token ids must be a 1-D integer array; got {ids.dtype}{ids.shape}"
                )
            tokens = None
        if ids.size == 0:
            raise ValueError("the text has no tokens")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}); got {ids.min()}..{ids.max()}"
            )
        if ids.size > cap:
            if not truncate:
                raise ValueError(
                    f"the text has {ids.size} tokens, more than max_tokens={cap} (the model's "
                    f"context is {self.context}); pass truncate=True to keep the first {cap}"
                )
            ids = ids[:cap]
            tokens = None if tokens is None else tokens[:cap]
        if tokens is None:
            tokens = [f"<{int(i)}>" for i in ids]
        return tokens, ids.astype(np.int32)

    def forward(self, ids: Int[Array, " n"]) -> DecoderOutput:
        """Hidden states and per-layer q, k of token ids (jit-compiled; lengths are padded to
        a multiple of 64 and sliced back, which is exact for causal attention)."""
        ids = np.asarray(ids, np.int32)
        n = ids.shape[0]
        m = _bucket(n, 64, self.context)
        padded = np.zeros(m, np.int32)
        padded[:n] = ids
        out = _forward(self.net, jnp.asarray(padded))
        return jax.tree_util.tree_map(lambda a: a[..., :n, :], out)

    def attention(self, text_or_ids, max_tokens: int | None = None, *, truncate: bool = False):
        """Per-layer, per-head logits (before scaling) and probabilities of one sequence.

        **Arguments:**
            text_or_ids: a string (needs tokenizer.json) or a 1-D array of token ids.
            max_tokens: refuse longer inputs (default: the model's context).
            truncate: keep the first `max_tokens` tokens instead of refusing.

        **Returns:** `AttentionMaps` with logits (L, H, n, n) = <q^a_i, k^g(a)_j> at visible
        keys and -inf at keys the query cannot see (j > i, or outside the sliding window),
        probs (L, H, n, n) = softmax_j(beta logits) (rows sum to 1, 0 at hidden keys),
        hidden_states (L + 1, n, D), beta = 1/sqrt(d_h). For long texts use
        `long_context_diagnostics`, which never builds all heads' n x n at once.
        """

        tokens, ids = self.token_ids(text_or_ids, max_tokens, truncate=truncate)
        n = ids.size
        if self.layers * self.heads * n * n > MAX_MAP_ELEMENTS:
            raise ValueError(
                f"attention maps of {n} tokens would hold {self.layers * self.heads * n * n:.3g} "
                f"entries per array; lower max_tokens (or use long_context_diagnostics)"
            )
        out = self.forward(ids)
        beta = jnp.asarray(self.beta, out.q.dtype)
        logits, probs = _maps(out, beta, self.window)
        hidden = _visible_mask(n, self.window)
        logits = jnp.where(hidden, logits, -jnp.inf)
        return AttentionMaps(tokens, jnp.asarray(ids), logits, probs, out.hidden_states, self.beta)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Decoder({self.name}: L={c.layers}, H={c.heads}, G={c.kv_heads}, "
            f"d_h={c.head_dim}, context={self.context})"
        )


def _visible_mask(n: int, window):

    return visible(jnp.arange(n), n, window)


def _dtype(dtype):
    dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype; got {dtype}")
    if dtype == jnp.float64 and not jax.config.read("jax_enable_x64"):
        raise ValueError('float64 needs jax.config.update("jax_enable_x64", True) first')
    return dtype


def _build_gpt2(raw, tensors, tokenizer, dtype, folder):

    net = gpt2_from_state_dict(tensors.get, gpt2_config(raw), dtype)
    return Decoder(net, tokenizer, raw.get("_name_or_path") or folder.name, folder)


def _build_llama(raw, tensors, tokenizer, dtype, folder):

    net = llama_from_state_dict(tensors.get, llama_config(raw), dtype)
    return Decoder(net, tokenizer, raw.get("_name_or_path") or folder.name, folder)


def _build_bert(raw, tensors, tokenizer, dtype, folder):

    config = bert_config(raw)
    bert = bert_from_state_dict(tensors.get, config, dtype)
    return BertEncoder(bert, tokenizer, name=raw.get("_name_or_path") or folder.name)


#: model_type -> builder(raw config, tensors, tokenizer, dtype, folder).
ARCHITECTURES: dict[str, Callable] = {
    "bert": _build_bert,
    "gpt2": _build_gpt2,
    "llama": _build_llama,
    "mistral": _build_llama,
    "qwen2": _build_llama,
}


def load_checkpoint(path, dtype=None):
    """Load a local Hugging Face-format checkpoint folder (safetensors only).

    **Arguments:**
        path: a folder with config.json, model.safetensors (or model.safetensors.index.json
            and its shards) and optionally tokenizer.json.
        dtype: floating dtype of the weights and the computation; None means float32
            (BF16/F16 weights are widened exactly). float64 needs x64 enabled.

    **Returns:** a `Decoder` (gpt2, llama, mistral, qwen2) or a `BertEncoder` (bert), each
    with `attention(text or token ids) -> AttentionMaps` and `beta` (the model's own scale
    1/sqrt(d_h)); encoders also have `encode(sentences)`.

    Raises ValueError (one line, naming the file and tensor) for a missing folder or file,
    an unsupported model_type (the message lists `ARCHITECTURES`), and missing or
    mis-shaped tensors; ImportError with the install line when `tokenizers` is needed but
    absent.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"checkpoint {folder}: no such folder")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"checkpoint {folder}: no config.json")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path}: not valid JSON ({err.msg})") from None
    model_type = raw.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"{cfg_path}: model_type {model_type!r} is not supported "
            f"(supported: {', '.join(ARCHITECTURES)})"
        )
    dtype = _dtype(dtype)
    tensors = SafetensorsFolder(folder)
    tokenizer = _tokenizer(folder)
    try:
        return ARCHITECTURES[model_type](raw, tensors, tokenizer, dtype, folder)
    except ValueError as err:
        msg = str(err)
        if msg.startswith("config.json"):
            msg = f"{cfg_path}{msg[len('config.json') :]}"
        raise ValueError(msg) from None
