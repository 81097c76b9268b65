"""Attention-kernel fast path: (L, Y) from one call of `jax.nn.dot_product_attention`.

The SA velocity is attention(X, X, X) with scale beta, so a fused attention kernel
(cuDNN flash attention on GPU) computes it at the speed of real transformers. Such a
kernel returns only the softmax average Y; USA and the energy also need the row
normaliser L_i = log sum_j w_j exp(beta <q_i, k_j>). Both come out of ONE call with
augmented features.

Derivation (the "extra key"). With feature width H >= max(d, e) + 2 and a per-row
reference score c_i, build

    q'_i = [beta q_i, 1, c_i]          k'_j = [k_j, log w_j, 0]     v'_j = [v_j, 1, 0]
                                        k'_* = [0,   0,       1]     v'_* = [0,   0, 1]

(zero-padded to H) and call attention with scale 1. Then <q'_i, k'_j> = beta <q_i, k_j>
+ log w_j = s_ij, <q'_i, k'_*> = c_i, and with Z_i = sum_j e^{s_ij} = e^{L_i} the output
row is O_i = (sum_j e^{s_ij} v'_j + e^{c_i} v'_*) / (Z_i + e^{c_i}), so

    A_i = O_i[e]     = Z_i / (Z_i + e^{c_i})        (the column of ones)
    B_i = O_i[e + 1] = e^{c_i} / (Z_i + e^{c_i})    (the extra key's probability)
    L_i = c_i + log A_i - log B_i,     Y_i = O_i[:e] / A_i.

A_i and B_i are sums of positive terms (no cancellation), so L and Y keep the kernel's
relative precision. Numerical range: take c_i = beta |q_i| max_j |k_j| + log sum_j w_j,
an upper bound of L_i (Cauchy-Schwarz); then c_i is the row maximum the kernel
subtracts, B_i in [1/2, 1], and A_i >= e^{max_j s_ij - c_i} / 2 underflows only when
c_i - max_j s_ij exceeds ~87 (float32, bfloat16) or ~708 (float64). For self-attention
with unit rows (the velocity) max_j s_ij >= s_ii = beta + log w_i, so the gap is at most
log(1 / w_i) = log n for uniform masses: exact for every beta. For cross-attention with
a query far from every key and beta of order 50 (float32) it can underflow; then L is
-inf and Y is NaN, and kernel="tiled" is the exact path.

Alternative normaliser="residual": `dot_product_attention(..., return_residual=True)`
returns the log-sum-exp itself (features q'_i = [beta q_i, 1], k'_j = [k_j, log w_j]).
It is exact in XLA, but cuDNN returns it cast to the input dtype (bfloat16: L good to
~3 digits, so e^{L} to |L| * 0.4 %); the extra key keeps L's error at the dtype's
relative precision of A and B, independent of beta.

Precision: XLA's `dot_product_attention` always takes the softmax in float32, and cuDNN
supports only float16 / bfloat16, so float64 inputs go to the exact tiled path (say
`attention_stats_tiled`); the derivation above is checked in float64 with an exact
reference attention (`implementation="reference"`) in tests/test_memory.py.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from ._kernels import attention_stats_tiled

IMPLEMENTATIONS = (None, "cudnn", "xla", "reference")
NORMALISERS = ("extra_key", "residual")
# The XLA implementation materialises a (block, nk) score matrix; at most this many pairs.
XLA_MAX_PAIRS = 1 << 22


def default_implementation(dtype) -> str:
    """ "cudnn" on a GPU backend for float16 / bfloat16 inputs, else "xla"."""
    low_precision = jnp.dtype(dtype) in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
    return "cudnn" if jax.default_backend() == "gpu" and low_precision else "xla"


def _reference_attention(q, k, v, return_residual: bool = False):
    """Exact attention softmax(q k^T) v in the input dtype (float64-capable): (T, H)."""
    S = q @ k.T
    L = jax.nn.logsumexp(S, axis=1)
    out = jnp.exp(S - L[:, None]) @ v
    return (out, L) if return_residual else out


def _attention(q, k, v, implementation: str, return_residual: bool = False):
    """softmax(q k^T) v for 2-d (T, H), (S, H), (S, H) inputs; scale 1, one head."""
    if implementation == "reference":
        return _reference_attention(q, k, v, return_residual)
    out = jax.nn.dot_product_attention(
        q[None, :, None, :],
        k[None, :, None, :],
        v[None, :, None, :],
        scale=1.0,
        implementation=implementation,
        return_residual=return_residual,
    )
    if return_residual:
        avg, L = out
        return avg[0, :, 0, :], L[0, :, 0]
    return out[0, :, 0, :]


def _pad_cols(x, width: int):
    return jnp.pad(x, ((0, 0), (0, width - x.shape[1])))


def _head_width(d: int, e: int, implementation: str) -> int:
    """Feature width H: max(d, e) + 2, rounded up to a multiple of 8 for cuDNN."""
    H = max(d, e) + 2
    return -(-H // 8) * 8 if implementation == "cudnn" else H


def _finite_log_w(log_w):
    """log w with -inf replaced by a huge finite negative (no inf inside a fused GEMM)."""
    floor = -0.25 * jnp.finfo(log_w.dtype).max
    return jnp.maximum(log_w, floor)


def _stats_extra_key(Q, K, V, beta, log_w, implementation: str):
    """(L, Y) from one attention call with an extra key (module docstring)."""
    (nq, d), e = Q.shape, V.shape[1]
    dtype = Q.dtype
    H = _head_width(d, e, implementation)
    lw = _finite_log_w(log_w)
    c = beta * jnp.linalg.norm(Q, axis=1) * jnp.max(jnp.linalg.norm(K, axis=1))
    c = (c + jax.nn.logsumexp(log_w)).astype(dtype)  # the value the kernel actually sees
    ones_q, ones_k = jnp.ones((nq, 1), dtype), jnp.ones((K.shape[0], 1), dtype)
    q = _pad_cols(jnp.concatenate([beta * Q, ones_q, c[:, None]], axis=1), H)
    k = jnp.concatenate([K, lw[:, None], jnp.zeros_like(ones_k)], axis=1)
    v = jnp.concatenate([V, ones_k, jnp.zeros_like(ones_k)], axis=1)
    star_k = jnp.zeros((1, d + 2), dtype).at[0, d + 1].set(1.0)
    star_v = jnp.zeros((1, e + 2), dtype).at[0, e + 1].set(1.0)
    k = _pad_cols(jnp.concatenate([k, star_k], axis=0), H)
    v = _pad_cols(jnp.concatenate([v, star_v], axis=0), H)
    out = _attention(q, k, v, implementation)
    A, B = out[:, e], out[:, e + 1]
    L = c + jnp.log(A) - jnp.log(B)
    return L, out[:, :e] / A[:, None]


def _stats_residual(Q, K, V, beta, log_w, implementation: str):
    """(L, Y) with L the kernel's own log-sum-exp residual (module docstring)."""
    (nq, d), e = Q.shape, V.shape[1]
    dtype = Q.dtype
    H = _head_width(d, e, implementation)
    q = _pad_cols(jnp.concatenate([beta * Q, jnp.ones((nq, 1), dtype)], axis=1), H)
    k = _pad_cols(jnp.concatenate([K, _finite_log_w(log_w)[:, None]], axis=1), H)
    v = _pad_cols(V, H)
    avg, L = _attention(q, k, v, implementation, return_residual=True)
    return L.astype(dtype), avg[:, :e]


def attention_stats_dpa(
    Q: Float[Array, "nq d"],
    K: Float[Array, "nk d"],
    V: Float[Array, "nk e"],
    beta,
    log_w: Float[Array, " nk"],
    *,
    implementation: str | None = None,
    normaliser: str = "extra_key",
    block_q: int | None = None,
) -> tuple[Float[Array, " nq"], Float[Array, "nq e"]]:
    """(L, Y) of `_kernels.attention_stats` through `jax.nn.dot_product_attention`.

    L_i = log sum_j w_j exp(beta <q_i, k_j>) (nq,), Y_i = softmax-weighted mean of v_j (nq, e).
    implementation: "cudnn" (fused flash attention, GPU, float16/bfloat16), "xla", or
    "reference" (exact einsum softmax, for tests); None picks `default_implementation`.
    float64 inputs (except with "reference") use `attention_stats_tiled`: both attention
    implementations compute the softmax in float32 or lower.
    "xla" materialises (block_q, nk) scores: queries go in blocks of
    block_q = XLA_MAX_PAIRS // nk rows by default (lax.map).
    """
    if normaliser not in NORMALISERS:
        raise ValueError(f"`normaliser` must be one of {NORMALISERS}; got {normaliser!r}.")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS}; got {implementation!r}."
        )
    dtype = jnp.result_type(Q, K, V)
    if implementation is None:
        implementation = default_implementation(dtype)
        if implementation == "cudnn":
            try:
                return attention_stats_dpa(
                    Q, K, V, beta, log_w, implementation="cudnn", normaliser=normaliser
                )
            except Exception as err:  # unsupported shape/dtype/GPU: fall back to XLA
                warnings.warn(
                    f"cuDNN attention unavailable ({type(err).__name__}: {err}); using XLA.",
                    stacklevel=2,
                )
                implementation = "xla"
    Q, K, V = (jnp.asarray(x, dtype) for x in (Q, K, V))
    log_w, beta = jnp.asarray(log_w, dtype), jnp.asarray(beta, dtype)
    if jnp.dtype(dtype) == jnp.float64 and implementation != "reference":
        return attention_stats_tiled(Q, K, V, beta, log_w)
    nk = K.shape[0]
    if implementation != "cudnn":
        block_q = max(1, XLA_MAX_PAIRS // (nk + 1)) if block_q is None else block_q
    return _attention_stats_dpa(Q, K, V, beta, log_w, implementation, normaliser, block_q)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _attention_stats_dpa(Q, K, V, beta, log_w, implementation, normaliser, block_q):
    """Jitted body of `attention_stats_dpa` (beta traced); query blocks of block_q rows."""
    stats = _stats_extra_key if normaliser == "extra_key" else _stats_residual
    nq = Q.shape[0]
    if block_q is None or nq <= block_q:
        return stats(Q, K, V, beta, log_w, implementation)
    pad = (-nq) % block_q
    Qb = jnp.pad(Q, ((0, pad), (0, 0))).reshape(-1, block_q, Q.shape[1])
    L, Y = lax.map(lambda q: stats(q, K, V, beta, log_w, implementation), Qb)
    return L.reshape(-1)[:nq], Y.reshape(-1, V.shape[1])[:nq]
