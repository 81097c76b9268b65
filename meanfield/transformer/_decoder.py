"""Pieces shared by the decoder-only checkpoints (GPT-2, Llama family): causal masks,
head-by-head attention, RMSNorm, activations, and the output of a forward pass.

Shapes: n tokens, D hidden size, H query heads, G key/value heads (G divides H; G = H without
grouped-query attention), d_h head size, L layers.

Causal attention of one layer, head a (kv head g(a) = a // (H / G)):

    S^a_ij = <q^a_i, k^g(a)_j>                          raw logits, BEFORE the scale  (n, n)
    P^a_ij = softmax_j(beta S^a_ij | j visible from i)   beta = the model's own scale
    visible: j <= i (causal), and i - j < w with a sliding window w

The forward pass computes the context P^a V^g(a) one head at a time (`lax.map`), so only one
(n, n) block exists at once: memory O(n^2 + L H n d_h), never O(H n^2).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

__all__ = [
    "ACTIVATIONS",
    "DecoderOutput",
    "activation",
    "attention_probs",
    "causal_context",
    "rms_norm",
    "visible",
]

HIGHEST = lax.Precision.HIGHEST

#: config activation names -> functions (GELU "new"/"pytorch_tanh" is the tanh approximation).
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str, what: str = "hidden_act"):
    """The activation function of a config name; ValueError listing the supported ones."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"config.json: {what}={name!r} is not supported (supported: {', '.join(ACTIVATIONS)})"
        )
    return ACTIVATIONS[name]


def rms_norm(x: Float[Array, "... D"], weight: Float[Array, " D"], eps: float):
    """RMSNorm: weight * x / sqrt(mean(x^2) + eps) over the last axis (computed in float32
    or wider, as transformers does)."""
    dtype = x.dtype
    xf = x.astype(jnp.promote_types(dtype, jnp.float32))
    y = xf * lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + eps)
    return weight * y.astype(dtype)


def visible(rows: Array, n_keys: int, window: int | None = None) -> Bool[Array, "R n"]:
    """Which keys j < n_keys query positions `rows` (R,) see: j <= i, and i - j < window."""
    j = jnp.arange(n_keys)[None, :]
    i = jnp.asarray(rows)[:, None]
    ok = j <= i
    if window is not None:
        ok = ok & (i - j < window)
    return ok


def attention_probs(
    q: Float[Array, "n dh"], k: Float[Array, "n dh"], beta, window: int | None = None
) -> tuple[Float[Array, "n n"], Float[Array, "n n"]]:
    """Raw logits S = q k^T and P = softmax(beta S) over the visible keys of one head."""
    n = q.shape[0]
    logits = jnp.einsum("id,jd->ij", q, k, precision=HIGHEST)
    mask = visible(jnp.arange(n), n, window)
    z = jnp.where(mask, beta * logits, -jnp.inf)
    return logits, jax.nn.softmax(z, axis=-1)


def causal_context(
    q: Float[Array, "H n dh"],
    k: Float[Array, "G n dh"],
    v: Float[Array, "G n dh"],
    beta,
    window: int | None = None,
) -> Float[Array, "H n dh"]:
    """sum_j P^a_ij v^g(a)_j for every head a, computed one head at a time (`lax.map`)."""
    heads, groups = q.shape[0], k.shape[0]
    per = heads // groups

    def one(a):
        g = a // per
        _, p = attention_probs(q[a], k[g], beta, window)
        return jnp.einsum("ij,jd->id", p, v[g], precision=HIGHEST)

    return lax.map(one, jnp.arange(heads))


class DecoderOutput(eqx.Module):
    """What a decoder forward pass of one sequence returns.

    Fields:
        hidden_states: (L + 1, n, D) embeddings, then the output of every layer; the last
            entry is the model's final output (after the final norm), as in transformers.
        q: (L, H, n, d_h) queries as they enter the logits (after RoPE where it applies).
        k: (L, G, n, d_h) keys as they enter the logits (G kv heads; query head a uses
            kv head a // (H / G)).
    """

    hidden_states: Float[Array, "Lp1 n D"]
    q: Float[Array, "L H n dh"]
    k: Float[Array, "L G n dh"]
