"""Attention kernel: (L, Y) from one call of `jax.nn.dot_product_attention`.

The SA velocity is attention(X, X, X) with scale beta, so a fused attention kernel (cuDNN
flash attention on GPU) computes it at the speed of real transformers. Such a kernel
returns only the softmax average Y; USA and the energy also need the row normaliser L.
Both come out of ONE call with augmented features (the "extra key"). With feature width
H >= max(d, e) + 2 and a per-row reference score c_i, build

    q'_i = [beta q_i, 1, c_i]          k'_j = [k_j, log w_j, 0]     v'_j = [v_j, 1, 0]
                                        k'_* = [0,   0,       1]     v'_* = [0,   0, 1]

(zero-padded to H) and call attention with scale 1. Then <q'_i, k'_j> = s_ij =
beta <q_i, k_j> + log w_j, <q'_i, k'_*> = c_i, and with Z_i = sum_j e^{s_ij} = e^{L_i} the
output row is O_i = (sum_j e^{s_ij} v'_j + e^{c_i} v'_*) / (Z_i + e^{c_i}), so

    A_i = O_i[e]     = Z_i / (Z_i + e^{c_i})        (the column of ones)
    B_i = O_i[e + 1] = e^{c_i} / (Z_i + e^{c_i})    (the extra key's probability)
    L_i = c_i + log A_i - log B_i,     Y_i = O_i[:e] / A_i.

A_i and B_i are sums of positive terms (no cancellation), so L and Y keep the kernel's
relative precision. Range: c_i = beta |q_i| max_j |k_j| + log sum_j w_j is an upper bound
of L_i (Cauchy-Schwarz); then B_i is in [1/2, 1], and A_i >= e^{max_j s_ij - c_i} / 2
underflows only when c_i - max_j s_ij exceeds ~87 (float32, bfloat16). For self-attention
with unit rows max_j s_ij >= beta + log w_i, so the gap is at most log(1 / w_i): exact for
every beta. For cross-attention with a query far from every key at large beta it can
underflow (L = -inf); Tiled is the exact path there.

normaliser="residual" uses `return_residual=True` instead (the kernel's own log-sum-exp):
exact in XLA, but cuDNN returns it in the input dtype (bfloat16: L to ~3 digits).

Dtypes: XLA computes the softmax in float32 and cuDNN takes only float16 / bfloat16, so
float64 is refused (use Dense, Tiled or Centred). implementation=None means cuDNN for
float16 / bfloat16 on a GPU and XLA otherwise, decided from the backend and dtype when
the program is built (`prepare` records it); "reference" is an exact einsum softmax in the
input dtype, for tests of the derivation in float64.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from ._base import (
    AbstractKernel,
    KernelError,
    Stats,
    accumulation_dtype,
    check_precision,
    default_backend,
    dot_nn,
    dot_nt,
    is_low_precision,
    pad_rows,
)

IMPLEMENTATIONS = (None, "cudnn", "xla", "reference")
NORMALISERS = ("extra_key", "residual")
# The XLA implementation materialises a (block, nk) score matrix; at most this many pairs.
XLA_MAX_PAIRS = 1 << 22


def default_implementation(dtype, backend: str | None = None) -> str:
    """ "cudnn" on a GPU for float16 / bfloat16 inputs, else "xla"."""
    backend = default_backend() if backend is None else backend
    return "cudnn" if backend == "gpu" and is_low_precision(dtype) else "xla"


class Attention(AbstractKernel):
    """(L, Y) through `jax.nn.dot_product_attention` with an extra key.

    **Arguments:**

    - `implementation`: "cudnn", "xla", "reference" or None (cuDNN for float16 / bfloat16
      on a GPU, XLA otherwise).
    - `normaliser`: "extra_key" (default) or "residual" (module docstring).
    - `block_q`: query rows per call for "xla" / "reference" (default XLA_MAX_PAIRS // nk).
    - `precision`: products of the "reference" implementation.
    """

    name: ClassVar[str] = "attention"
    supports_float64: ClassVar[bool] = False
    implementation: str | None = None
    normaliser: str = "extra_key"
    block_q: int | None = None
    precision: str = "highest"

    def __check_init__(self):
        if self.implementation not in IMPLEMENTATIONS:
            raise KernelError(
                f"Attention `implementation` must be one of {IMPLEMENTATIONS}; "
                f"got {self.implementation!r}."
            )
        if self.normaliser not in NORMALISERS:
            raise KernelError(
                f"Attention `normaliser` must be one of {NORMALISERS}; got {self.normaliser!r}."
            )
        check_precision(self.precision)

    def _float64_reason(self):
        return (
            "jax.nn.dot_product_attention computes its softmax in float32 (XLA) or float16 / "
            "bfloat16 (cuDNN); use Dense, Tiled or Centred for float64."
        )

    def check(self, nq, d, dtype, *, nk=None, e=None):
        if self.implementation == "reference":  # exact, any dtype
            return
        super().check(nq, d, dtype, nk=nk, e=e)
        if self.implementation == "cudnn" and not is_low_precision(dtype):
            raise KernelError(
                f"{self!r}: cuDNN attention takes float16 / bfloat16 inputs; got "
                f"{jnp.dtype(dtype)}. Use Flash (float32 on a GPU) or implementation='xla'."
            )

    def prepare(self, nq, d, dtype, *, beta=None, nk=None):
        self.check(nq, d, dtype, nk=nk)
        if self.implementation is None:
            return Attention(
                default_implementation(dtype), self.normaliser, self.block_q, self.precision
            )
        return self

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        dtype = jnp.result_type(Q, K, V)
        self.check(Q.shape[0], Q.shape[1], dtype, nk=K.shape[0], e=V.shape[1])
        impl = self.implementation or default_implementation(dtype)
        Q, K, V = (x.astype(dtype) for x in (Q, K, V))
        stats = _stats_extra_key if self.normaliser == "extra_key" else _stats_residual
        run = lambda q: stats(q, K, V, beta, log_w, impl, self.precision)
        nq, nk = Q.shape[0], K.shape[0]
        block_q = self.block_q
        if impl != "cudnn" and block_q is None:
            block_q = max(1, XLA_MAX_PAIRS // (nk + 1))
        if block_q is None or nq <= block_q:
            return run(Q)
        Qb = pad_rows(Q, block_q).reshape(-1, block_q, Q.shape[1])
        L, Y = lax.map(run, Qb)
        return Stats(L.reshape(-1)[:nq], Y.reshape(-1, V.shape[1])[:nq])


def _reference_attention(q, k, v, precision, return_residual: bool = False):
    """Exact attention softmax(q k^T) v in the input dtype (float64-capable): (T, H)."""
    acc = accumulation_dtype(q.dtype)
    S = dot_nt(q, k, precision, acc)
    L = jax.nn.logsumexp(S, axis=1)
    out = dot_nn(jnp.exp(S - L[:, None]), v.astype(acc), precision, acc).astype(q.dtype)
    return (out, L) if return_residual else out


def _attention(q, k, v, implementation: str, precision, return_residual: bool = False):
    """softmax(q k^T) v for 2-d (T, H), (S, H), (S, H) inputs; scale 1, one head."""
    if implementation == "reference":
        return _reference_attention(q, k, v, precision, return_residual)
    # XLA's implementation is einsums at the default precision (TF32 on recent GPUs):
    # the kernel's precision field decides instead.
    with jax.default_matmul_precision(precision if precision != "default" else None):
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


def _finite_log_w(log_w, dtype):
    """log w in `dtype` with -inf replaced by a huge finite negative (no inf in a GEMM).

    The floor is built in `dtype` itself: a NumPy scalar would promote bfloat16 to float32
    and cuDNN would then refuse the mixed inputs.
    """
    floor = jnp.asarray(-0.25 * float(jnp.finfo(dtype).max), dtype)
    return jnp.maximum(log_w.astype(dtype), floor)


def _stats_extra_key(Q, K, V, beta, log_w, implementation: str, precision):
    """(L, Y) from one attention call with an extra key (module docstring)."""
    (nq, d), e = Q.shape, V.shape[1]
    dtype = Q.dtype
    acc = accumulation_dtype(dtype)
    H = _head_width(d, e, implementation)
    beta = jnp.asarray(beta, acc)
    c = (
        beta
        * jnp.linalg.norm(Q.astype(acc), axis=1)
        * jnp.max(jnp.linalg.norm(K.astype(acc), axis=1))
    )
    log_total = jax.nn.logsumexp(log_w.astype(acc))
    log_total = jnp.where(jnp.isfinite(log_total), log_total, 0.0)  # no keys: L = -inf below
    c = (c + log_total).astype(dtype)  # the value the kernel sees
    ones_q, ones_k = jnp.ones((nq, 1), dtype), jnp.ones((K.shape[0], 1), dtype)
    qs = (beta * Q.astype(acc)).astype(dtype)
    q = _pad_cols(jnp.concatenate([qs, ones_q, c[:, None]], axis=1), H)
    k = jnp.concatenate([K, _finite_log_w(log_w, dtype)[:, None], jnp.zeros_like(ones_k)], axis=1)
    v = jnp.concatenate([V, ones_k, jnp.zeros_like(ones_k)], axis=1)
    star_k = jnp.zeros((1, d + 2), dtype).at[0, d + 1].set(1)
    star_v = jnp.zeros((1, e + 2), dtype).at[0, e + 1].set(1)
    k = _pad_cols(jnp.concatenate([k, star_k], axis=0), H)
    v = _pad_cols(jnp.concatenate([v, star_v], axis=0), H)
    out = _attention(q, k, v, implementation, precision).astype(acc)
    A, B = out[:, e], out[:, e + 1]
    L = c.astype(acc) + jnp.log(A) - jnp.log(B)
    return Stats(L, (out[:, :e] / A[:, None]).astype(dtype))


def _stats_residual(Q, K, V, beta, log_w, implementation: str, precision):
    """(L, Y) with L the kernel's own log-sum-exp residual (module docstring)."""
    (nq, d), e = Q.shape, V.shape[1]
    dtype = Q.dtype
    acc = accumulation_dtype(dtype)
    H = _head_width(d, e, implementation)
    qs = (jnp.asarray(beta, acc) * Q.astype(acc)).astype(dtype)
    q = _pad_cols(jnp.concatenate([qs, jnp.ones((nq, 1), dtype)], axis=1), H)
    k = _pad_cols(jnp.concatenate([K, _finite_log_w(log_w, dtype)[:, None]], axis=1), H)
    v = _pad_cols(V, H)
    avg, L = _attention(q, k, v, implementation, precision, return_residual=True)
    return Stats(L.astype(acc), avg[:, :e].astype(dtype))
