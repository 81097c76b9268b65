"""A BERT encoder in equinox, with the attention logits exposed (all-MiniLM-L6-v2 layout).

Shapes: n tokens, D = hidden size (384), H heads of d_h = D / H dims (12 x 32), L layers (6),
F = MLP width (1536). One sequence:

    embeddings   h^0 = LN(E_word[ids] + E_pos[0..n-1] + E_type[type_ids])            (n, D)
    layer l      q = h W_q^T + b_q,  k = h W_k^T + b_k,  v = h W_v^T + b_v           (n, D)
                 split into heads: q^a, k^a, v^a                                       (H, n, d_h)
                 logits  S^a_ij = <q^a_i, k^a_j>         (BEFORE the 1/sqrt(d_h) scale) (H, n, n)
                 probs   P^a_ij = softmax_j(beta S^a_ij | key j not padded),  beta = 1/sqrt(d_h)
                 a = h + concat_a(P^a v^a) W_o^T + b_o ;  u = LN(a)                    (post-LN)
                 h^{l+1} = LN(u + GELU(u W_1^T + b_1) W_2^T + b_2)   (exact erf GELU)
    pooling      e = sum_i m_i h^L_i / sum_i m_i,   then e / |e|   (m = attention mask)

LN(x) = gamma (x - mean x) / sqrt(var x + eps) + beta_LN with eps = 1e-12 (biased variance).
Padded keys get probability exactly 0 (their logits are replaced by -inf before the
softmax); padded queries are computed but meaningless. The returned logits are the raw
q.k values for every (query, key) pair, padded or not: mask them with `mask` yourself.

Everything is a pure function of an `Bert` equinox module whose fields are the weights;
the layers are stacked along a leading axis and run with `lax.scan`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "Bert",
    "BertConfig",
    "BertOutput",
    "Embeddings",
    "Layers",
    "layer_norm",
    "mean_pool",
]


class BertConfig(eqx.Module):
    """Static hyper-parameters (defaults: all-MiniLM-L6-v2)."""

    vocab_size: int = eqx.field(static=True, default=30522)
    hidden: int = eqx.field(static=True, default=384)
    layers: int = eqx.field(static=True, default=6)
    heads: int = eqx.field(static=True, default=12)
    intermediate: int = eqx.field(static=True, default=1536)
    max_positions: int = eqx.field(static=True, default=512)
    type_vocab: int = eqx.field(static=True, default=2)
    eps: float = eqx.field(static=True, default=1e-12)

    @property
    def head_dim(self) -> int:
        """d_h = hidden / heads (32 for MiniLM)."""
        return self.hidden // self.heads

    @property
    def beta(self) -> float:
        """The model's own inverse temperature 1 / sqrt(d_h) (0.1768 for d_h = 32)."""
        return 1.0 / math.sqrt(self.head_dim)


class Embeddings(eqx.Module):
    """Word, position and token-type tables plus the embedding LayerNorm."""

    word: Float[Array, "V D"]
    position: Float[Array, "P D"]
    token_type: Float[Array, "T D"]
    ln_weight: Float[Array, " D"]
    ln_bias: Float[Array, " D"]


class Layers(eqx.Module):
    """The L encoder layers, every field stacked along a leading axis of length L.

    Linear weights are stored as in PyTorch, (out, in): y = x W^T + b.
    """

    wq: Float[Array, "L D D"]
    bq: Float[Array, "L D"]
    wk: Float[Array, "L D D"]
    bk: Float[Array, "L D"]
    wv: Float[Array, "L D D"]
    bv: Float[Array, "L D"]
    wo: Float[Array, "L D D"]
    bo: Float[Array, "L D"]
    ln1_weight: Float[Array, "L D"]
    ln1_bias: Float[Array, "L D"]
    w1: Float[Array, "L F D"]
    b1: Float[Array, "L F"]
    w2: Float[Array, "L D F"]
    b2: Float[Array, "L D"]
    ln2_weight: Float[Array, "L D"]
    ln2_bias: Float[Array, "L D"]


class BertOutput(eqx.Module):
    """Everything the forward pass of one sequence (or a batch, with a leading axis) returns.

    Fields (one sequence; a batch adds a leading b axis to each):
        hidden_states: (L + 1, n, D) h^0 (embeddings) .. h^L (last layer), post-LayerNorm.
        logits: (L, H, n, n) raw scores <q_i, k_j> before the 1/sqrt(d_h) scale, or None.
        probs: (L, H, n, n) attention probabilities (rows sum to 1 over unmasked keys), or None.
        embedding: (D,) mean-pooled, L2-normalised sentence embedding.
        mask: (n,) bool, True for real tokens.
    """

    hidden_states: Float[Array, "... Lp1 n D"]
    logits: Float[Array, "... L H n n"] | None
    probs: Float[Array, "... L H n n"] | None
    embedding: Float[Array, "... D"]
    mask: Bool[Array, "... n"]


def layer_norm(
    x: Float[Array, "... D"], weight: Float[Array, " D"], bias: Float[Array, " D"], eps: float
) -> Float[Array, "... D"]:
    """LN(x) = weight * (x - mean) / sqrt(var + eps) + bias over the last axis (biased var)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps) * weight + bias


def _linear(x: Float[Array, "n i"], w: Float[Array, "o i"], b: Float[Array, " o"]):
    """y = x W^T + b."""
    return x @ w.T + b


def _split_heads(x: Float[Array, "n D"], heads: int) -> Float[Array, "H n dh"]:
    n, dim = x.shape
    return x.reshape(n, heads, dim // heads).transpose(1, 0, 2)


def attention_scores(
    h: Float[Array, "n D"], p: Layers, heads: int
) -> tuple[Float[Array, "H n dh"], Float[Array, "H n dh"], Float[Array, "H n dh"]]:
    """Per-head queries, keys and values of one layer (p holds that layer's weights)."""
    q = _split_heads(_linear(h, p.wq, p.bq), heads)
    k = _split_heads(_linear(h, p.wk, p.bk), heads)
    v = _split_heads(_linear(h, p.wv, p.bv), heads)
    return q, k, v


def masked_softmax(
    scaled: Float[Array, "H n n"], key_mask: Bool[Array, " n"]
) -> Float[Array, "H n n"]:
    """softmax_j over unmasked keys; masked keys get exactly 0 (logit -> -inf).

    At least one key must be unmasked ([CLS] always is).
    """
    z = jnp.where(key_mask[None, None, :], scaled, -jnp.inf)
    return jax.nn.softmax(z, axis=-1)


def _layer(h: Float[Array, "n D"], p: Layers, mask: Bool[Array, " n"], cfg: BertConfig):
    """One post-LN encoder layer; returns (h_next, logits, probs)."""
    q, k, v = attention_scores(h, p, cfg.heads)
    logits = jnp.einsum("hid,hjd->hij", q, k)
    probs = masked_softmax(logits * jnp.asarray(cfg.beta, h.dtype), mask)
    ctx = jnp.einsum("hij,hjd->hid", probs, v)
    ctx = ctx.transpose(1, 0, 2).reshape(h.shape)
    u = layer_norm(h + _linear(ctx, p.wo, p.bo), p.ln1_weight, p.ln1_bias, cfg.eps)
    ff = _linear(jax.nn.gelu(_linear(u, p.w1, p.b1), approximate=False), p.w2, p.b2)
    h_next = layer_norm(u + ff, p.ln2_weight, p.ln2_bias, cfg.eps)
    return h_next, logits, probs


def mean_pool(h: Float[Array, "n D"], mask: Bool[Array, " n"]) -> Float[Array, " D"]:
    """e = sum_i m_i h_i / max(sum_i m_i, 1e-9), then e / max(|e|, 1e-12).

    As sentence-transformers' mean pooling followed by its Normalize module.
    """
    m = mask.astype(h.dtype)
    e = (m @ h) / jnp.maximum(jnp.sum(m), 1e-9)
    return e / jnp.maximum(jnp.linalg.norm(e), 1e-12)


class Bert(eqx.Module):
    """BERT encoder (embeddings + L post-LN layers); fields are the weights.

    Call on one sequence: `bert(ids (n,), mask (n,), type_ids (n,) | None)`; use
    `bert.batch(ids (b, n), mask (b, n))` for a padded batch (jit-compiled, vmapped).
    """

    embeddings: Embeddings
    layers: Layers
    config: BertConfig

    @property
    def dtype(self):
        return self.embeddings.word.dtype

    @property
    def beta(self) -> float:
        """The model's inverse temperature 1 / sqrt(d_h)."""
        return self.config.beta

    def embed(
        self, ids: Int[Array, " n"], type_ids: Int[Array, " n"] | None = None
    ) -> Float[Array, "n D"]:
        """h^0 = LN(E_word[ids] + E_pos[0..n-1] + E_type[type_ids])."""
        e = self.embeddings
        n = ids.shape[0]
        if type_ids is None:
            type_ids = jnp.zeros_like(ids)
        x = e.word[ids] + e.position[:n] + e.token_type[type_ids]
        return layer_norm(x, e.ln_weight, e.ln_bias, self.config.eps)

    def __call__(
        self,
        ids: Int[Array, " n"],
        mask: Bool[Array, " n"] | None = None,
        type_ids: Int[Array, " n"] | None = None,
        *,
        attention: bool = True,
    ) -> BertOutput:
        """Forward pass of one sequence (see the module docstring for the formulas).

        attention=False drops the (L, H, n, n) logits and probabilities from the output
        (they are then None), which is what sentence embedding needs.
        """
        if ids.shape[0] > self.config.max_positions:
            raise ValueError(
                f"sequence of {ids.shape[0]} tokens exceeds the model's "
                f"{self.config.max_positions} positions"
            )
        mask = jnp.ones(ids.shape, bool) if mask is None else mask.astype(bool)
        h0 = self.embed(ids, type_ids)

        def step(h, p):
            h_next, logits, probs = _layer(h, p, mask, self.config)
            out = (h_next, logits, probs) if attention else (h_next,)
            return h_next, out

        hL, outs = lax.scan(step, h0, self.layers)
        hidden = jnp.concatenate([h0[None], outs[0]], axis=0)
        return BertOutput(
            hidden_states=hidden,
            logits=outs[1] if attention else None,
            probs=outs[2] if attention else None,
            embedding=mean_pool(hL, mask),
            mask=mask,
        )

    def batch(
        self,
        ids: Int[Array, "b n"],
        mask: Bool[Array, "b n"],
        type_ids: Int[Array, "b n"] | None = None,
        *,
        attention: bool = False,
    ) -> BertOutput:
        """Jit-compiled, vmapped forward pass of a padded batch (leading axis b on every field)."""
        if type_ids is None:
            type_ids = jnp.zeros_like(ids)
        return _batch(self, jnp.asarray(ids), jnp.asarray(mask, bool), type_ids, attention)

    def cast(self, dtype) -> Bert:
        """The same model with every floating weight cast to `dtype`."""
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), self)


@eqx.filter_jit
def _batch(model: Bert, ids, mask, type_ids, attention: bool) -> BertOutput:
    return jax.vmap(lambda i, m, t: model(i, m, t, attention=attention))(ids, mask, type_ids)
